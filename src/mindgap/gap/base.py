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
* ``route(q, query_modality, texts=None)`` — which modalities to search per query
  (``modal-clf``); correctors that classify the query *text* (``uses_query_text``) get the
  query strings too.

Fitting data is a :class:`FitData`: query embeddings with their gold item embeddings and
gold modality (labelled or pseudo pairs) and/or a sample of corpus embeddings per modality.
"""

from __future__ import annotations

import base64
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..errors import InputError, MindgapError, NotFittedError, SpecError
from ..registry import gap_correctors
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
        counts: items per modality in the store being fitted for (the corpus sample may be
            smaller); probability correctors weight their negatives by it.
    """

    queries: np.ndarray | None = None
    gold: np.ndarray | None = None
    gold_modality: np.ndarray | None = None
    query_modality: np.ndarray | str = "text"
    corpus: dict[str, np.ndarray] = field(default_factory=dict)
    pairs: str = "gold"
    counts: dict[str, int] = field(default_factory=dict)

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

    def take(self, rows: np.ndarray) -> "FitData":
        """The pairs at ``rows`` (index or mask), with the same corpus sample."""
        qm = self.query_modality if isinstance(self.query_modality, str) else np.asarray(self.query_modality)[rows]
        pick = (lambda a: None if a is None else np.asarray(a)[rows])
        return FitData(queries=pick(self.queries), gold=pick(self.gold), gold_modality=pick(self.gold_modality),
                       query_modality=qm, corpus=self.corpus, pairs=self.pairs, counts=self.counts)

    def query_sample(self, modality: "Modality | str", min_rows: int = 1) -> np.ndarray | None:
        """The fitting queries of one modality (``None`` if fewer than ``min_rows``)."""
        if self.queries is None or len(self.queries) == 0:
            return None
        m = Modality.parse(modality).value
        sel = np.asarray(self.queries, dtype=np.float32)[self.qmod() == m]
        return sel if len(sel) >= max(1, min_rows) else None


#: Correctors made of other correctors (``chain``), by name. They register themselves
#: (``class Chain(GapCorrector, composite=True)``), so this module imports none of them.
_COMPOSITES: dict[str, type] = {}


#: :meth:`GapCorrector.head_scorer`'s function: ``(sims, k) → the first k scores``
HeadScorer = Callable[[list[float], int], list[float]]


def head_identity(sims: list[float], k: int) -> list[float]:
    """:data:`HeadScorer` of a corrector whose score is the cosine."""
    return sims[:k]


def corrector_from_dict(d: dict[str, Any]) -> "GapCorrector":
    """Rebuild a fitted corrector from its manifest entry (``to_dict()`` output)."""
    name = d.get("name") if isinstance(d, dict) else None
    if not name:
        raise InputError("gap corrector entry without a 'name'", item="gap")
    if name in _COMPOSITES:
        return _COMPOSITES[name].from_dict(d)
    factory = gap_correctors.factory(name)
    cls = factory if isinstance(factory, type) and issubclass(factory, GapCorrector) else type(factory(""))
    return cls.from_dict(d)


class GapCorrector:
    """Base class: identity everywhere. Subclasses override what they change."""

    name: ClassVar[str] = "base"
    #: whether fitting needs (query, gold) pairs (vs. corpus statistics only)
    needs_pairs: ClassVar[bool] = False
    #: whether ``transform_items`` moves documents (the retriever then scans transformed vectors)
    transforms_items: ClassVar[bool] = False
    #: whether ``route`` needs the query strings (``texts=``), not only their embeddings
    uses_query_text: ClassVar[bool] = False
    #: the hyper-parameter a bare word in a spec sets (``linear:procrustes`` → ``kind``)
    spec_positional: ClassVar[str | None] = None

    def __init_subclass__(cls, composite: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if composite:
            _COMPOSITES[cls.name] = cls

    @classmethod
    def from_spec(cls, rest: str = "", **params: Any) -> "GapCorrector":
        """Build from the part of a spec after ``name:`` — ``key=value`` options separated by ``,``.

        Example: ``distnorm:lam=0.5``, ``linear:procrustes``, ``linear:ols,ridge=1``.
        Values are parsed as JSON scalars when they look like one (numbers, true/false/null).
        """
        opts: dict[str, Any] = {}
        for tok in (t.strip() for t in (rest or "").split(",")):
            if not tok:
                continue
            key, eq, val = tok.partition("=")
            if not eq:
                if cls.spec_positional is None or cls.spec_positional in opts:
                    raise SpecError(f"gap corrector {cls.name!r}: bad option {tok!r} (use key=value)", item=tok)
                key, val = cls.spec_positional, tok
            opts[key.strip().replace("-", "_")] = _parse_value(val.strip())
        opts.update(params)
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        unknown = sorted(set(opts) - set(accepted))
        if unknown:
            raise SpecError(f"gap corrector {cls.name!r} has no option(s) {', '.join(unknown)}; "
                            f"accepted: {', '.join(accepted) or 'none'}", item=cls.name)
        return cls(**opts)

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

    #: list-level correctors (``calibrated``, ``minmax``, ``dbsf``, ``rrf``, ``quota``) score a
    #: query's whole per-modality candidate list at once: ``sim`` rows are sorted best first and
    #: the retriever fetches at least this many candidates per modality (``None``: per-item scores)
    list_depth: ClassVar[int | None] = None
    #: whether ``probability`` returns P(relevant) per candidate (a ``min_prob`` cut-off needs it)
    gives_probability: ClassVar[bool] = False

    def score_query(self, sim: np.ndarray, q: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        """Scores of candidates given the query vectors ``q`` (one row per row of ``sim``).

        Query-adaptive correctors override this; the default ignores ``q`` (:meth:`score`).
        """
        return self.score(sim, query_modality, modality)

    def head_scorer(self, query_modality: Modality, modality: Modality) -> HeadScorer | None:
        """The single-query path of :meth:`mindgap.retriever.Retriever.search_vectors`: a function
        ``(sims, k) → scores`` from one query's candidate list of a modality (best first, Python
        floats holding float32 values, as the search scores them) to the scores of its first ``k``
        — the floats :meth:`score_query` gives them, for a corrector whose scores never rise along
        such a list (so a modality's first ``k`` are all that can enter the merge) and that neither
        routes nor moves vectors. ``None`` (the default): the general path."""
        return None

    def probability(self, sim: np.ndarray, q: np.ndarray, query_modality: Modality,
                    modality: Modality) -> np.ndarray | None:
        """P(relevant) of each candidate (same layout as :meth:`score_query`), or ``None``
        when the corrector does not model it."""
        return None

    def route(self, q: np.ndarray, query_modality: Modality,
              texts: Sequence[str] | None = None) -> list[list[Modality]] | None:
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


#: arrays with more elements than this are stored as base64 (a 512×512 map as a JSON list
#: of floats would be ~5 MB of manifest; base64 float32 is 1.4 MB and bit-exact)
B64_MIN_SIZE = 1024


def fit_checked(corr: "GapCorrector", data: FitData, spec: str) -> "GapCorrector":
    """``corr.fit(data)`` with numerical failures (singular matrices, degenerate pairs) turned into
    a clear :class:`InputError` naming the spec; mindgap's own errors pass through."""
    try:
        return corr.fit(data)
    except MindgapError:
        raise
    except (ValueError, np.linalg.LinAlgError) as exc:
        raise InputError(f"cannot fit {spec!r}: {exc}", item="gap") from None


def _parse_value(val: str) -> Any:
    try:
        out = json.loads(val)
    except ValueError:
        return val
    return out if isinstance(out, (int, float, bool)) or out is None else val


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        a = v.astype(np.float32) if v.dtype.kind == "f" else v
        dtype = "float32" if v.dtype.kind == "f" else str(v.dtype)
        if a.size > B64_MIN_SIZE and a.dtype.kind in "fiub":
            raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()  # little-endian on disk
            return {"__ndarray_b64__": base64.b64encode(raw).decode("ascii"), "dtype": dtype, "shape": list(a.shape)}
        return {"__ndarray__": a.tolist(), "dtype": dtype}
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
    if isinstance(v, dict) and "__ndarray_b64__" in v:
        dt = np.dtype(v.get("dtype", "float32")).newbyteorder("<")
        raw = np.frombuffer(base64.b64decode(v["__ndarray_b64__"]), dtype=dt)
        return raw.reshape(v.get("shape", [-1])).astype(dt.newbyteorder("="))
    if isinstance(v, dict) and "name" in v and "params" in v and "state" in v:
        return corrector_from_dict(v)
    if isinstance(v, dict):
        return {k: _from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_jsonable(x) for x in v]
    return v
