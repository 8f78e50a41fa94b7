"""``distnorm``: Distribution Normalisation (Zhou et al., NeurIPS 2023), test-time.

The dot product is a zeroth-order approximation of the InfoNCE objective; DN adds the
first-order term by subtracting λ × the mean of each side's distribution before the dot
product::

    score(q, x) = (q − λ μ_Q) · (x − λ μ_X)
                = q·x − λ q·μ_X − λ μ_Q·x + λ² μ_Q·μ_X

i.e. each cosine loses λ × its similarity with *the other side's* mean. μ_X is the mean of
the item's modality (per modality, from the corpus sample), μ_Q the mean of the query's
modality (fitting queries when at least ``min_queries``, else the corpus). No
re-normalisation (DN scores dot products), λ = 0.25 by default (METHODS §1); the items
move, so ``transforms_items`` is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Modality
from ._stats import check_query_stats, fit_stats, lookup
from .base import FitData, GapCorrector


class DistNorm(GapCorrector):
    """Subtract λ × mean on both sides before the dot product.

    Args:
        lam: λ (0 = raw cosine).
        query_stats: ``auto`` / ``queries`` / ``corpus`` (see :class:`~mindgap.gap.center.Center`).
        min_queries: the ``auto`` threshold.

    Attributes:
        query_mean_: ``{query modality: (d,)}``.
        item_mean_: ``{item modality: (d,)}``.
        query_source_: where the query means came from.
    """

    name = "distnorm"
    transforms_items = True

    def __init__(self, lam: float = 0.25, query_stats: str = "auto", min_queries: int = 20) -> None:
        if not np.isfinite(float(lam)) or float(lam) < 0:
            raise InputError(f"lam must be a finite number >= 0, got {lam!r}", item="lam")
        self.lam = float(lam)
        self.query_stats = check_query_stats(query_stats)
        self.min_queries = int(min_queries)
        self.query_mean_: dict[str, np.ndarray] | None = None
        self.item_mean_: dict[str, np.ndarray] | None = None
        self.query_source_: dict[str, str] | None = None

    def fit(self, data: FitData) -> "DistNorm":
        st = fit_stats(data, self.name, query_stats=self.query_stats, min_queries=self.min_queries)
        self.query_mean_, self.item_mean_, self.query_source_ = st["query_mean"], st["item_mean"], st["query_source"]
        return self

    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        mu = lookup(self.query_mean_, query_modality, self.name, "query")
        return np.ascontiguousarray(np.asarray(q, np.float32) - self.lam * mu, dtype=np.float32)

    def transform_items(self, x: np.ndarray, modality: Modality) -> np.ndarray:
        mu = lookup(self.item_mean_, modality, self.name, "item")
        return np.ascontiguousarray(np.asarray(x, np.float32) - self.lam * mu, dtype=np.float32)

    def summary(self) -> dict[str, Any]:
        self._require("item_mean_")
        return {"lam": self.lam, "query_source": self.query_source_}
