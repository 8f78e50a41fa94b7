"""The VectorStore seam.

A store holds items (text passages and images) with their L2-normalised vectors, keeps
modality as a partition or filter, and answers per-modality top-k by cosine (inner product).
Gap correction happens above it, in :class:`~mindgap.retriever.Retriever`.

Contract (checked by ``tests/test_stores.py`` over every backend, with
:class:`~mindgap.stores.exact.ExactStore` as the oracle):

* ``add(items, vectors)`` commits one batch atomically and skips ids already present
  (returns how many were added) — a crash between batches leaves exactly the committed ones;
* ``search(queries, k, modality)`` → per query a list of ``(id, cosine)`` best first;
* ``delete(ids)``, ``get(ids)``, ``has(ids)``, ``count(modality)``, ``vectors(modality, ids)``;
* ``manifest`` / ``save_manifest(m)`` — the manifest lives with the store.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode

import numpy as np

from ..errors import InputError, SpecError, StoreError
from ..fileio import write_bytes_atomic
from ..manifest import Manifest
from ..types import Item, Modality

SearchResult = list[list[tuple[str, float]]]


@runtime_checkable
class VectorStore(Protocol):
    """A persistent vector store with a modality partition/filter."""

    uri: str

    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int: ...
    def delete(self, ids: Sequence[str]) -> int: ...
    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult: ...
    def get(self, ids: Sequence[str]) -> list[Item | None]: ...
    def has(self, ids: Sequence[str]) -> set[str]: ...
    def count(self, modality: Modality | None = None) -> int: ...
    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]: ...
    @property
    def manifest(self) -> Manifest | None: ...
    def save_manifest(self, manifest: Manifest) -> None: ...
    def close(self) -> None: ...


class BaseStore:
    """Common checks and manifest handling; backends subclass it.

    Subclasses set ``self.uri`` and ``self._manifest_path`` and implement the storage calls.
    """

    uri: str = ""
    _manifest_path: Path | None = None
    _manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest | None:
        if self._manifest is None and self._manifest_path is not None and self._manifest_path.exists():
            self._manifest = Manifest.load(self._manifest_path)
        return self._manifest

    def save_manifest(self, manifest: Manifest) -> None:
        if self._manifest_path is None:  # pragma: no cover - in-memory stores
            self._manifest = manifest
            return
        manifest.save(self._manifest_path)
        self._manifest = manifest

    def close(self) -> None:
        """Release resources (default: nothing)."""

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- shared validation -----------------------------------------------------------
    @staticmethod
    def check_add(items: Sequence[Item], vectors: np.ndarray, dim: int | None) -> np.ndarray:
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if v.ndim != 2 or v.shape[0] != len(items):
            raise InputError(f"vectors shape {v.shape} does not match {len(items)} items", item="vectors")
        if dim is not None and v.shape[1] != dim:
            raise StoreError(f"vector dim {v.shape[1]} != store dim {dim}", item="vectors")
        if not np.all(np.isfinite(v)):
            bad = int(np.flatnonzero(~np.isfinite(v).all(axis=1))[0])
            raise InputError("non-finite vector", item=items[bad].id)
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError("duplicate id within one batch", item=dup)
        return v

    @staticmethod
    def check_queries(queries: np.ndarray, k: int, dim: int | None = None) -> np.ndarray:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise InputError(f"queries must be (n, d), got {q.shape}", item="queries")
        if int(k) < 1:
            raise InputError("k must be >= 1", item="k")
        if dim is not None and q.shape[1] != dim:
            raise InputError(f"query dim {q.shape[1]} != store dim {dim}", item="queries")
        return q


def topk_rows(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k column indices and values per row, best first (stable ties by index)."""
    k = min(k, sim.shape[1])
    if k == 0:
        return np.zeros((sim.shape[0], 0), int), np.zeros((sim.shape[0], 0), np.float32)
    if k < sim.shape[1]:
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(sim.shape[1]), (sim.shape[0], 1))
    vals = np.take_along_axis(sim, part, axis=1)
    # sort by value desc, then index asc for deterministic ties
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(vals, order, axis=1)


# -- shared by the database backends (lancedb, milvus, faiss) ---------------------------------

#: URI query keys every ANN-capable backend understands (``faiss:/dir?index=hnsw&M=32``).
INDEX_KEYS = ("index", "M", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m", "pq_bits", "refine")


@dataclass
class IndexParams:
    """Index parameters from a store URI's query string; ``0`` means "choose from the data".

    Attributes:
        index: ``flat`` (exact) or an ANN kind the backend supports (``hnsw``, ``ivf``, ``ivfpq``, ...).
        M: HNSW graph degree.
        ef_construction: HNSW build beam width.
        ef_search: HNSW search beam width (raised to the number of candidates when smaller);
            128 keeps recall@10 >= 0.95 at 1M items (64 gave 0.947 text / 0.783 image there).
        nlist: IVF lists (0: FAISS ``4·sqrt(n)`` bounded so every list gets >= 39 training points;
            LanceDB its own ~8k rows per list; Milvus 1024 per segment).
        nprobe: IVF lists probed per query (0: a backend default aimed at recall@10 >= 0.95 —
            FAISS ``max(32, nlist // 64)`` (recall@10 0.996 at 1M), LanceDB 20, Milvus 64).
        pq_m: PQ sub-quantisers (0: ``dim // 8``: 8 dimensions per code, one byte with 8 bits).
        pq_bits: bits per PQ code.
        refine: candidates fetched per wanted hit before the exact re-rank (0: 1, or with PQ 8 —
            16 for LanceDB, whose PQ ranking needs it for recall@10 >= 0.95 at 1M: .926 → .973).
    """

    index: str = "flat"
    M: int = 32
    ef_construction: int = 40
    ef_search: int = 128
    nlist: int = 0
    nprobe: int = 0
    pq_m: int = 0
    pq_bits: int = 8
    refine: int = 0

    @classmethod
    def from_query(cls, query: dict[str, str], kinds: Sequence[str], *, uri: str,
                   extra: Sequence[str] = ()) -> tuple["IndexParams", dict[str, str]]:
        """Parse known keys (index keys + ``extra``); unknown keys or bad values raise SpecError."""
        unknown = sorted(set(query) - set(INDEX_KEYS) - set(extra))
        if unknown:
            raise SpecError(f"unknown store option(s) {', '.join(unknown)}; known: "
                            f"{', '.join([*INDEX_KEYS, *extra])}", item=uri)
        p = cls()
        for key in INDEX_KEYS:
            if key not in query:
                continue
            if key == "index":
                p.index = query[key].strip().lower().replace("_", "").replace("-", "")
                p.index = {"ivfflat": "ivf", "exact": "flat"}.get(p.index, p.index)
            else:
                try:
                    setattr(p, key, int(query[key]))
                except ValueError:
                    raise SpecError(f"store option {key}={query[key]!r} is not an integer", item=uri) from None
                if getattr(p, key) < 0:
                    raise SpecError(f"store option {key} must be >= 0", item=uri)
        if p.index not in kinds:
            raise SpecError(f"unknown index {p.index!r} for this backend; choose one of: {', '.join(kinds)}",
                            item=uri)
        return p, {k: v for k, v in query.items() if k in extra}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def build_dict(self) -> dict[str, Any]:
        """The parameters baked into a built index (the others are search-time knobs)."""
        return {k: v for k, v in asdict(self).items() if k not in ("ef_search", "nprobe", "refine")}

    def query_string(self) -> str:
        """The non-default parameters as ``?index=...&...`` (empty for a default flat index)."""
        d = {k: v for k, v in self.to_dict().items() if v != getattr(IndexParams, k)}
        return ("?" + urlencode(d)) if d else ""

    def fetch(self, k: int, pq_refine: int = 8) -> int:
        """How many candidates to ask the index for, before the exact re-rank keeps ``k``
        (``pq_refine``: the backend's default ``refine`` for PQ indexes)."""
        refine = self.refine or (pq_refine if self.index.endswith("pq") else 1)
        return k * refine + TIE_MARGIN


#: Extra candidates fetched so that exact score ties at the k-th place resolve like the oracle.
TIE_MARGIN = 8


def split_uri(rest: str) -> tuple[str, dict[str, str]]:
    """``"/dir?index=hnsw&M=16"`` → ``("/dir", {"index": "hnsw", "M": "16"})``."""
    loc, _, query = rest.partition("?")
    return loc, dict(parse_qsl(query, keep_blank_values=True))


def rerank(q: np.ndarray, ids: Sequence[str], vecs: np.ndarray, k: int) -> list[tuple[str, float]]:
    """Exact cosine of candidate rows, best first, ties by id (as the oracle breaks them)."""
    if not len(ids):
        return []
    s = np.asarray(vecs, dtype=np.float32) @ np.asarray(q, dtype=np.float32)
    return _ranked(s, lambda o: [ids[i] for i in o.tolist()], k)


def best_first(s: np.ndarray, ids_at: Callable[[np.ndarray], Sequence[str]], k: int | None = None) -> np.ndarray:
    """Positions of the scores ``s`` best first, ties by id — the first ``k`` (all with ``None``).
    ``ids_at``: candidate positions → their ids (called only when there are ties).

    An array sort orders the scores; unless they then strictly decrease (two exactly equal, or
    one not a number) the order falls back to a Python sort by ``(-score, id)``, so ties always
    break by id; scores that are not a number come last.
    """
    order = np.argsort(-s, kind="stable")
    sv = s[order]
    if len(sv) > 1 and not bool((sv[:-1] > sv[1:]).all()):
        vals, names = s.tolist(), ids_at(np.arange(len(s)))
        order = np.asarray(sorted(range(len(vals)), key=lambda i: (vals[i] != vals[i], -vals[i] if vals[i] == vals[i] else 0.0,
                                                                    names[i])), np.intp)
    return order[:k]


def _ranked(s: np.ndarray, ids_at: Callable[[np.ndarray], list[str]], k: int) -> list[tuple[str, float]]:
    """The best ``k`` of the candidate scores ``s`` as ``(id, score)``, ties by id (:func:`best_first`)."""
    order = best_first(s, ids_at, k)
    return list(zip(ids_at(order), s[order].tolist()))


def exact_search(q: np.ndarray, mat: np.ndarray, k: int, id_of: Callable[[int], str],
                 dead: np.ndarray | None = None) -> SearchResult:
    """Exact top-k by inner product: a BLAS scan picks ``k + 8`` candidates, :func:`rerank` orders them.

    The re-rank computes each query's scores on its own, so a query gets the same floats (and
    the same order, exact ties by id) alone or in a batch — which a matrix product over the
    batch does not guarantee (its rounding depends on the batch's shape and a row's position).
    ``dead`` marks rows to leave out.
    """
    if mat.shape[0] == 0:
        return [[] for _ in range(len(q))]
    sim = q @ mat.T
    if dead is not None:
        sim[:, dead] = -np.inf
    n = k + TIE_MARGIN
    if n < sim.shape[1]:  # the candidate set (its order does not matter: the re-rank sorts it)
        idx = np.argpartition(-sim, n - 1, axis=1)[:, :n]
    else:
        idx = np.broadcast_to(np.arange(sim.shape[1]), sim.shape)
    out = []
    for qi, row, srow in zip(q, idx, sim):
        row = np.sort(row[np.isfinite(srow[row])])  # in index order: the same rows alone or in a batch
        out.append(_ranked(mat[row] @ qi, lambda o, row=row: list(map(id_of, row[o].tolist())), k) if len(row) else [])
    return out


# -- the segment log shared by the exact and FAISS stores ---------------------------------------

def segment_files(folder: Path) -> list[Path]:
    """Committed batches in commit order: ``folder/segments/00000000.npz``, ..."""
    return sorted((folder / "segments").glob("*.npz"))


def read_segment(path: Path) -> tuple[int, list[dict[str, Any]], np.ndarray]:
    """(segment number, item dicts, vectors) of one committed batch."""
    with np.load(path, allow_pickle=False) as z:
        return int(path.stem), json.loads(str(z["items"])), z["vectors"]


def write_segment(folder: Path, number: int, items: Sequence[Item], vectors: np.ndarray) -> None:
    """Commit one batch: vectors + item JSON in ``segments/{number:08d}.npz``, written atomically."""
    buf = io.BytesIO()
    np.savez(buf, vectors=vectors, items=np.array(json.dumps([it.to_dict() for it in items])))
    write_bytes_atomic(folder / "segments" / f"{number:08d}.npz", buf.getvalue())


def chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most ``n`` elements."""
    for s in range(0, len(seq), n):
        yield seq[s : s + n]
