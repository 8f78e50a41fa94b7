"""``standardize``: per-dimension, per-modality standardisation (I0T, post-hoc variant).

I0T's training-free variant standardises each modality's embeddings per dimension (mean 0,
unit variance) so that the modalities share one distribution and the gap nearly vanishes;
vectors are then re-normalised for cosine search. Queries and documents get their own
statistics (as in :mod:`mindgap.gap.center`; query statistics from the fitting queries when
there are at least ``min_queries``, else from the corpus sample of the query's modality).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..types import Modality
from ._stats import check_query_stats, fit_stats, lookup
from .base import FitData, GapCorrector


class Standardize(GapCorrector):
    """``x ↦ l2((x − μ_M) / σ_M)`` per dimension, per modality (queries and items apart).

    Args:
        query_stats: ``auto`` / ``queries`` / ``corpus`` (see :class:`~mindgap.gap.center.Center`).
        min_queries: the ``auto`` threshold.
        eps: floor on each σ.

    Attributes:
        query_mean_, query_std_: ``{query modality: (d,)}``.
        item_mean_, item_std_: ``{item modality: (d,)}``.
        query_source_: where the query statistics came from.
    """

    name = "standardize"
    transforms_items = True

    def __init__(self, query_stats: str = "auto", min_queries: int = 20, eps: float = 1e-6) -> None:
        self.query_stats = check_query_stats(query_stats)
        self.min_queries = int(min_queries)
        self.eps = float(eps)
        self.query_mean_: dict[str, np.ndarray] | None = None
        self.query_std_: dict[str, np.ndarray] | None = None
        self.item_mean_: dict[str, np.ndarray] | None = None
        self.item_std_: dict[str, np.ndarray] | None = None
        self.query_source_: dict[str, str] | None = None

    def fit(self, data: FitData) -> "Standardize":
        st = fit_stats(data, self.name, query_stats=self.query_stats, min_queries=self.min_queries,
                       with_std=True, eps=self.eps)
        self.query_mean_, self.query_std_ = st["query_mean"], st["query_std"]
        self.item_mean_, self.item_std_ = st["item_mean"], st["item_std"]
        self.query_source_ = st["query_source"]
        return self

    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        mu = lookup(self.query_mean_, query_modality, self.name, "query")
        sd = lookup(self.query_std_, query_modality, self.name, "query")
        return l2_normalize((q - mu) / sd)

    def transform_items(self, x: np.ndarray, modality: Modality) -> np.ndarray:
        mu = lookup(self.item_mean_, modality, self.name, "item")
        sd = lookup(self.item_std_, modality, self.name, "item")
        return l2_normalize((x - mu) / sd)

    def summary(self) -> dict[str, Any]:
        self._require("item_std_")
        return {"query_source": self.query_source_,
                "item_std_mean": {m: float(np.mean(v)) for m, v in (self.item_std_ or {}).items()}}
