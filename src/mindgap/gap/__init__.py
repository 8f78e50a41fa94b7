"""Gap correctors: one method per file, behind the ``gap_correctors`` registry.

Spec strings: ``naive``, ``zscore``, ``center``, ``standardize``, ``distnorm``,
``linear`` (``linear:procrustes``), ``modal-clf``; combinations with ``+`` apply left to
right (``linear+zscore``: map the query, then standardise the resulting cosines).

Adding one (the hooks are described in :mod:`mindgap.gap.base`):

1. subclass :class:`~mindgap.gap.base.GapCorrector` in a new file: hyper-parameters in
   ``__init__`` (they become ``name:key=value`` spec options), learned state in attributes
   ending with ``_`` (NumPy arrays, dicts, lists, scalars: they go to the store manifest as
   JSON), ``fit(data: FitData) -> self``, and override only the hooks it needs
   (``prepare_query``, ``transform_items`` + ``transforms_items = True``, ``score``, ``route``);
   raise :class:`~mindgap.errors.NotFittedError` when used unfitted (``self._require(...)``);
2. give the class a ``name`` and register it under that name:
   ``gap_correctors.register("name")(MyCorrector)`` (or ``register_lazy`` here, by
   ``"module:Class"``). A plain ``factory(rest, **options)`` function also works.

Example:
    >>> from mindgap.gap import make_corrector
    >>> make_corrector("linear:procrustes").kind
    'procrustes'
    >>> make_corrector("linear+zscore").spec
    'linear+zscore'
"""

from __future__ import annotations

from typing import Any

from ..errors import SpecError
from ..registry import gap_correctors, split_spec
from .base import FitData, GapCorrector, corrector_from_dict
from .chain import Chain
from .pairs import read_pairs, read_queries

gap_correctors.register_lazy("naive", "mindgap.gap.naive:Naive", "raw cosine over the mixed store")
gap_correctors.register_lazy("zscore", "mindgap.gap.zscore:ZScore", "per-modality (cos − μ_M)/σ_M on gold or pseudo pairs")
gap_correctors.register_lazy("center", "mindgap.gap.center:Center", "subtract per-modality means (queries, docs), renormalise (GR-CLIP)")
gap_correctors.register_lazy("standardize", "mindgap.gap.standardize:Standardize", "per-dimension, per-modality standardisation (I0T post-hoc)")
gap_correctors.register_lazy("distnorm", "mindgap.gap.distnorm:DistNorm", "subtract λ × mean on both sides before the dot product (Distribution Normalisation)")
gap_correctors.register_lazy("linear", "mindgap.gap.linear:Linear", "OLS / Procrustes map of the query across the gap")
gap_correctors.register_lazy("modal-clf", "mindgap.gap.modal_clf:ModalClf", "classifier routes the query to one modality")
gap_correctors.register_lazy("calibrated", "mindgap.gap.calibrated:Calibrated",
                             "calibrated P(relevant | cosine, modality), list posterior, ranks both modalities")
gap_correctors.register_lazy("qnorm", "mindgap.gap.qnorm:QNorm", "per-query z-score against the corpus moments")
gap_correctors.register_lazy("quota", "mindgap.gap.fusion:Quota", "fixed k/2 per modality (interleave; LlamaIndex)")
gap_correctors.register_lazy("rrf", "mindgap.gap.fusion:RRF", "reciprocal rank fusion, k=60 (Qdrant, LanceDB)")
gap_correctors.register_lazy("minmax", "mindgap.gap.fusion:MinMax", "min-max per result list (Weaviate)")
gap_correctors.register_lazy("dbsf", "mindgap.gap.fusion:DBSF", "distribution-based score fusion, mean ± 3σ (Qdrant)")

GAP_NAMES = ["naive", "zscore", "center", "standardize", "distnorm", "linear", "modal-clf", "calibrated", "qnorm",
             "quota", "rrf", "minmax", "dbsf"]


def make_corrector(spec: str, **params: Any) -> GapCorrector:
    """Build an (unfitted) corrector from a spec.

    ``name`` or ``name:options`` (``linear:procrustes``, ``distnorm:lam=0.5``,
    ``linear:ols,ridge=1``); ``a+b`` chains them (:class:`~mindgap.gap.chain.Chain`).
    Keyword ``params`` override spec options (single correctors only).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("empty gap corrector spec", item=str(spec))
    spec = spec.strip()
    if "+" in spec:
        if params:
            raise SpecError("keyword options apply to one corrector; put them in each part's spec", item=spec)
        return Chain([make_corrector(s) for s in spec.split("+")], spec=spec)
    name, rest = split_spec(spec)
    factory = gap_correctors.factory(name)
    if isinstance(factory, type) and issubclass(factory, GapCorrector):
        return factory.from_spec(rest, **params)
    return factory(rest, **params)  # a plugin's ``factory(rest, **options)``


def list_gap_correctors() -> dict[str, str]:
    return gap_correctors.describe()


__all__ = ["FitData", "GapCorrector", "GAP_NAMES", "make_corrector", "corrector_from_dict", "list_gap_correctors",
           "read_pairs", "read_queries"]
