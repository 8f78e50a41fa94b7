"""Gap-corrected fusion without a mindgap store (issue 17): candidate lists in, one merged list out.

Most multimodal stacks already have a vector database (Qdrant, LanceDB, a LlamaIndex or
LangChain index) that returns, per modality, a list of ids with raw cosines. A fitted
corrector is small — a few numbers per modality — so it can travel to them:

* :func:`fit_corrector` fits one from arrays or ``.npy``/``.npz`` files (query embeddings,
  their gold item embeddings and modality, a corpus sample per modality) — no store needed;
* :func:`save_corrector` / :func:`load_corrector` write and read the standalone JSON file
  (``docs/corrector-format.md``: versioned, every field, the scoring formula per kind);
  :func:`load_corrector` also reads a store's ``manifest.json`` (or the store folder);
* :func:`fuse` takes one query's per-modality candidate lists (and, optionally, its
  embedding) and returns one merged, corrected list, with the ``min_prob`` cut-off where
  the corrector models P(relevant) (``calibrated``).

The merge is the one :meth:`mindgap.retriever.Retriever.search_vectors` does, so a store
and a foreign search that return the same candidates give the same result: each modality's
list is sorted by cosine (best first; ties by id), scored by the corrector as one list,
only its best ``k`` can enter, and the union is sorted by score (ties by id).

Correctors that change *embeddings* (``center``, ``standardize``, ``distnorm``, ``linear``)
cannot be applied to someone else's finished search: they are refused with a clear error.

Example:
    >>> import numpy as np
    >>> from mindgap.gap.portable import fuse
    >>> from mindgap.gap import make_corrector
    >>> hits = fuse({"text": [("t1", 0.41), ("t2", 0.30)], "image": [("i1", 0.28)]}, make_corrector("quota"), k=3)
    >>> [(h.id, h.modality) for h in hits]
    [('t1', 'text'), ('i1', 'image'), ('t2', 'text')]
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MindgapError, NotFittedError
from ..types import MODALITIES, Modality
from .base import FitData, GapCorrector, fit_checked

#: the ``format`` field of a standalone corrector file
FORMAT = "mindgap.corrector"
#: the ``version`` field this code writes; readers refuse a higher one
FORMAT_VERSION = 1
#: the longest candidate list per modality :func:`fuse` accepts (a guard for the HTTP API)
MAX_CANDIDATES = 10_000
#: correctors that move embeddings: they need the search itself, not its output
EMBEDDING_LEVEL = ("center", "standardize", "distnorm", "linear")


@dataclass
class PortableCorrector:
    """A fitted corrector with what it was fitted for.

    Attributes:
        corrector: the fitted :class:`~mindgap.gap.base.GapCorrector`.
        encoder: spec of the encoder whose embeddings it was fitted on (``None``: unknown).
        dim: that encoder's dimension (``None``: unknown).
        meta: the file's ``fitted_on`` record (pairs kind, counts, source) and ``name``.
    """

    corrector: GapCorrector
    encoder: str | None = None
    dim: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The standalone file's JSON object (``docs/corrector-format.md``)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "name": self.meta.get("name") or self.corrector.name,
                "encoder": {"spec": self.encoder, "dim": self.dim} if self.encoder or self.dim else None,
                "fitted_on": self.meta.get("fitted_on") or {},
                "created": self.meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "corrector": self.corrector.to_dict()}


@dataclass
class FusedHit:
    """One result of :func:`fuse`.

    Attributes:
        id: the candidate's id, as given.
        modality: ``"text"`` or ``"image"``.
        cosine: the raw cosine, as given.
        score: the corrected score the merged list is sorted on.
        rank: 1-based rank in the merged list.
        modality_rank: 1-based rank within its modality's list (by cosine; by cosine minus the
            hubness term when ``calibrated`` applies it).
        probability: P(relevant) for probability correctors (``calibrated``), else ``None``.
        payload: whatever the caller attached to the candidate (a node, a document, a dict).
    """

    id: str
    modality: str
    cosine: float
    score: float
    rank: int = 0
    modality_rank: int = 0
    probability: float | None = None
    payload: Any = None

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "modality": self.modality, "cosine": round(self.cosine, 6), "score": round(self.score, 6),
             "rank": self.rank, "modality_rank": self.modality_rank}
        if self.probability is not None:
            d["probability"] = round(self.probability, 6)
        if isinstance(self.payload, dict) and self.payload:
            d["payload"] = self.payload
        return d


# -- loading / saving ------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise InputError(f"{what} not found", item=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{what} is not readable JSON: {exc}", item=str(path)) from None


def corrector_from_json(obj: Any, *, name: str | None = None, where: str = "corrector") -> PortableCorrector:
    """A :class:`PortableCorrector` from a parsed standalone file, a store manifest (``gap`` +
    ``default_gap``; ``name`` picks one, default: the store's default) or a bare ``to_dict()``
    entry (``{"name", "params", "state"}``)."""
    from . import corrector_from_dict, make_corrector

    if not isinstance(obj, dict):
        raise InputError("a corrector must be a JSON object", item=where)
    try:
        if obj.get("format") == FORMAT or "corrector" in obj and "version" in obj:
            if obj.get("format") != FORMAT:
                raise InputError(f"'format' must be {FORMAT!r}, got {obj.get('format')!r}", item=f"{where}.format")
            ver = obj.get("version")
            if not isinstance(ver, int) or isinstance(ver, bool) or ver < 1:
                raise InputError(f"'version' must be a positive integer, got {ver!r}", item=f"{where}.version")
            if ver > FORMAT_VERSION:
                raise InputError(f"corrector file version {ver} is newer than this mindgap reads ({FORMAT_VERSION}); "
                                 "upgrade mindgap", item=f"{where}.version")
            enc = obj.get("encoder") or {}
            if not isinstance(enc, dict):
                raise InputError("'encoder' must be an object or null", item=f"{where}.encoder")
            entry = obj.get("corrector")
            if not isinstance(entry, dict):
                raise InputError("'corrector' must be an object {name, params, state}", item=f"{where}.corrector")
            corr = corrector_from_dict(entry)
            dim = enc.get("dim")
            return PortableCorrector(corr, enc.get("spec"), int(dim) if isinstance(dim, int) else None,
                                     {"name": obj.get("name") or corr.name, "fitted_on": obj.get("fitted_on") or {},
                                      "created": obj.get("created")})
        if "gap" in obj and "encoder_spec" in obj:  # a store manifest
            gaps = obj.get("gap") or {}
            key = name or obj.get("default_gap") or "naive"
            if key == "naive" and key not in gaps:
                corr = make_corrector("naive")
            elif key not in gaps:
                raise InputError(f"the store has no fitted corrector {key!r} (fitted: {', '.join(sorted(gaps)) or 'none'})",
                                 item="name")
            else:
                corr = corrector_from_dict(gaps[key])
            return PortableCorrector(corr, obj.get("encoder_spec"), obj.get("dim"),
                                     {"name": key, "fitted_on": {"source": "store manifest"}})
        if "name" in obj and "params" in obj:
            return PortableCorrector(corrector_from_dict(obj), meta={"name": obj["name"]})
    except MindgapError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise InputError(f"not a valid corrector: {type(exc).__name__}: {exc}", item=where) from None
    raise InputError(f"not a corrector file: expected {{'format': {FORMAT!r}, 'version', 'corrector'}}, a store "
                     "manifest or a {name, params, state} entry", item=where)


def load_corrector(source: str | Path | Mapping[str, Any], *, name: str | None = None) -> PortableCorrector:
    """Read a fitted corrector.

    Args:
        source: a standalone corrector file (``mindgap fit-gap --out``), a store's
            ``manifest.json``, a store folder holding one, or the parsed JSON object.
        name: with a manifest, which fitted corrector (default: the store's default).
    """
    if isinstance(source, Mapping):
        return corrector_from_json(dict(source), name=name)
    p = Path(source).expanduser()
    if p.is_dir():
        if not (p / "manifest.json").is_file():
            raise InputError("a folder without manifest.json: give a corrector file or a mindgap store", item=str(p))
        p = p / "manifest.json"
    return corrector_from_json(_read_json(p, "corrector file"), name=name, where=str(p))


def as_portable(corrector: GapCorrector | PortableCorrector | str | Path | Mapping[str, Any]) -> PortableCorrector:
    """Any way of naming a fitted corrector (a fitted :class:`GapCorrector`, a
    :class:`PortableCorrector`, a corrector file / store path, or its parsed JSON) → a
    :class:`PortableCorrector` (what the framework adapters hold)."""
    if isinstance(corrector, PortableCorrector):
        return corrector
    if isinstance(corrector, GapCorrector):
        return PortableCorrector(corrector)
    return load_corrector(corrector)


def save_corrector(corrector: GapCorrector | PortableCorrector, path: str | Path, *, encoder: str | None = None,
                   dim: int | None = None, fitted_on: Mapping[str, Any] | None = None,
                   name: str | None = None) -> Path:
    """Write a standalone corrector file (atomically). Returns the path."""
    from ..fileio import write_json_atomic

    pc = corrector if isinstance(corrector, PortableCorrector) else PortableCorrector(corrector)
    if encoder is not None:
        pc.encoder = encoder
    if dim is not None:
        pc.dim = int(dim)
    if fitted_on is not None:
        pc.meta["fitted_on"] = dict(fitted_on)
    if name is not None:
        pc.meta["name"] = name
    _check_portable(pc.corrector)
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(p, pc.to_dict())
    return p


# -- fitting outside a store ------------------------------------------------------------------
def load_array(source: Any, what: str, *, key: str | None = None) -> np.ndarray:
    """An array from an array-like, a ``.npy`` file or a ``.npz`` file (``key``, or its only array)."""
    if isinstance(source, (str, Path)):
        p = Path(source).expanduser()
        if not p.is_file():
            raise InputError(f"{what}: file not found", item=str(p))
        try:
            got = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{what}: not a .npy/.npz file: {exc}", item=str(p)) from None
        if isinstance(got, np.lib.npyio.NpzFile):
            with got:
                names = list(got.files)
                pick = key if key in names else (names[0] if len(names) == 1 else None)
                if pick is None:
                    raise InputError(f"{what}: the .npz holds {names}; name one (key {key!r} is not there)", item=str(p))
                return np.asarray(got[pick])
        return np.asarray(got)
    try:
        return np.asarray(source)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: not an array: {exc}", item=what) from None


def _matrix(source: Any, what: str, key: str | None = None, dim: int | None = None) -> np.ndarray:
    a = load_array(source, what, key=key)
    if a.ndim != 2 or a.dtype.kind not in "fiu" or not np.isfinite(a).all():
        raise InputError(f"{what} must be a finite 2-D numeric array (n, d), got shape {a.shape} dtype {a.dtype}",
                         item=what)
    if dim is not None and a.shape[1] != dim:
        raise InputError(f"{what} has dimension {a.shape[1]}, expected {dim}", item=what)
    return a.astype(np.float32)


def fit_corrector(spec: str, *, queries: Any = None, gold: Any = None, gold_modality: Any = None,
                  corpus: Mapping[str, Any] | str | Path | None = None, query_modality: Any = "text",
                  counts: Mapping[str, int] | None = None, pairs: str = "gold",
                  encoder: str | None = None) -> PortableCorrector:
    """Fit a corrector from arrays or files, no store needed.

    Args:
        spec: corrector spec (``calibrated``, ``zscore``, ``qnorm``, ...).
        queries: (n, d) query embeddings (array, ``.npy`` or ``.npz`` with key ``queries``).
        gold: (n, d) each query's gold item embedding (or ``.npz`` key ``gold``).
        gold_modality: n × ``"text"``/``"image"`` (or ``.npz`` key ``gold_modality``).
        corpus: a sample of the searched collection's embeddings per modality —
            ``{"text": array|file, "image": array|file}``, or one ``.npz`` with keys
            ``text`` and ``image``. Unlabelled: it is the collection, not the test set.
        query_modality: one value, or one per row.
        counts: items per modality in the collection the corrector will serve (default:
            the sample sizes); ``calibrated`` sets its base rate from it.
        pairs: ``"gold"`` (labelled) or ``"pseudo"``.
        encoder: the encoder's spec, recorded in the file (checked by nobody but readers).

    One ``.npz`` may hold everything: pass the same path as ``queries`` (keys ``queries``,
    ``gold``, ``gold_modality``, ``text``, ``image``).
    """
    from . import make_corrector

    corr = make_corrector(spec)
    _check_portable(corr)
    q = g = gm = None
    if queries is not None:
        q = _matrix(queries, "queries", "queries")
        g = _matrix(queries if gold is None and isinstance(queries, (str, Path)) else gold, "gold", "gold",
                    dim=q.shape[1])
        gm_src = queries if gold_modality is None and isinstance(queries, (str, Path)) else gold_modality
        gm = np.asarray([Modality.parse(str(m)).value for m in np.atleast_1d(load_array(gm_src, "gold_modality",
                                                                                        key="gold_modality"))])
        if not (len(q) == len(g) == len(gm)):
            raise InputError(f"queries ({len(q)}), gold ({len(g)}) and gold_modality ({len(gm)}) differ in length",
                             item="gold")
    elif gold is not None or gold_modality is not None:
        raise InputError("gold / gold_modality without queries", item="queries")
    if isinstance(corpus, (str, Path)):
        corpus = {m.value: (corpus, m.value) for m in MODALITIES}  # type: ignore[assignment]
    samp: dict[str, np.ndarray] = {}
    for m, src in (corpus or {}).items():
        mv = Modality.parse(m).value
        src, key = src if isinstance(src, tuple) else (src, mv)
        try:
            samp[mv] = _matrix(src, f"corpus[{mv}]", key, dim=None if q is None else q.shape[1])
        except InputError:
            if isinstance(corpus, dict) and all(isinstance(v, tuple) for v in corpus.values()):
                continue  # one .npz for both modalities: a modality it lacks is simply absent
            raise
    qmod: Any = query_modality
    if not isinstance(query_modality, str):
        qmod = np.asarray([Modality.parse(str(m)).value for m in query_modality])
        if q is not None and len(qmod) != len(q):
            raise InputError(f"query_modality has {len(qmod)} values for {len(q)} queries", item="query_modality")
    if pairs not in ("gold", "pseudo"):
        raise InputError(f"pairs must be 'gold' or 'pseudo', got {pairs!r}", item="pairs")
    cnt = {Modality.parse(m).value: int(n) for m, n in (counts or {}).items()} or {m: len(x) for m, x in samp.items()}
    data = FitData(queries=q, gold=g, gold_modality=gm, query_modality=qmod, corpus=samp, pairs=pairs, counts=cnt)
    fit_checked(corr, data, spec)
    dim = q.shape[1] if q is not None else (next(iter(samp.values())).shape[1] if samp else None)
    fitted = {"pairs": pairs if q is not None else "corpus statistics", "queries": 0 if q is None else int(len(q)),
              "counts": cnt, "source": "arrays"}
    return PortableCorrector(corr, encoder, dim, {"name": spec, "fitted_on": fitted})


# -- fusing ------------------------------------------------------------------------------------
def _steps(corr: GapCorrector) -> list[GapCorrector]:
    return list(getattr(corr, "steps", None) or [corr])


def _check_portable(corr: GapCorrector) -> None:
    """Refuse correctors that need the search itself (they move query or item embeddings)."""
    for s in _steps(corr):
        moves = getattr(s, "transforms_items", False) or type(s).prepare_query is not GapCorrector.prepare_query
        if moves or s.name in EMBEDDING_LEVEL:
            raise InputError(f"gap corrector {s.name!r} changes embeddings (it needs the search itself); fusing "
                             "finished candidate lists takes a score-level corrector: calibrated, zscore, qnorm, "
                             "naive, quota, rrf, minmax, dbsf or modal-clf", item="corrector")
        if getattr(s, "uses_query_text", False):
            raise InputError(f"gap corrector {s.name!r} routes on the query text; fuse takes embeddings only",
                             item="corrector")


def _needs_query(corr: GapCorrector) -> bool:
    for s in _steps(corr):
        if s.name == "qnorm" or type(s).route is not GapCorrector.route and s.name != "chain":
            return True
        if getattr(s, "route_", None) is not None:  # calibrated:soft_route=true
            return True
    return False


def _parse_list(cands: Any, m: str) -> list[tuple[str, float, Any, Any]]:
    if cands is None:
        return []
    if isinstance(cands, (str, bytes)) or not isinstance(cands, Sequence):
        raise InputError(f"candidates for {m} must be a list of (id, cosine) or {{id, cosine}}", item=f"candidates.{m}")
    if len(cands) > MAX_CANDIDATES:
        raise InputError(f"{len(cands)} {m} candidates; at most {MAX_CANDIDATES}", item=f"candidates.{m}")
    out: list[tuple[str, float, Any, Any]] = []
    seen: set[str] = set()
    for j, c in enumerate(cands):
        where = f"candidates.{m}[{j}]"
        vec = None
        if isinstance(c, Mapping):
            if "id" not in c or "cosine" not in c:
                raise InputError("a candidate needs 'id' and 'cosine'", item=where)
            cid, cos, payload, vec = c["id"], c["cosine"], c.get("payload"), c.get("vector")
        elif isinstance(c, (tuple, list)) and len(c) in (2, 3):
            cid, cos, payload = c[0], c[1], (c[2] if len(c) == 3 else None)
        else:
            raise InputError("a candidate is (id, cosine[, payload]) or {id, cosine[, payload]}", item=where)
        if not isinstance(cid, (str, int)) or isinstance(cid, bool) or str(cid) == "":
            raise InputError(f"id must be a non-empty string or integer, got {cid!r}", item=where)
        if isinstance(cos, bool) or not isinstance(cos, (int, float, np.floating, np.integer)) \
                or not math.isfinite(float(cos)):
            raise InputError(f"cosine must be a finite number, got {cos!r}", item=where)
        if not -1.0001 <= float(cos) <= 1.0001:
            raise InputError(f"cosine {float(cos)} is outside [-1, 1] (give raw cosines of normalised vectors, "
                             "not distances)", item=where)
        if str(cid) in seen:
            raise InputError(f"id {cid!r} appears twice in the {m} list", item=where)
        seen.add(str(cid))
        if vec is not None:
            try:
                with np.errstate(over="ignore"):  # beyond float32: inf, refused below
                    vec = np.asarray(vec, np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise InputError("vector must be a list of numbers", item=f"{where}.vector") from None
            if not vec.size or not np.isfinite(vec).all():
                raise InputError("vector must be a non-empty finite vector", item=f"{where}.vector")
        out.append((str(cid), float(cos), payload, vec))
    return out


def fuse(candidates: Mapping[str, Any], corrector: GapCorrector | PortableCorrector | str | Path | Mapping[str, Any],
         *, k: int = 10, query: Any = None, query_modality: Modality | str = "text",
         min_prob: float | None = None) -> list[FusedHit]:
    """Merge one query's per-modality candidate lists through a fitted corrector.

    Args:
        candidates: ``{"text": [...], "image": [...]}``; each entry ``(id, cosine)``,
            ``(id, cosine, payload)`` or ``{"id", "cosine", "payload"?}``, in any order. Raw
            cosines of normalised embeddings. A list-level corrector (``calibrated``,
            ``minmax``, ...) scores the list as a whole: give it at least its ``depth``
            candidates (``calibrated``: 20) per modality, as the store path fetches.
            A mapping entry may carry ``"vector"`` (the item's normalised embedding): when
            every candidate does, ``calibrated``'s hubness term (``hub``) is applied as in a
            store search; otherwise the calibration on raw cosines fitted alongside it is used.
        corrector: a fitted corrector, a :class:`PortableCorrector`, or what
            :func:`load_corrector` reads (a path or a parsed JSON object).
        k: results to return.
        query: the query embedding (d,) — needed by ``qnorm``, ``modal-clf`` and
            ``calibrated:soft_route=true``; when the corrector records its encoder's
            dimension it is checked.
        query_modality: ``"text"`` or ``"image"``.
        min_prob: drop candidates whose P(relevant) is below it (probability correctors only).

    Returns:
        Up to ``k`` :class:`FusedHit`, best first (fewer when ``min_prob`` drops some).
    """
    pc = as_portable(corrector)
    corr = pc.corrector
    _check_portable(corr)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise InputError(f"k must be an integer >= 1, got {k!r}", item="k")
    k = int(k)
    qmod = Modality.parse(query_modality)
    if not isinstance(candidates, Mapping):
        raise InputError("candidates must be an object {\"text\": [...], \"image\": [...]}", item="candidates")
    lists: dict[Modality, list[tuple[str, float, Any]]] = {}
    for key, val in candidates.items():
        try:
            m = Modality.parse(str(key))
        except (MindgapError, ValueError):
            raise InputError(f"unknown modality {key!r} (use 'text' and 'image')", item=f"candidates.{key}") from None
        lists[m] = _parse_list(val, m.value)
    if min_prob is not None:
        if isinstance(min_prob, bool) or not isinstance(min_prob, (int, float)) or not 0 <= float(min_prob) <= 1:
            raise InputError(f"min_prob must be a number in [0, 1], got {min_prob!r}", item="min_prob")
        if not getattr(corr, "gives_probability", False):
            raise InputError(f"min_prob needs a probability corrector (e.g. calibrated); {corr.name!r} gives scores, "
                             "not probabilities", item="min_prob")
    q: np.ndarray | None = None
    if query is not None:
        q = load_array(query, "query").astype(np.float32).reshape(1, -1) if not isinstance(query, np.ndarray) \
            else np.asarray(query, np.float32).reshape(1, -1)
        if q.size == 0 or not np.isfinite(q).all():
            raise InputError("query must be a non-empty finite vector", item="query")
        if pc.dim is not None and q.shape[1] != pc.dim:
            raise InputError(f"query has dimension {q.shape[1]}; the corrector was fitted on {pc.encoder or 'an'} "
                             f"encoder of dimension {pc.dim}", item="query")
    elif _needs_query(corr):
        raise InputError(f"gap corrector {corr.name!r} needs the query embedding ('query')", item="query")
    # calibrated:hub: its hubness term needs every candidate's vector; without them, the calibration
    # on raw cosines that was fitted alongside (Calibrated.without_hub)
    hub = False
    if getattr(corr, "adjusts_items", False):
        hub = all(c[3] is not None for lst in lists.values() for c in lst)
        if not hub:
            corr = corr.without_hub()
    routes = None
    if q is not None and type(corr).route is not GapCorrector.route:
        try:
            got = corr.route(q, qmod)
        except NotFittedError as exc:
            raise InputError(str(exc), item="corrector") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError) as exc:
            raise InputError(f"the corrector's fitted state is malformed ({type(exc).__name__}: {exc})",
                             item="corrector") from None
        routes = None if got is None else set(got[0])
    merged: list[tuple[float, str, str, float, int, float | None, Any]] = []
    for m in MODALITIES:
        lst = lists.get(m) or []
        if not lst or (routes is not None and m not in routes):
            continue
        off = np.zeros(len(lst))
        if hub:  # calibrated:hub ranks cosine − the candidate's hubness term
            dim = next(iter(corr.hub_ref_.values())).shape[1]
            for j, c in enumerate(lst):
                if c[3].size != dim:
                    raise InputError(f"vector has dimension {c[3].size}; the corrector's is {dim}",
                                     item=f"candidates.{m.value}[{j}].vector")
            off = np.asarray(corr.item_offsets(np.stack([c[3] for c in lst]), m), np.float64)
        # (id, cosine, payload, the score the corrector ranks), best first, ties by id (a store's order)
        lst = sorted(((c[0], c[1], c[2], c[1] - o) for c, o in zip(lst, off.tolist())), key=lambda c: (-c[3], c[0]))
        sims = np.array([[c[3] for c in lst]], np.float32)
        try:
            sc = np.asarray(corr.score_query(sims, q, qmod, m), np.float64)[0]
            pr = (np.asarray(corr.probability(sims, q, qmod, m), np.float64)[0]
                  if min_prob is not None or getattr(corr, "gives_probability", False) else None)
        except NotFittedError as exc:
            raise InputError(str(exc), item="corrector") from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as exc:
            raise InputError(f"the corrector's fitted state is malformed ({type(exc).__name__}: {exc})",
                             item="corrector") from None
        keep = range(len(lst)) if len(lst) <= k else np.flatnonzero(sc >= np.partition(sc, len(lst) - k)[len(lst) - k])
        for j in keep:
            p = None if pr is None else float(pr[j])
            if min_prob is not None and (p is None or p < float(min_prob)):
                continue
            merged.append((float(sc[j]), lst[j][0], m.value, lst[j][1], int(j) + 1, p, lst[j][2]))
    merged.sort(key=lambda c: (-c[0], c[1]))
    return [FusedHit(id=c[1], modality=c[2], cosine=c[3], score=c[0], rank=i + 1, modality_rank=c[4],
                     probability=c[5], payload=c[6]) for i, c in enumerate(merged[:k])]


__all__ = ["FORMAT", "FORMAT_VERSION", "PortableCorrector", "FusedHit", "fuse", "fit_corrector", "load_corrector",
           "save_corrector", "corrector_from_json", "load_array", "as_portable"]
