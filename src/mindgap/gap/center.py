"""``center``: subtract per-modality mean embeddings and renormalise (GR-CLIP, MixBench).

GR-CLIP removes the modality gap post hoc: the mean embedding of each modality — query
texts, document texts, document images — is subtracted and the vectors re-normalised
before cosine search. The query mean comes from the fitting queries when there are at
least ``min_queries`` of them (``query_stats="auto"``), else from the corpus sample of the
query's modality (documented fallback: text queries are then centred like text passages).
Documents move, so ``transforms_items`` is set and the retriever scans centred vectors.
(Mixed image+text documents, α·μ_text + (1−α)·μ_image in GR-CLIP, do not exist in
mindgap's stores: every item is one modality.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..types import Modality
from ._stats import check_query_stats, fit_stats, lookup
from .base import FitData, GapCorrector


class Center(GapCorrector):
    """Per-modality mean removal + renormalisation.

    Args:
        query_stats: where query means come from: ``auto`` (fitting queries if at least
            ``min_queries``, else the corpus), ``queries`` or ``corpus``.
        min_queries: the ``auto`` threshold.

    Attributes:
        query_mean_: ``{query modality: (d,)}``.
        item_mean_: ``{item modality: (d,)}``.
        query_source_: ``{query modality: "queries" | "corpus"}``.
    """

    name = "center"
    transforms_items = True

    def __init__(self, query_stats: str = "auto", min_queries: int = 20) -> None:
        self.query_stats = check_query_stats(query_stats)
        self.min_queries = int(min_queries)
        self.query_mean_: dict[str, np.ndarray] | None = None
        self.item_mean_: dict[str, np.ndarray] | None = None
        self.query_source_: dict[str, str] | None = None

    def fit(self, data: FitData) -> "Center":
        st = fit_stats(data, self.name, query_stats=self.query_stats, min_queries=self.min_queries)
        self.query_mean_, self.item_mean_, self.query_source_ = st["query_mean"], st["item_mean"], st["query_source"]
        return self

    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        return l2_normalize(q - lookup(self.query_mean_, query_modality, self.name, "query"))

    def transform_items(self, x: np.ndarray, modality: Modality) -> np.ndarray:
        return l2_normalize(x - lookup(self.item_mean_, modality, self.name, "item"))

    def summary(self) -> dict[str, Any]:
        self._require("item_mean_")
        return {"query_source": self.query_source_,
                "item_mean_norm": {m: float(np.linalg.norm(v)) for m, v in (self.item_mean_ or {}).items()}}
