"""``zscore``: per-modality score standardisation (METHODS §1).

For each (query modality, knowledge modality M) fit μ_M, σ_M as the mean and standard
deviation of cos(Q, K_gold) over fitting queries whose gold has modality M; at query time
``score = (cos − μ_M) / σ_M``. Monotone within a modality, so per-modality top-k by cosine
followed by a merge on the standardised score is exact, and refitting needs no re-indexing.

Fitted on labelled pairs, or on *pseudo* pairs (each query's top-1 item of each modality
stands in for its gold — see :func:`mindgap.gap.pseudo_pairs`) when no labels exist.
With pairs only for one knowledge modality the other cannot be standardised: a clear error.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from ..errors import InputError, NotFittedError
from ..types import Modality
from .base import FitData, GapCorrector, HeadScorer


class ZScore(GapCorrector):
    """Per-modality standardisation of cosine scores.

    Args:
        min_pairs: minimum pairs per modality to fit (fewer → error).
        eps: floor on σ.

    Attributes:
        stats_: ``{"<query modality>": {"<item modality>": [mu, sigma, n]}}``.
    """

    name = "zscore"
    needs_pairs = True

    def __init__(self, min_pairs: int = 5, eps: float = 1e-4) -> None:
        self.min_pairs = min_pairs
        self.eps = eps
        self.stats_: dict[str, dict[str, list[float]]] | None = None
        self.pairs_: str | None = None

    def fit(self, data: FitData) -> "ZScore":
        data.require_pairs("zscore")
        cos = np.einsum("ij,ij->i", data.queries, data.gold)
        qm = data.qmod()
        gm = np.asarray([Modality.parse(m).value for m in data.gold_modality])
        stats: dict[str, dict[str, list[float]]] = {}
        for q in np.unique(qm):
            for m in (Modality.TEXT.value, Modality.IMAGE.value):
                sel = cos[(qm == q) & (gm == m)]
                if len(sel) == 0:
                    continue
                if len(sel) < self.min_pairs:
                    raise InputError(f"only {len(sel)} pairs with {m} gold for {q} queries (need {self.min_pairs})", item="pairs")
                stats.setdefault(str(q), {})[m] = [float(sel.mean()), float(max(sel.std(ddof=1), self.eps)), int(len(sel))]
        self.stats_ = stats
        self.pairs_ = data.pairs
        return self

    def _mu_sigma(self, query_modality: Modality, modality: Modality) -> tuple[float, float]:
        if self.stats_ is None:
            raise NotFittedError("gap corrector 'zscore' is not fitted; run `mindgap fit-gap` first", item="zscore")
        st = self.stats_.get(Modality.parse(query_modality).value, {})
        m = Modality.parse(modality).value
        if m not in st:
            have = {q: sorted(v) for q, v in self.stats_.items()}
            raise NotFittedError(
                f"zscore has no statistics for {Modality.parse(query_modality).value} queries against {m} items "
                f"(fitted: {have}); fit with pairs covering it", item="zscore")
        mu, sigma = st[m][:2]
        return mu, sigma

    def score(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        mu, sigma = self._mu_sigma(query_modality, modality)
        return (np.asarray(sim, dtype=np.float32) - mu) / sigma

    def head_scorer(self, query_modality: Modality, modality: Modality) -> HeadScorer | None:
        mu, sigma = self._mu_sigma(query_modality, modality)
        if not sigma > 0 or type(mu) is not float or type(sigma) is not float:
            return None
        # score()'s float32 arithmetic (Python floats meet a float32 array as float32) in Python
        # floats: each operation in double, rounded to float32 — the same result, since double
        # carries more than 2 × 24 + 2 bits (double rounding is innocuous for + − × ÷)
        mu32, sigma32 = array("f", (mu, sigma)).tolist()

        def head(sims: list[float], k: int) -> list[float]:
            diff = array("f", [x - mu32 for x in sims[:k]]).tolist()
            return array("f", [d / sigma32 for d in diff]).tolist()

        return head

    def summary(self) -> dict[str, Any]:
        return {"stats": self.stats_, "pairs": self.pairs_}
