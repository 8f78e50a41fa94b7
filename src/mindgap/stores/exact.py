"""Exact numpy store: the oracle every other backend is tested against.

``exact:`` keeps everything in memory; ``exact:/dir`` persists it. Each committed batch is
one segment file written via temp file + ``os.replace`` (atomic), deletions are an atomic
tombstone file ``{id: segments written when it was deleted}`` (rows of older segments are dead,
a later re-add lives, so re-adding never rewrites it), so a killed process leaves exactly the
batches that committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..fileio import write_json_atomic
from ..registry import stores
from ..types import Item, Modality
from ..errors import InputError
from .base import (TIE_MARGIN, BaseStore, SearchResult, best_first, exact_search, read_segment, segment_files,
                   write_segment)

#: per-row terms of a modality's matrix (:meth:`ExactStore.search_rows`, :meth:`ExactStore.search_one`):
#: ``(version, ids, matrix)`` → the terms aligned with its rows, as float64 (the scores) and as
#: float32 (the scan that picks the candidates)
RowTerms = Callable[[int, list[str], np.ndarray], tuple[np.ndarray, np.ndarray]]


class ExactStore(BaseStore):
    """Brute-force inner-product search over float32 matrices, one per modality."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.uri = f"exact:{self.path}" if self.path else "exact:"
        self._items: dict[str, Item] = {}
        self._vec: dict[str, np.ndarray] = {}
        self._mat: dict[Modality, tuple[list[str], np.ndarray]] = {}
        self._rows: dict[Modality, dict[str, int]] = {}  # id -> row of _matrix (cached with it)
        self._version = 0  # bumped by every add / delete that changes the matrices
        self._dim: int | None = None
        self._nseg = 0
        if self.path:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / "segments").mkdir(exist_ok=True)
            self._manifest_path = self.path / "manifest.json"
            self._load()

    # -- persistence -------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        segs = segment_files(self.path)
        tomb = self.path / "tombstones.json"
        dead = json.loads(tomb.read_text()) if tomb.exists() else {}
        if isinstance(dead, list):  # older format: a plain list kills every existing row
            dead = dict.fromkeys(dead, int(segs[-1].stem) + 1 if segs else 0)
        for seg in segs:
            s, metas, vecs = read_segment(seg)
            self._nseg = max(self._nseg, s + 1)
            for m, v in zip(metas, vecs):
                if s < dead.get(m["id"], -1):
                    continue
                self._items[m["id"]] = Item.from_dict(m)
                self._vec[m["id"]] = v
                self._dim = v.shape[0]
        self._dead: dict[str, int] = dead

    # -- contract ------------------------------------------------------------------------
    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int:
        v = self.check_add(items, vectors, self._dim)
        keep = [i for i, it in enumerate(items) if it.id not in self._items]
        if not keep:
            return 0
        items = [items[i] for i in keep]
        v = v[keep]
        if self.path:
            write_segment(self.path, self._nseg, items, v)
            self._nseg += 1
        for it, row in zip(items, v):
            self._items[it.id] = it
            self._vec[it.id] = row
        self._dim = v.shape[1]
        self._mat.clear()
        self._rows.clear()
        self._version += 1
        return len(items)

    def delete(self, ids: Sequence[str]) -> int:
        gone = [i for i in ids if i in self._items]
        if not gone:
            return 0
        if self.path:
            self._dead = {**self._dead, **dict.fromkeys(gone, self._nseg)}
            write_json_atomic(self.path / "tombstones.json", self._dead)
        for i in gone:
            del self._items[i]
            del self._vec[i]
        self._mat.clear()
        self._rows.clear()
        self._version += 1
        return len(gone)

    def _matrix(self, modality: Modality) -> tuple[list[str], np.ndarray]:
        if modality not in self._mat:
            ids = sorted(i for i, it in self._items.items() if it.modality == modality)
            mat = np.stack([self._vec[i] for i in ids]) if ids else np.zeros((0, self._dim or 0), np.float32)
            self._mat[modality] = (ids, np.ascontiguousarray(mat, dtype=np.float32))
        return self._mat[modality]

    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult:
        q = self.check_queries(queries, k, self._dim)
        ids, mat = self._matrix(Modality.parse(modality))
        return exact_search(q, mat, k, ids.__getitem__)

    def search_rows(self, queries: np.ndarray, k: int, modality: Modality, *,
                    terms: RowTerms | None = None) -> tuple[list[list[tuple]], list[np.ndarray], int]:
        """:meth:`search`, with each query's hits' rows in the modality's matrix (in hit order) and
        the version of that matrix (:meth:`rows`).

        ``terms`` (per-row terms of the modality's matrix, read for the version searched): each
        query's best ``k`` by ``cosine − term`` (ties by id) over the whole matrix, as
        ``(id, cosine − term, cosine)`` — a corrector's per-item term (``calibrated:hub``) applied
        exactly, the terms read by row instead of looked up by id.
        """
        q = self.check_queries(queries, k, self._dim)
        version = self._version
        ids, mat = self._matrix(Modality.parse(modality))
        n = mat.shape[0]
        if n == 0:
            return [[] for _ in q], [np.zeros(0, np.intp) for _ in q], version
        exact, coarse = terms(version, ids, mat) if terms is not None else (None, None)
        sim = q @ mat.T
        if coarse is not None:
            sim -= coarse  # the candidate set by the float32 difference; the re-rank computes it exactly
        cut = k + TIE_MARGIN
        cand = np.argpartition(sim, n - cut, axis=1)[:, n - cut:] if cut < n else None
        out, rows = [], []
        for qi, qv in enumerate(q):
            idx = np.arange(n) if cand is None else np.sort(cand[qi])  # row order: alone = in a batch
            hit_ids, cos, scores, hit_rows = _best(mat, qv, idx, ids, k, k, exact)
            out.append(list(zip(hit_ids, scores)) if exact is None else list(zip(hit_ids, scores, cos)))
            rows.append(hit_rows)
        return out, rows, version

    def search_one(self, query: np.ndarray, k: int, modality: Modality, *, depth: int | None = None,
                   terms: RowTerms | None = None) -> tuple[list[str], list[float], list[float]]:
        """One query's best items of a modality, best first, ties by id, as ``(ids, cosines,
        scores)``: the scores of the best ``depth`` (≥ ``k``; default ``k``), the ids and cosines
        of the first ``k`` — the single-query path of
        :meth:`mindgap.retriever.Retriever.search_vectors` (a list-level corrector scores a
        longer list than it merges).

        Without ``terms`` the scores are the cosines, with the floats and order of
        ``search(query, depth, modality)``; with ``terms`` they are ``cosine − term``, with the floats
        and order of ``search_rows(query, depth, modality, terms=terms)`` — without building the
        candidate lists in Python. ``query``: one float32 vector of the store's dimension.
        """
        q = np.asarray(query)
        if q.dtype != np.float32 or q.shape != (self._dim,):
            q = self.check_queries(query, k, self._dim)
            if len(q) != 1:
                raise InputError(f"search_one takes one query, got {len(q)}", item="queries")
            q = q[0]
        version = self._version
        ids, mat = self._matrix(modality if isinstance(modality, Modality) else Modality.parse(modality))
        n = mat.shape[0]
        if n == 0:
            return [], [], []
        k = int(k)
        want = max(k, int(depth or 0))
        exact, coarse = terms(version, ids, mat) if terms is not None else (None, None)
        sim = mat @ q
        if coarse is not None:
            sim -= coarse
        cut = want + TIE_MARGIN
        if cut < n:  # the candidate set (its order does not matter: the re-rank sorts it)
            idx = np.argpartition(sim, n - cut)[n - cut:]
            idx.sort()  # in row order, as search_rows: the same candidates' floats
        else:
            idx = np.arange(n)
        return _best(mat, q, idx, ids, want, k, exact)[:3]

    def rows(self, modality: Modality) -> tuple[int, list[str], np.ndarray]:
        """``(version, ids, matrix)`` of a modality: the rows :meth:`search_rows` refers to (the
        cached matrix itself, not a copy: do not modify it). The version changes with every
        add or delete (:data:`RowTerms` receives it)."""
        version = self._version
        ids, mat = self._matrix(Modality.parse(modality))
        return version, ids, mat

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        return [self._items.get(i) for i in ids]

    def has(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._items}

    def count(self, modality: Modality | None = None) -> int:
        if modality is None:
            return len(self._items)
        return len(self._matrix(Modality.parse(modality))[0])  # cached until the next add/delete

    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        if ids is None:
            all_ids, mat = self._matrix(Modality.parse(modality))
            return list(all_ids), mat.copy()
        m = Modality.parse(modality)
        rows = self._rows.get(m)
        if rows is None:
            rows = self._rows[m] = {i: r for r, i in enumerate(self._matrix(m)[0])}
        idx = [rows.get(i) for i in ids]
        if None not in idx:  # all of this modality: one gather from the cached matrix (a copy)
            return list(ids), self._matrix(m)[1][idx]
        found = [i for i in ids if i in self._vec]  # unknown ids, or ids of the other modality
        if not found:
            return found, np.zeros((0, self._dim or 0), np.float32)
        return found, np.stack([self._vec[i] for i in found])


def _best(mat: np.ndarray, q: np.ndarray, idx: np.ndarray, ids: list[str], k: int, head: int,
          terms: np.ndarray | None = None) -> tuple[list[str], list[float], list[float], np.ndarray]:
    """One query's re-rank of the candidate rows ``idx`` (in row order): its best ``k`` by cosine, or
    by ``cosine − terms`` (float64), ties by id, each cosine computed on its own (the same floats
    alone or in a batch) → ``(ids and cosines of the first head, the k scores, their rows)``. A
    query with NaN has no finite score and gets nothing, as :func:`exact_search` gives."""
    c = mat[idx] @ q
    s = c if terms is None else c - terms.take(idx)
    order = best_first(s, lambda o: [ids[j] for j in idx[o].tolist()], k)  # (NaN last)
    scores = s[order].tolist()
    if scores and scores[-1] != scores[-1]:
        order = order[: sum(x == x for x in scores)]
        scores = scores[: len(order)]
    rows = idx[order]
    return [ids[j] for j in rows[:head].tolist()], c[order[:head]].tolist(), scores, rows


@stores.register("exact", help="exact numpy scan (in memory, or persisted to a directory)")
def _make(rest: str, **_: object) -> ExactStore:
    return ExactStore(rest or None)
