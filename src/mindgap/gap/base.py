"""The GapCorrector seam (scikit-learn rules: params in ``__init__``, learned state ends in
``_``, ``fit`` returns self, a clear :class:`~mindgap.errors.NotFittedError` if unfitted).

A corrector can act at three points of a search, each optional:

* ``prepare_query(q, query_modality, target)`` — the vector used to search partition
  ``target`` (embedding-level fixes, linear maps); default: ``q`` unchanged;
* ``transform_items(x, modality)`` — embedding-level fixes that also move the documents
  (``center``, ``standardize``); ``None`` when documents stay raw (then the store's own
  index is searched, no re-indexing needed);
* ``score(sim, query_modality, modality)`` — a per-modality monotone rescoring of the
  similarities (``zscore``), so per-modality top-k then merge is exact;
* ``route(q, query_modality)`` — which modalities to search per query (``modal-clf``).

Fitting data is a :class:`FitData`: query embeddings with their gold item embeddings and
gold modality (labelled or pseudo pairs) and/or a sample of corpus embeddings per modality.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, NotFittedError
from ..types import Modality


@dataclass
class FitData:
    """What gap correctors are fitted on.

    Attributes:
        queries: (n, d) query embeddings.
        gold: (n, d) embeddings of each query's gold item.
        gold_modality: n modality values (``"text"``/``"image"``).
        query_modality: modality of the queries (one per row, or a single value).
        corpus: a sample of item embeddings per modality (for corpus-statistics methods).
        pairs: "gold" (labelled) or "pseudo" (top-1 per modality, no labels).
    """

    queries: np.ndarray | None = None
    gold: np.ndarray | None = None
    gold_modality: np.ndarray | None = None
    query_modality: np.ndarray | str = "text"
    corpus: dict[str, np.ndarray] = field(default_factory=dict)
    pairs: str = "gold"

    def qmod(self) -> np.ndarray:
        n = 0 if self.queries is None else len(self.queries)
        if isinstance(self.query_modality, str):
            return np.array([Modality.parse(self.query_modality).value] * n)
        return np.asarray([Modality.parse(m).value for m in self.query_modality])

    def require_pairs(self, who: str) -> None:
        if self.queries is None or self.gold is None or self.gold_modality is None or len(self.queries) == 0:
            raise InputError(f"{who} needs (query, gold item) pairs to fit (labelled or --pseudo)", item="pairs")

    def require_corpus(self, who: str, *mods: str) -> None:
        for m in mods:
            if m not in self.corpus or len(self.corpus[m]) == 0:
                raise InputError(f"{who} needs a corpus sample of {m} embeddings to fit", item="corpus")


class GapCorrector:
    """Base class: identity everywhere. Subclasses override what they change."""

    name: ClassVar[str] = "base"
    #: whether fitting needs (query, gold) pairs (vs. corpus statistics only)
    needs_pairs: ClassVar[bool] = False
    #: whether ``transform_items`` moves documents (the retriever then scans transformed vectors)
    transforms_items: ClassVar[bool] = False

    def fit(self, data: FitData) -> "GapCorrector":
        return self

    def _require(self, *attrs: str) -> None:
        """Raise :class:`NotFittedError` unless every learned attribute is set."""
        if any(getattr(self, a, None) is None for a in attrs):
            raise NotFittedError(f"gap corrector {self.name!r} is not fitted; run `mindgap fit-gap` first", item=self.name)

    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        return q

    def transform_items(self, x: np.ndarray, modality: Modality) -> np.ndarray:
        return x

    def score(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        return sim

    def route(self, q: np.ndarray, query_modality: Modality) -> list[list[Modality]] | None:
        """Modalities to search per query, or ``None`` for all."""
        return None

    # -- persistence -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (arrays as lists) for the store manifest."""
        state = {k: _jsonable(v) for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        return {"name": self.name, "params": _jsonable(self.get_params()), "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GapCorrector":
        obj = cls(**d.get("params", {}))
        for k, v in d.get("state", {}).items():
            setattr(obj, k, _from_jsonable(v))
        return obj

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.astype(np.float32 if v.dtype.kind == "f" else v.dtype).tolist(), "dtype": str(v.dtype) if v.dtype.kind != "f" else "float32"}
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, GapCorrector):
        return v.to_dict()
    return v


def _from_jsonable(v: Any) -> Any:
    if isinstance(v, dict) and "__ndarray__" in v:
        return np.asarray(v["__ndarray__"], dtype=v.get("dtype", "float32"))
    if isinstance(v, dict) and "name" in v and "params" in v and "state" in v:
        from . import corrector_from_dict

        return corrector_from_dict(v)
    if isinstance(v, dict):
        return {k: _from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_jsonable(x) for x in v]
    return v
