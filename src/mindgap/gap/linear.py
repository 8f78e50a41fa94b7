"""``linear``: a linear map of the query across the gap (OLS or orthogonal Procrustes, METHODS §3).

Fitted on (query, gold item) pairs whose gold is of *another* modality than the query —
for text questions, the pairs with a gold image (labelled, or pseudo pairs: each fitting
question's top-1 image). mRAG-gim's recipe: L2-normalise, mean-centre both sides, closed-form
OLS (optional ridge) or Procrustes (:mod:`mindgap.maps`). The same pairs, reversed, fit the
opposite direction too (image → text: image queries, or describing an image by the texts
nearest to it, as mRAG-gim does), so one fit serves both query modalities. At search time a
text query is mapped into image space for the image partition and left as it is for the
text partition:

    q_image = l2(W (l2(q) − μ_query) + μ_image)

The image mean is added back so that the mapped query is a pseudo *image* embedding: its
cosines with the (raw, un-moved) images are image–image similarities, on a scale
comparable with the text–text cosines it is merged with, and the store's own index is
searched (no re-indexing). ``space="centred"`` leaves it in the centred image space instead.

Only corpus statistics (no pairs at all): refused with a clear error — a cross-modal map
needs paired examples; use ``--pseudo`` queries when there are no labels.

Specs: ``linear`` (= ``linear:ols``), ``linear:procrustes``, ``linear:ols,ridge=1``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import InputError, NotFittedError
from ..maps import MAP_KINDS, LinearMap, fit_map
from ..types import Modality
from .base import FitData, GapCorrector

SPACES = ("raw", "centred")
log = logging.getLogger(__name__)


class Linear(GapCorrector):
    """Map queries into the other modality's space before searching it.

    Args:
        kind: ``ols`` or ``procrustes``.
        ridge: OLS ridge λ (on the sum of squares; see :func:`mindgap.maps.fit_ols`). The
            default 1 (not 0) because fitting sets usually hold few distinct gold items:
            on the offline model's 200 calib images plain OLS interpolates its pairs (cos
            ≈ 0.9 in-sample, ≈ 0.1 out-of-fold) and retrieves worse than raw cosine.
        center: mean-centre both sides before fitting (recommended).
        space: ``raw`` (add the target mean back) or ``centred``.
        min_pairs: minimum cross-modal pairs per direction.

    Attributes:
        maps_: ``{"text->image": LinearMap.to_dict(), "image->text": ...}`` one per direction.
    """

    name = "linear"
    needs_pairs = True
    spec_positional = "kind"

    def __init__(self, kind: str = "ols", ridge: float = 1.0, center: bool = True, space: str = "raw",
                 min_pairs: int = 10) -> None:
        if kind not in MAP_KINDS:
            raise InputError(f"unknown map kind {kind!r}; expected one of: {', '.join(MAP_KINDS)}", item="kind")
        if space not in SPACES:
            raise InputError(f"space must be one of {', '.join(SPACES)}, got {space!r}", item="space")
        if float(ridge) < 0:
            raise InputError("ridge must be >= 0", item="ridge")
        self.kind = kind
        self.ridge = float(ridge) if kind == "ols" else 0.0
        self.center = bool(center)
        self.space = space
        self.min_pairs = int(min_pairs)
        self.maps_: dict[str, dict[str, Any]] | None = None
        self._lm: dict[str, LinearMap] = {}

    def fit(self, data: FitData) -> "Linear":
        if data.queries is None or data.gold is None or data.gold_modality is None or len(data.queries) == 0:
            raise InputError("linear needs (query, gold item) pairs whose gold is of another modality "
                             "(e.g. text questions with gold images): corpus statistics alone cannot fit a "
                             "cross-modal map; give labelled pairs or pseudo queries", item="pairs")
        qm = data.qmod()
        gm = np.asarray([Modality.parse(m).value for m in data.gold_modality])
        queries, gold = np.asarray(data.queries, np.float32), np.asarray(data.gold, np.float32)
        maps: dict[str, dict[str, Any]] = {}
        short: list[str] = []
        mods = sorted(set(qm) | set(gm))
        for src in mods:
            for dst in mods:
                if src == dst:
                    continue
                # a (text query, gold image) pair teaches text→image and, reversed, image→text
                fwd, rev = (qm == src) & (gm == dst), (gm == src) & (qm == dst)
                n = int(fwd.sum() + rev.sum())
                if n == 0:
                    continue
                if n < self.min_pairs:
                    short.append(f"{src}->{dst}: {n} pairs")
                    continue
                x = np.concatenate([queries[fwd], gold[rev]])
                y = np.concatenate([gold[fwd], queries[rev]])
                maps[f"{src}->{dst}"] = fit_map(x, y, kind=self.kind, ridge=self.ridge, center=self.center).to_dict()
        if not maps:
            if short:
                raise InputError(f"too few cross-modal pairs to fit a map ({'; '.join(short)}; need "
                                 f"{self.min_pairs} per direction)", item="pairs")
            raise InputError("linear needs pairs whose gold modality differs from the query's (all fitting "
                             "pairs are same-modality: nothing to map across the gap)", item="pairs")
        if short:  # a direction without a map is refused at query time (NotFittedError), never guessed
            log.warning("linear: not fitting %s (fewer than %d pairs)", ", ".join(short), self.min_pairs)
        self.maps_ = maps
        self._lm = {}
        return self

    def linear_map(self, query_modality: Modality | str, target: Modality | str) -> LinearMap:
        """The fitted :class:`~mindgap.maps.LinearMap` for one direction."""
        if self.maps_ is None:
            raise NotFittedError("gap corrector 'linear' is not fitted; run `mindgap fit-gap` first", item="linear")
        key = f"{Modality.parse(query_modality).value}->{Modality.parse(target).value}"
        if key not in self._lm:
            if key not in self.maps_:
                raise NotFittedError(f"linear has no {key} map (fitted: {', '.join(sorted(self.maps_))}); "
                                     "fit with pairs covering it", item="linear")
            self._lm[key] = LinearMap.from_dict(self.maps_[key])
        return self._lm[key]

    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        if self.maps_ is None:
            raise NotFittedError("gap corrector 'linear' is not fitted; run `mindgap fit-gap` first", item="linear")
        if Modality.parse(query_modality) == Modality.parse(target):
            return q
        lm = self.linear_map(query_modality, target)
        out = lm.transform(q)
        if self.space == "raw" and lm.target_mean_ is not None:
            out = out + lm.target_mean_
        return l2_normalize(out)

    def summary(self) -> dict[str, Any]:
        self._require("maps_")
        return {k: {"kind": v["kind"], "ridge": v["ridge"], "n_pairs": v["n_pairs"]} for k, v in (self.maps_ or {}).items()}
