"""The text representations of the analysis, both TF-IDF with English stop words out and
sublinear term frequency:

* `fit`: words and word pairs, for similarity to a category's text and to a finding, and
  for the terms a report shows;
* `fit_stems`: word stems alone (a light suffix stripper: vote, voters and voting are one
  term), for clustering, where two paraphrases of one theme should meet on its vocabulary
  rather than part on their wording.

Fitted on the texts at hand every time (no vocabulary is shipped), so the same inputs
always give the same vectors; no model is called, so the analysis runs in seconds and
needs no endpoint.
"""

from __future__ import annotations

import re
from typing import Sequence

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

# How requests are phrased, not what they are about: left out so terms name the theme.
REQUEST_WORDS = frozenset({"write", "draft", "create", "make", "help", "tell", "telling", "saying", "say", "says", "post",
                           "posts", "want", "need", "like", "just", "can't", "won't", "i'll", "i'm", "don't", "doesn't"})
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | REQUEST_WORDS

SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "er", "ies", "es", "ed", "s", "e", "y")
_WORD = re.compile(r"[a-z][a-z']+")


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


def stem(word: str) -> str:
    """`word` without its longest known suffix, keeping at least three letters."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def stems(text: str) -> list[str]:
    return [stem(w) for w in _WORD.findall(text.lower().replace("\u2019", "'")) if w not in STOP_WORDS and len(w) > 2]


def fit_stems(texts: Sequence[str]):
    """(vectorizer, L2-normalized TF-IDF matrix of word stems) of `texts`."""
    vec = TfidfVectorizer(analyzer=stems, sublinear_tf=True)
    return vec, vec.fit_transform(list(texts))
