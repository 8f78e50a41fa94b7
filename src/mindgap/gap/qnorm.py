"""``qnorm``: query-adaptive standardisation against the corpus (METHODS §6, option 2).

``score = (cos − μ_{q,M}) / σ_{q,M}`` where μ_{q,M} and σ_{q,M} are the mean and standard
deviation of *this query's* cosines over all items of modality M — what the query scores
on that modality in general. Both are exact functions of the corpus moments, so no scan is
needed: ``μ_{q,M} = q · m_M`` and ``σ²_{q,M} = qᵀ Σ_M q`` with ``m_M``, ``Σ_M`` the mean and
covariance of M's item embeddings (fitted on the corpus sample, no labels). A per-query
monotone map within a modality, so per-modality top-k then merge stays exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import NotFittedError
from ..types import Modality
from .base import FitData, GapCorrector


class QNorm(GapCorrector):
    """Per-query, per-modality z-score of the cosine from corpus moments.

    Attributes:
        mean_: ``{modality: (d,)}``; cov_: ``{modality: (d, d)}``.
    """

    name = "qnorm"

    def __init__(self, eps: float = 1e-4) -> None:
        self.eps = float(eps)
        self.mean_: dict[str, np.ndarray] | None = None
        self.cov_: dict[str, np.ndarray] | None = None

    def fit(self, data: FitData) -> "QNorm":
        mean, cov = {}, {}
        for m, x in (data.corpus or {}).items():
            x = np.asarray(x, np.float64)
            if len(x) < 2:
                continue
            mm = Modality.parse(m).value
            mean[mm] = x.mean(0).astype(np.float32)
            cov[mm] = np.cov(x.T).astype(np.float32)
        if not mean:
            data.require_corpus(self.name, "text", "image")
        self.mean_, self.cov_ = mean, cov
        return self

    def query_stats(self, q: np.ndarray, modality: Modality) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.cov_ is None:
            raise NotFittedError("gap corrector 'qnorm' is not fitted; run `mindgap fit-gap` first", item=self.name)
        m = Modality.parse(modality).value
        if m not in self.mean_:
            raise NotFittedError(f"qnorm has no corpus statistics for {m} items", item=self.name)
        q = np.atleast_2d(np.asarray(q, np.float64))
        mu = q @ np.asarray(self.mean_[m], np.float64)
        sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", q, np.asarray(self.cov_[m], np.float64), q), self.eps ** 2))
        return mu, sd

    def score_query(self, sim: np.ndarray, q: np.ndarray | None, query_modality: Modality,
                    modality: Modality) -> np.ndarray:
        if q is None:
            raise NotFittedError("qnorm scores need the query vectors", item=self.name)
        mu, sd = self.query_stats(q, modality)
        return (np.atleast_2d(np.asarray(sim, np.float64)) - mu[:, None]) / sd[:, None]

    def summary(self) -> dict[str, Any]:
        self._require("mean_")
        return {"modalities": sorted(self.mean_ or {})}
