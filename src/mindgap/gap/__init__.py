"""Gap correctors: one method per file, behind the ``gap_correctors`` registry.

Spec strings: ``naive``, ``zscore``, ``center``, ``standardize``, ``distnorm``,
``linear`` (``linear:procrustes``), ``modal-clf``; combinations with ``+`` apply left to
right (``linear+zscore``: map the query, then standardise the resulting cosines).

Adding one: subclass :class:`~mindgap.gap.base.GapCorrector` in a new file, override the
hooks it needs, and register a factory ``gap_correctors.register("name")(factory)`` (or
``register_lazy`` here).
"""

from __future__ import annotations

from typing import Any

from ..registry import gap_correctors, split_spec
from .base import FitData, GapCorrector

gap_correctors.register_lazy("naive", "mindgap.gap.naive:Naive", "raw cosine over the mixed store")
gap_correctors.register_lazy("zscore", "mindgap.gap.zscore:ZScore", "per-modality (cos − μ_M)/σ_M on gold or pseudo pairs")
gap_correctors.register_lazy("center", "mindgap.gap.center:_make", "subtract per-modality means (queries, docs), renormalise (GR-CLIP)")
gap_correctors.register_lazy("standardize", "mindgap.gap.standardize:_make", "per-dimension, per-modality standardisation (I0T post-hoc)")
gap_correctors.register_lazy("distnorm", "mindgap.gap.distnorm:_make", "subtract λ × the other side's mean (Distribution Normalisation)")
gap_correctors.register_lazy("linear", "mindgap.gap.linear:_make", "OLS / Procrustes map of the query across the gap")
gap_correctors.register_lazy("modal-clf", "mindgap.gap.modal_clf:_make", "classifier routes the query to one modality")

GAP_NAMES = ["naive", "zscore", "center", "standardize", "distnorm", "linear", "modal-clf"]


def make_corrector(spec: str, **params: Any) -> GapCorrector:
    """Build an (unfitted) corrector from a spec (``zscore``, ``linear:procrustes``, ``linear+zscore``)."""
    if "+" in spec:
        from .chain import Chain

        return Chain([make_corrector(s.strip()) for s in spec.split("+")])
    name, rest = split_spec(spec)
    factory = gap_correctors.factory(name)
    if rest:
        return factory(rest, **params) if name not in {"naive", "zscore"} else factory(**params)
    try:
        return factory(**params)
    except TypeError:
        return factory("", **params)


def corrector_from_dict(d: dict[str, Any]) -> GapCorrector:
    """Rebuild a fitted corrector from its manifest entry."""
    name = d["name"]
    if name == "chain":
        from .chain import Chain

        return Chain.from_dict(d)
    obj = make_corrector(name)
    return type(obj).from_dict(d)


def list_gap_correctors() -> dict[str, str]:
    return gap_correctors.describe()


__all__ = ["FitData", "GapCorrector", "GAP_NAMES", "make_corrector", "corrector_from_dict", "list_gap_correctors"]
