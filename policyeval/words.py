"""Content words: the one way the core reduces a text to the words that say what it is about.

Lower-cased words of three letters or more, common English words and the wording of a
request ("write", "tell me", "step by step") left out, each cut to a crude stem by its
longest known suffix (vote, voters and voting meet). Deterministic and explainable in a
sentence: the emerging-risk clusters are built on these terms, and the ambiguity queue
matches a prompt to the boundary lines that share them.
"""

from __future__ import annotations

import re

# Function words, and how requests are phrased rather than what they are about. Written out
# rather than taken from scikit-learn's list, which drops subject words such as "fire",
# "computer" and "bill".
STOP_WORDS = frozenset("""
a about above after again against all also am an and any are aren as at be because been before being below between
both but by can cannot could did does doing don down during each either else ever every few for from further get
gets give had has have having he her here hers herself him himself his how i if in into is it its itself just let
like make may me might more most much must my myself no nor not now of off on once only or other our ours
ourselves out over own please same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up upon us very was we were what when where which while who whom
whose why will with within without would yet you your yours yourself yourselves
write draft create help tell telling saying say says post posts want need know using use one two way ways step steps
can't won't i'll i'm don't doesn't it's that's
""".split())

SUFFIXES = ("ations", "ation", "ings", "ing", "ers", "er", "ies", "es", "ed", "s", "e", "y")
_WORD = re.compile(r"[a-z][a-z']+")


def stem(word: str) -> str:
    """`word` without its longest known suffix, keeping at least three letters."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str | None) -> list[str]:
    """The stems of `text`'s content words, in order (repeats kept, for term frequencies)."""
    words = _WORD.findall((text or "").lower().replace("\u2019", "'"))
    return [stem(w) for w in words if w not in STOP_WORDS and len(w) > 2]
