"""FAISS store: one index per modality in memory, saved next to an append-only batch log.

``faiss:/dir?index=flat|hnsw|ivf|ivfpq`` (+ ``M``, ``ef_construction``, ``ef_search``, ``nlist``,
``nprobe``, ``pq_m``, ``pq_bits``, ``refine`` — see :class:`~mindgap.stores.base.IndexParams`);
``faiss:`` alone lives in memory. Options given in the URI are saved in ``store.json`` and
reused when the directory is opened again without them.

Persistence: the source of truth is the segment log :mod:`~mindgap.stores.exact` also uses —
each committed batch is one ``segments/NNNNNNNN.npz`` (vectors + item JSON) written to a temp
file and ``os.replace``-d into place; deletions are ``deletes.json`` = ``{id: segments at the
time}`` (older rows of that id die, a later re-add lives). A killed writer therefore leaves
exactly the batches that committed. The FAISS files ``index/<modality>.faiss`` are a cache over
a prefix of the log's rows (checked against a hash of their ids and the row count), written the
same atomic way by :meth:`FaissStore.build_index` / :meth:`~FaissStore.close`, extended with the
newer rows on open and rebuilt when they do not match.

Search asks the index for ``refine·k + 8`` candidates (plus deleted rows still in the index),
drops dead rows and re-ranks the rest by exact cosine from the stored float32 vectors, ties by
id: ANN search differs from the oracle only in recall. ``flat`` — and a modality an IVF index
cannot be trained on yet (fewer than ``max(256, 39·nlist)`` rows; IVF-PQ also ``39·2**pq_bits``)
— is an exact numpy/BLAS scan of the live rows, like the oracle (faster than ``IndexFlatIP``
on this 2-core machine, where FAISS' OpenMP threads fight for the cores).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require
from ..fileio import write_atomic, write_json_atomic
from ..types import MODALITIES, Item, Modality
from .base import (INDEX_KEYS, BaseStore, IndexParams, SearchResult, exact_search, read_segment, rerank,
                   segment_files, split_uri, write_segment)

KINDS = ("flat", "hnsw", "ivf", "ivfpq")


class _Part:
    """One modality: rows in log order (a growable matrix), live flags and the index over them."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.buf = np.zeros((0, 0), np.float32)
        self.live = bytearray()
        self.n_live = 0
        self.index: Any = None
        self.kind = ""
        self.indexed = 0  # rows [0, indexed) were offered to the index (live ones added)
        self.dead_indexed = 0
        self.dirty = False

    @property
    def n(self) -> int:
        return len(self.ids)

    def append(self, ids: list[str], v: np.ndarray) -> None:
        n, need = self.n, self.n + len(ids)
        if need > self.buf.shape[0] or self.buf.shape[1] != v.shape[1]:
            grown = np.zeros((max(need, 2 * self.buf.shape[0], 1024), v.shape[1]), np.float32)
            if n:
                grown[:n] = self.buf[:n]
            self.buf = grown
        self.buf[n:need] = v
        self.ids.extend(ids)
        self.live.extend(b"\x01" * len(ids))
        self.n_live += len(ids)

    def kill(self, row: int) -> None:
        if self.live[row]:
            self.live[row] = 0
            self.n_live -= 1
            self.dead_indexed += row < self.indexed

    def live_rows(self, start: int = 0) -> np.ndarray:
        return np.flatnonzero(np.frombuffer(bytes(self.live[start:]), np.uint8)) + start

    def ids_hash(self, rows: int) -> str:
        return hashlib.sha1("\0".join(self.ids[:rows]).encode("utf-8", "surrogatepass")).hexdigest()


class FaissStore(BaseStore):
    """FAISS flat / HNSW / IVF / IVF-PQ over the exact segment log, one index per modality."""

    def __init__(self, path: str | Path | None = None, query: dict[str, str] | None = None) -> None:
        # OpenMP threads that spin while they wait make small FAISS calls several times slower on
        # a busy machine (HNSW single query here: 0.8 ms spinning, 0.3 ms passive); FAISS reads
        # this when it is first imported
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.faiss = require("faiss", "faiss")
        self.path = Path(path) if path else None
        self._items: dict[str, Item] = {}
        self._loc: dict[str, tuple[Modality, int]] = {}
        self._parts = {m: _Part() for m in MODALITIES}
        self._dim: int | None = None
        self._nseg = 0
        self._deletes: dict[str, int] = {}
        self._wrote = False
        query = dict(query or {})
        given = any(k in query for k in INDEX_KEYS)
        if self.path:
            (self.path / "segments").mkdir(parents=True, exist_ok=True)
            self._manifest_path = self.path / "manifest.json"
            cfg = self.path / "store.json"
            if not given and cfg.exists():
                query = {k: str(v) for k, v in json.loads(cfg.read_text())["params"].items()}
        self.params, _ = IndexParams.from_query(query, KINDS, uri=f"faiss:{self.path or ''}")
        self.uri = f"faiss:{self.path or ''}{self.params.query_string()}"
        if self.path:
            if given:
                write_json_atomic(self.path / "store.json", {"backend": "faiss", "params": self.params.to_dict()})
            self._load()

    # -- the log -------------------------------------------------------------------------
    def _load(self) -> None:
        assert self.path is not None
        dels = self.path / "deletes.json"
        self._deletes = json.loads(dels.read_text()) if dels.exists() else {}
        for seg in segment_files(self.path):
            s, metas, vecs = read_segment(seg)
            self._nseg = max(self._nseg, s + 1)
            self._append(s, [Item.from_dict(m) for m in metas], vecs, self._deletes)

    def _append(self, seg: int, items: list[Item], v: np.ndarray, deletes: dict[str, int]) -> None:
        for m in MODALITIES:
            sel = [i for i, it in enumerate(items) if it.modality == m]
            if not sel:
                continue
            part = self._parts[m]
            base = part.n
            part.append([items[i].id for i in sel], v[sel])
            for j, i in enumerate(sel):
                it = items[i]
                old = self._loc.pop(it.id, None)
                if old is not None:  # a later row of the same id supersedes the earlier one
                    self._parts[old[0]].kill(old[1])
                if seg >= deletes.get(it.id, -1):
                    self._loc[it.id] = (m, base + j)
                    self._items[it.id] = it
                else:
                    self._items.pop(it.id, None)
                    part.kill(base + j)
        self._dim = int(v.shape[1])

    # -- contract ------------------------------------------------------------------------
    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int:
        v = self.check_add(items, vectors, self._dim)
        keep = [i for i, it in enumerate(items) if it.id not in self._loc]
        if not keep:
            return 0
        items, v = [items[i] for i in keep], v[keep]
        if self.path:
            write_segment(self.path, self._nseg, items, v)  # the commit point
        self._append(self._nseg, list(items), v, {})
        self._nseg += 1
        self._wrote = True
        return len(items)

    def delete(self, ids: Sequence[str]) -> int:
        gone = [i for i in dict.fromkeys(ids) if i in self._loc]
        if not gone:
            return 0
        if self.path:
            write_json_atomic(self.path / "deletes.json", {**self._deletes, **{i: self._nseg for i in gone}})
        for i in gone:
            self._deletes[i] = self._nseg
            m, row = self._loc.pop(i)
            self._parts[m].kill(row)
            del self._items[i]
        self._wrote = True
        return len(gone)

    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult:
        q = self.check_queries(queries, k, self._dim)
        part = self._parts[Modality.parse(modality)]
        if part.n_live == 0:
            return [[] for _ in range(len(q))]
        if self._kind_for(part) == "flat":
            dead = np.frombuffer(bytes(part.live), np.uint8) == 0 if part.n_live < part.n else None
            return exact_search(q, part.buf[: part.n], k, part.ids.__getitem__, dead)
        index = self._ensure_index(part)
        fetch = min(index.ntotal, self.params.fetch(k) + part.dead_indexed)
        _, rows = index.search(q, fetch, params=self._search_params(part, fetch))
        out = []
        for qi, r in enumerate(rows):
            r = [int(x) for x in r if x >= 0 and part.live[x]]
            out.append(rerank(q[qi], [part.ids[x] for x in r], part.buf[r], k))
        return out

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        return [self._items.get(i) for i in ids]

    def has(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self._loc}

    def count(self, modality: Modality | None = None) -> int:
        if modality is None:
            return len(self._loc)
        return self._parts[Modality.parse(modality)].n_live

    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        if ids is None:
            part = self._parts[Modality.parse(modality)]
            rows = part.live_rows()
            return [part.ids[r] for r in rows], part.buf[rows].reshape(len(rows), self._dim or 0)
        found = [i for i in ids if i in self._loc]
        mat = [self._parts[self._loc[i][0]].buf[self._loc[i][1]] for i in found]
        return found, np.stack(mat) if mat else np.zeros((0, self._dim or 0), np.float32)

    def close(self) -> None:
        """Build (ANN) and save the index files when this process changed the store."""
        if self.path and self.params.index != "flat" and self._wrote:
            self.build_index()

    # -- the index -----------------------------------------------------------------------
    def build_index(self) -> None:
        """Bring every modality's index up to date (training IVF when it can) and save it."""
        for m, part in self._parts.items():
            if part.n_live == 0 or self._kind_for(part) == "flat":
                continue
            stale = part.dead_indexed > 0.2 * max(part.indexed, 1) or self._nlist_drift(part)
            if stale:
                part.index = None
            self._ensure_index(part)
            if self.path and part.kind != "flat" and part.dirty:
                self._save_index(m, part)

    def _nlist(self, n: int) -> int:
        return self.params.nlist or max(1, min(int(4 * np.sqrt(n)), n // 39))

    def _nlist_drift(self, part: _Part) -> bool:
        """Auto-sized IVF lists are rebuilt once the data outgrew them (4x)."""
        if part.kind not in ("ivf", "ivfpq") or self.params.nlist:
            return False
        return self._nlist(part.n_live) > 2 * getattr(self.faiss.extract_index_ivf(part.index.index), "nlist", 1)

    def _kind_for(self, part: _Part) -> str:
        kind, n = self.params.index, part.n_live
        if kind == "ivf" and n < max(256, 39 * self._nlist(n)):
            return "flat"
        if kind == "ivfpq" and n < max(39 * self._nlist(n), 39 * 2**self.params.pq_bits):
            return "flat"
        return kind

    def _ensure_index(self, part: _Part) -> Any:
        want = self._kind_for(part)
        if part.index is not None and part.kind != want:
            part.index = None
        if part.index is None:
            part.kind, part.indexed, part.dead_indexed = want, 0, 0
            part.index = self._load_index(part, want) if self.path and want != "flat" else None
            if part.index is None:
                part.index = self._new_index(part, want)
                part.dirty = True
        if part.indexed < part.n:
            rows = part.live_rows(part.indexed)
            if len(rows):
                part.index.add_with_ids(part.buf[rows], rows.astype(np.int64))
            part.indexed, part.dirty = part.n, True
        return part.index

    def _new_index(self, part: _Part, kind: str) -> Any:
        f, d, p = self.faiss, int(self._dim or 0), self.params
        if kind == "hnsw":
            base = f.IndexHNSWFlat(d, p.M, f.METRIC_INNER_PRODUCT)
            base.hnsw.efConstruction = p.ef_construction
        else:
            nlist = self._nlist(part.n_live)
            quantizer = f.IndexFlatIP(d)
            if kind == "ivf":
                base = f.IndexIVFFlat(quantizer, d, nlist, f.METRIC_INNER_PRODUCT)
            else:
                base = f.IndexIVFPQ(quantizer, d, nlist, p.pq_m or max(1, d // 8), p.pq_bits, f.METRIC_INNER_PRODUCT)
            base.own_fields = True
            quantizer.this.disown()  # the IVF index owns (and frees) its quantizer
            base.cp.niter = 10  # k-means: 10 rounds on 50 points per list (FAISS: 25 on up to 256)
            rows = part.live_rows()
            cap = max(50 * nlist, 50 * 2**p.pq_bits if kind == "ivfpq" else 0)
            rng = np.random.default_rng(0)
            sample = np.sort(rng.choice(rows, cap, replace=False)) if len(rows) > cap else rows
            base.train(np.ascontiguousarray(part.buf[sample]))
        index = f.IndexIDMap(base)
        index.own_fields = True
        base.this.disown()
        return index

    def _search_params(self, part: _Part, fetch: int) -> Any:
        f, p = self.faiss, self.params
        if part.kind == "hnsw":
            return f.SearchParametersHNSW(efSearch=max(p.ef_search, fetch))
        if part.kind in ("ivf", "ivfpq"):
            nlist = f.extract_index_ivf(part.index.index).nlist
            return f.SearchParametersIVF(nprobe=min(nlist, p.nprobe or max(32, nlist // 64)))
        return None

    def _index_files(self, m: Modality) -> tuple[Path, Path]:
        assert self.path is not None
        return self.path / "index" / f"{m.value}.faiss", self.path / "index" / f"{m.value}.json"

    def _load_index(self, part: _Part, kind: str) -> Any:
        m = next(mm for mm, pp in self._parts.items() if pp is part)
        file, meta_file = self._index_files(m)
        if not (file.exists() and meta_file.exists()):
            return None
        meta = json.loads(meta_file.read_text())
        rows = int(meta.get("rows", -1))
        if (meta.get("kind") != kind or meta.get("params") != self.params.build_dict() or not 0 <= rows <= part.n
                or meta.get("ids_sha1") != part.ids_hash(rows)):
            return None
        index = self.faiss.read_index(str(file))
        if index.ntotal != int(meta.get("ntotal", -1)):  # the two files are from different saves
            return None
        part.indexed = rows
        part.dead_indexed = rows - int(np.count_nonzero(np.frombuffer(bytes(part.live[:rows]), np.uint8)))
        return index

    def _save_index(self, m: Modality, part: _Part) -> None:
        file, meta_file = self._index_files(m)
        write_atomic(file, lambda tmp: self.faiss.write_index(part.index, tmp))
        write_json_atomic(meta_file, {"kind": part.kind, "params": self.params.build_dict(), "rows": part.indexed,
                                      "ntotal": int(part.index.ntotal), "ids_sha1": part.ids_hash(part.indexed)})
        part.dirty = False


def _make(rest: str, **options: Any) -> FaissStore:
    """``faiss:/dir?index=hnsw&M=32`` (options may also come as keyword arguments)."""
    loc, query = split_uri(rest)
    query.update({k: str(v) for k, v in options.items()})
    return FaissStore(loc or None, query)
