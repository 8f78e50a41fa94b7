"""Retrieval metrics over gold ranks: Recall@k, MRR, nDCG@k (binary relevance, multiple golds).

Everything works on *gold ranks*: for one query, the 1-based positions of each of its gold
items in the ranked result list (``None`` when a gold was not retrieved at all). This
makes the metrics independent of how the list was produced and cheap to recompute.

Conventions (the ones used in the modality-gap retrieval paper, METHODS §1, and in most
multimodal-retrieval work):

* **Recall@k** is the *hit rate*: 1 if at least one gold item is in the top k, else 0,
  averaged over queries (``mode="any"``). With one gold per query this equals classic
  recall. ``mode="fraction"`` gives classic IR recall (share of the golds in the top k).
* **MRR**: the reciprocal rank of the first gold item; 0 if none was retrieved within the
  list (so MRR is "MRR@depth" where depth is how deep the ranking was evaluated).
* **nDCG@k**: binary gains, ``DCG = Σ_{gold at rank r ≤ k} 1/log2(r+1)``, normalised by the
  ideal DCG with ``min(n_gold, k)`` golds at the top.

Example:
    >>> recall_at_k([3, None], 5)
    1.0
    >>> reciprocal_rank([3, 7])
    0.3333333333333333
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError

#: The cut-offs METHODS §1 reports.
DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 50, 100)

Rank = int | None


def _valid(ranks: Iterable[Rank]) -> list[int]:
    out = []
    for r in ranks:
        if r is None:
            continue
        if isinstance(r, float) and math.isinf(r):
            continue
        r = int(r)
        if r < 1:
            raise InputError(f"ranks are 1-based, got {r}", item="rank")
        out.append(r)
    return out


def gold_ranks(ranked_ids: Sequence[str], gold_ids: Iterable[str]) -> list[Rank]:
    """1-based position of each gold id in ``ranked_ids`` (``None`` when absent).

    Example:
        >>> gold_ranks(["a", "b", "c"], ["c", "z"])
        [3, None]
    """
    pos: dict[str, int] = {}
    for i, x in enumerate(ranked_ids, 1):
        pos.setdefault(x, i)
    return [pos.get(g) for g in gold_ids]


def first_rank(ranks: Iterable[Rank]) -> Rank:
    """Best (smallest) rank of any gold, or ``None`` when no gold was retrieved."""
    v = _valid(ranks)
    return min(v) if v else None


def recall_at_k(ranks: Sequence[Rank], k: int, *, n_gold: int | None = None, mode: str = "any") -> float:
    """Recall@k of one query from its gold ranks.

    Args:
        ranks: gold ranks (1-based, ``None`` = not retrieved).
        k: cut-off (≥ 1).
        n_gold: number of golds (default ``len(ranks)``); only used by ``mode="fraction"``.
        mode: ``"any"`` (hit rate, the default) or ``"fraction"`` (share of golds found).
    """
    if k < 1:
        raise InputError("k must be >= 1", item="k")
    v = _valid(ranks)
    if mode == "any":
        return 1.0 if any(r <= k for r in v) else 0.0
    if mode == "fraction":
        n = len(ranks) if n_gold is None else n_gold
        if n <= 0:
            raise InputError("a query needs at least one gold item", item="gold_ids")
        return sum(1 for r in v if r <= k) / n
    raise InputError(f"unknown recall mode {mode!r}; use 'any' or 'fraction'", item="mode")


def reciprocal_rank(ranks: Sequence[Rank]) -> float:
    """1 / rank of the first gold item (0 when none was retrieved)."""
    r = first_rank(ranks)
    return 0.0 if r is None else 1.0 / r


def ndcg_at_k(ranks: Sequence[Rank], k: int = 10, *, n_gold: int | None = None) -> float:
    """nDCG@k with binary relevance; ``n_gold`` defaults to ``len(ranks)``."""
    if k < 1:
        raise InputError("k must be >= 1", item="k")
    n = len(ranks) if n_gold is None else n_gold
    if n <= 0:
        raise InputError("a query needs at least one gold item", item="gold_ids")
    dcg = sum(1.0 / math.log2(r + 1) for r in set(_valid(ranks)) if r <= k)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, min(n, k) + 1))
    return dcg / idcg


def summarize(per_query: Sequence[Sequence[Rank]], ks: Sequence[int] = DEFAULT_KS, *, ndcg_k: int = 10,
              mode: str = "any") -> dict[str, Any]:
    """Average Recall@k (each k), MRR and nDCG@``ndcg_k`` over queries.

    Args:
        per_query: for each query, the ranks of its gold items.
        ks: recall cut-offs.
        ndcg_k: nDCG cut-off.
        mode: recall mode (see :func:`recall_at_k`).

    Returns:
        ``{"n": n, "R@1": …, …, "MRR": …, "nDCG@10": …}`` (``None`` values when ``n == 0``).
    """
    n = len(per_query)
    out: dict[str, Any] = {"n": n}
    for k in ks:
        out[f"R@{k}"] = float(np.mean([recall_at_k(r, k, mode=mode) for r in per_query])) if n else None
    out["MRR"] = float(np.mean([reciprocal_rank(r) for r in per_query])) if n else None
    out[f"nDCG@{ndcg_k}"] = float(np.mean([ndcg_at_k(r, ndcg_k) for r in per_query])) if n else None
    return out


def recall_curve(per_query: Sequence[Sequence[Rank]], max_k: int = 100) -> np.ndarray:
    """Recall@k (hit rate) for k = 1..max_k, as an array of length ``max_k``."""
    if not per_query:
        return np.zeros(max_k)
    best = np.array([first_rank(r) or (max_k + 1) for r in per_query])
    return np.array([(best <= k).mean() for k in range(1, max_k + 1)])


__all__ = ["DEFAULT_KS", "gold_ranks", "first_rank", "recall_at_k", "reciprocal_rank", "ndcg_at_k",
           "summarize", "recall_curve"]
