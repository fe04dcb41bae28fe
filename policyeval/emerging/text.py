"""The text representations of the analysis, both TF-IDF with English stop words out and
sublinear term frequency:

* `fit`: words and word pairs, for similarity to a category's text and to a finding, and
  for the terms a report shows;
* `fit_stems`: word stems alone (`policyeval.words`: vote, voters and voting are one
  term), for clustering, where two paraphrases of one theme should meet on its vocabulary
  rather than part on their wording.

Fitted on the texts at hand every time (no vocabulary is shipped), so the same inputs
always give the same vectors; no model is called, so the analysis runs in seconds and
needs no endpoint.
"""

from __future__ import annotations

from typing import Sequence

from sklearn.feature_extraction.text import TfidfVectorizer

from ..words import STOP_WORDS, content_words

def vectorizer(min_df: int = 1) -> TfidfVectorizer:
    return TfidfVectorizer(
        lowercase=True,
        stop_words=sorted(STOP_WORDS),
        ngram_range=(1, 2),
        sublinear_tf=True,
        min_df=min_df,
        token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9'-]+\b",  # words, not numbers or placeholders' brackets
        strip_accents="unicode",
    )


def fit(texts: Sequence[str], min_df: int = 1):
    """(vectorizer, L2-normalized TF-IDF matrix) of `texts`."""
    vec = vectorizer(min_df)
    return vec, vec.fit_transform(list(texts))


def fit_stems(texts: Sequence[str]):
    """(vectorizer, L2-normalized TF-IDF matrix of word stems) of `texts`."""
    vec = TfidfVectorizer(analyzer=content_words, sublinear_tf=True)
    return vec, vec.fit_transform(list(texts))
