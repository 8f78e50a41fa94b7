"""The fusion baselines other retrieval products use, as list-level correctors (METHODS §6).

Each scores one query's per-modality candidate list (best first, ``depth`` candidates) and
the retriever merges the lists on that score:

* ``quota`` — a fixed share per modality (LlamaIndex's multi-modal retriever: ``k/2``
  texts and ``k/2`` images): the lists are interleaved rank by rank, so any top ``k``
  holds ``⌈k/2⌉`` / ``⌊k/2⌋`` of each (within a rank the higher cosine comes first);
* ``rrf`` — reciprocal rank fusion, ``1 / (k_rrf + rank)`` with ``k_rrf = 60`` (Qdrant,
  LanceDB); with one list per modality it is an interleave too (ties broken by cosine);
* ``minmax`` — ``(s − min) / (max − min)`` over the list (Weaviate's relative score fusion);
* ``dbsf`` — distribution-based score fusion (Qdrant): ``(s − (μ − 3σ)) / 6σ`` with μ, σ
  over the list.

Nothing to fit. ``minmax`` and ``dbsf`` depend on how deep the list is: their statistics
are taken over each modality's best ``depth`` candidates (the retriever fetches at least
that many), so the result does not depend on ``k``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Modality
from .base import GapCorrector


def _ranks(sim: np.ndarray) -> np.ndarray:
    """1-based rank of each entry within its row (descending, stable)."""
    order = np.argsort(-sim, axis=1, kind="stable")
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(1, sim.shape[1] + 1)[None, :].repeat(len(sim), 0), 1)
    return r


def _head(sim: np.ndarray, depth: int) -> np.ndarray:
    """Each row's best ``depth`` values: the list statistics are taken over them (so a longer
    list, k > depth, does not change them)."""
    if sim.shape[1] <= depth:
        return sim
    return -np.sort(-sim, axis=1)[:, :depth]


class _ListFusion(GapCorrector):
    def __init__(self, depth: int = 100) -> None:
        if int(depth) < 1:
            raise InputError(f"{self.name}: depth must be >= 1", item="depth")
        self.depth = int(depth)

    @property
    def list_depth(self) -> int:  # type: ignore[override]
        return self.depth

    def score(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        sim = np.atleast_2d(np.asarray(sim, np.float64))
        if sim.shape[1] == 0:
            return sim
        return self._list_score(sim)

    def _list_score(self, sim: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        return self.get_params()


class Quota(_ListFusion):
    """Fixed per-modality quota: interleave the modality lists rank by rank."""

    name = "quota"

    def _list_score(self, sim: np.ndarray) -> np.ndarray:
        return -_ranks(sim) + 0.25 * np.clip(sim, -1, 1)


class RRF(_ListFusion):
    """Reciprocal rank fusion: ``1 / (k + rank)``."""

    name = "rrf"

    def __init__(self, k: int = 60, depth: int = 100) -> None:
        super().__init__(depth)
        if int(k) < 0:
            raise InputError("rrf: k must be >= 0", item="k")
        self.k = int(k)

    def _list_score(self, sim: np.ndarray) -> np.ndarray:
        return 1.0 / (self.k + _ranks(sim)) + 1e-9 * np.clip(sim, -1, 1)


class MinMax(_ListFusion):
    """Min-max normalisation of each list."""

    name = "minmax"

    def _list_score(self, sim: np.ndarray) -> np.ndarray:
        head = _head(sim, self.depth)
        lo, hi = head.min(1, keepdims=True), head.max(1, keepdims=True)
        span = hi - lo
        # + a cosine tie-break: every list's top scores exactly 1 (ties across modalities are broken by cosine)
        return np.where(span > 0, (sim - lo) / np.where(span > 0, span, 1), 1.0) + 1e-6 * np.clip(sim, -1, 1)


class DBSF(_ListFusion):
    """Distribution-based score fusion: ``(s − (μ − 3σ)) / 6σ`` per list."""

    name = "dbsf"

    def _list_score(self, sim: np.ndarray) -> np.ndarray:
        head = _head(sim, self.depth)
        mu, sd = head.mean(1, keepdims=True), head.std(1, keepdims=True)
        return np.where(sd > 0, (sim - (mu - 3 * sd)) / np.where(sd > 0, 6 * sd, 1), 0.5)


__all__ = ["Quota", "RRF", "MinMax", "DBSF"]
