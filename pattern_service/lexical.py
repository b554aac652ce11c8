"""Lexical relevance of a query to each registered pattern: BM25 over the patterns' texts.

Each pattern is one BM25 document: its name (underscores as spaces) and its
example utterances. Tokens are lower-cased, English stop words removed and
Snowball-stemmed (PyStemmer), so "deploys" meets "deployment". Scoring is
``bm25s`` (Lù, "BM25S: Orders of magnitude faster lexical search via eager
sparse scoring", 2024), Robertson's BM25 with k1 = 1.5, b = 0.75.

A raw BM25 score grows with the query's length and its terms' rarity, so it is
squashed to [0, 1) by ``s / (s + LEXICAL_HALF)`` before it is blended with the
cosine (``LEXICAL_HALF`` is the score that maps to 0.5).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import bm25s
import numpy as np
import numpy.typing as npt
import Stemmer

#: BM25 score mapped to 0.5 by the squashing ``s / (s + LEXICAL_HALF)``.
LEXICAL_HALF = 4.0

_STEMMER = Stemmer.Stemmer("english")


@functools.lru_cache(maxsize=4096)
def query_terms(query: str) -> tuple[str, ...]:
    """The BM25 terms of one query (as :func:`_tokens` makes them), memoized (LRU of 4,096 queries).

    ``bm25s.tokenize`` costs 0.35 ms or more per call even for a short query (measured on the
    2-core box), more than scoring it against a few dozen patterns; repeated queries (every
    uncached call of the same request) reuse the terms.
    """
    return tuple(_tokens([query])[0])


def _tokens(texts: Sequence[str]) -> list[list[str]]:
    tokenized = bm25s.tokenize(list(texts), stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False)
    return [list(t) for t in tokenized]


class LexicalIndex:
    """BM25 over one document per pattern (immutable once built; safe to share across tasks).

    Args:
        documents: One text per pattern, in the registry's owner order.
    """

    def __init__(self, documents: Sequence[str]):
        self.size = len(documents)
        self._retriever: bm25s.BM25 | None = None
        tokens = _tokens(documents) if documents else []
        if any(tokens):
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            self._retriever = retriever

    def scores(self, query: str) -> npt.NDArray[np.float32]:
        """Squashed BM25 score of ``query`` against every document, in [0, 1); shape ``(size,)``."""
        out = np.zeros(self.size, dtype=np.float32)
        if self._retriever is None or not query:
            return out
        terms = query_terms(query)
        vocab = self._retriever.vocab_dict
        known = [t for t in terms if t in vocab]
        if not known:
            return out
        raw = np.asarray(self._retriever.get_scores(known), dtype=np.float32)
        return raw / (raw + np.float32(LEXICAL_HALF))


def pattern_document(name: str, examples: Sequence[str]) -> str:
    """The BM25 document of a pattern: its name with underscores as spaces, then its examples."""
    return " ".join([name.replace("_", " "), *examples])


def query_coverage(query: str, documents: Sequence[str]) -> npt.NDArray[np.float32]:
    """Share of the query's terms that each document contains, in [0, 1]; shape ``(len(documents),)``.

    Terms as for BM25 (lower-cased, English stop words removed, stemmed). Unlike
    BM25 it needs no statistics of the whole collection, so a document's score
    does not depend on which other documents are scored with it.
    """
    terms = {t for t in query_terms(query) if t}
    out = np.zeros(len(documents), dtype=np.float32)
    if not terms or not documents:
        return out
    for i, doc in enumerate(_tokens(documents)):
        out[i] = len(terms.intersection(doc)) / len(terms)
    return out
