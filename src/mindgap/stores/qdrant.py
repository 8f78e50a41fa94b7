"""Qdrant store: embedded local mode (``qdrant:/path/kb``) or a server (``qdrant:http://host:6333``).

Needs ``qdrant-client`` (``pip install 'mindgap[qdrant]'``). Local mode is qdrant-client's own
in-process engine (``QdrantClient(path=...)``: points in SQLite, exact numpy search, one
process at a time — it locks the folder); a server URL goes to a Qdrant server over HTTP
(``?api_key=...`` or ``$QDRANT_API_KEY``; ``?prefer_grpc=1`` for gRPC).

Options: ``collection`` (default ``mindgap``), ``index=flat|hnsw`` with ``M``,
``ef_construction``, ``ef_search`` (server only: ``flat`` searches exactly with
``exact=true``, ``hnsw`` uses the server's HNSW graph; local mode always searches exactly).
Example: ``qdrant:http://localhost:6333?collection=mmqa&index=hnsw``.

Mapping: one collection per modality — ``<collection>_text`` and ``<collection>_image`` — so a
text query's HNSW graph holds only text (the modality gap would otherwise split one graph), dot
product on the L2-normalised vectors; the cosines returned are recomputed exactly from the
stored vectors (:func:`~.base.rerank`). Point ids are UUIDv5 of the item id; the payload holds
``id``, ``batch``, ``text``, ``uri`` and ``metadata`` (JSON text). A third collection,
``<collection>_meta``, holds the store's settings (index parameters, dim), the commit mark and —
for a server — the manifest (one point: a single upsert switches it atomically), so the fitted
correctors travel with the data. Local mode keeps the manifest as ``<path>/manifest.json``.

Atomicity (as in :mod:`.milvus`): every point carries its batch number, reserved in the meta
collection (``next``) before use; a batch counts once the ``commit`` point says so. Readers
filter out batches above the commit mark and numbers a killed writer reserved (``aborted``);
the next writer deletes those points before its first write (local mode: when it opens, since it
holds the folder's lock). A SIGKILL therefore leaves whole batches only. One writer at a time.
Limitation (server): an upsert of a killed client still in flight when a new writer commits the
same item id could overwrite that point (point ids are the item ids); local mode cannot see it.

A Qdrant server cannot run in this project's CI (no server binary on PyPI or Debian); the
server code path is tested through URL parsing and client construction, and all storage logic
through local mode, which implements the same client API.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np

from ..errors import SpecError, StoreError, require
from ..manifest import Manifest
from ..types import MODALITIES, Item, Modality
from ._commit import CommitMarks
from .base import INDEX_KEYS, BaseStore, IndexParams, SearchResult, chunks, rerank, split_uri

KINDS = ("flat", "hnsw")
_NS = uuid.UUID("5b1c39a2-6f0e-4f0c-9a57-0d3c1f2a7e11")  # point ids: uuid5(_NS, item id)
_META_VEC = 1  # the meta collection's dummy vector size
_LOCAL: dict[str, tuple[Any, int]] = {}  # local folder → (client, open stores in this process)


@atexit.register
def _close_local_clients() -> None:
    """Close local-mode clients still open at exit (qdrant-client's own ``__del__`` fails then)."""
    for client, _ in list(_LOCAL.values()):
        try:
            client.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass
    _LOCAL.clear()


def point_id(item_id: str) -> str:
    """The Qdrant point id of an item id (UUIDv5: Qdrant ids are integers or UUIDs)."""
    return str(uuid.uuid5(_NS, item_id))


def client_options(target: str, query: dict[str, str]) -> dict[str, Any]:
    """``QdrantClient`` keyword arguments for a store target (a folder or an http(s) URL)."""
    if target.startswith(("http://", "https://")):
        opts: dict[str, Any] = {"url": target, "timeout": 30}
        key = query.get("api_key") or os.environ.get("QDRANT_API_KEY")
        if key:
            opts["api_key"] = key
        if query.get("prefer_grpc", "").lower() in {"1", "true", "yes"}:
            opts["prefer_grpc"] = True
        return opts
    return {"path": str(Path(target).expanduser().resolve())}


def new_client(**options: Any) -> Any:
    """``QdrantClient(**options)`` (the one place a client is made: tests swap it for an emulated server)."""
    from qdrant_client import QdrantClient

    return QdrantClient(**options)


class QdrantStore(CommitMarks, BaseStore):
    """Texts and images in a Qdrant collection each, with a meta collection beside them."""

    def __init__(self, target: str, query: dict[str, str] | None = None) -> None:
        self.qc = require("qdrant_client", "qdrant")
        from qdrant_client import models

        self.models = models
        query = dict(query or {})
        given = any(k in query for k in INDEX_KEYS)
        self.server = target.startswith(("http://", "https://"))
        self.params, _ = IndexParams.from_query(query, KINDS, uri=f"qdrant:{target}",
                                                extra=("collection", "api_key", "prefer_grpc"))
        self.col = query.get("collection") or "mindgap"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,200}", self.col):
            raise SpecError(f"bad Qdrant collection name {self.col!r} (letters, digits, _ and -)", item=target)
        self.cols = {m: f"{self.col}_{m.value}" for m in MODALITIES}
        self.meta_col = f"{self.col}_meta"
        opts = client_options(target, query)
        self.client: Any = None
        if self.server:
            self.location = target
            self.client = self._connect(opts, target)
        else:
            path = Path(opts["path"])
            if path.exists() and not path.is_dir():
                raise SpecError("a local Qdrant store is a folder (qdrant:/data/kb)", item=target)
            path.mkdir(parents=True, exist_ok=True)
            self.location = str(path)
            self._manifest_path = path / "manifest.json"
            client, n = _LOCAL.get(self.location, (None, 0))
            if client is None:
                client = self._connect(opts, target)
            _LOCAL[self.location] = (client, n + 1)
            self.client = client
        self._writable = False
        self._seen = 0.0
        try:
            self._open(target, given, {k: query[k] for k in ("collection",) if query.get(k)})
        except BaseException:
            self.close()
            raise

    def _connect(self, opts: dict[str, Any], target: str) -> Any:
        try:
            client = new_client(**opts)
            if self.server:
                client.get_collections()  # fail here, with a clear message, if nobody answers
            return client
        except Exception as exc:  # noqa: BLE001 - qdrant-client raises many kinds
            hint = (f"is the Qdrant server at {target} running and reachable?" if self.server
                    else "a local Qdrant folder can be open in one process only")
            raise StoreError(f"cannot open Qdrant ({exc}); {hint}", item=target) from None

    def _open(self, target: str, given: bool, extra: dict[str, str]) -> None:
        c = self.client
        if any(c.collection_exists(n) for n in self.cols.values()) and not c.collection_exists(self.meta_col):
            raise StoreError(f"collections {self.col}_* were not made by mindgap (no {self.meta_col!r}); "
                             "pick another with ?collection=NAME", item=target)
        if not c.collection_exists(self.meta_col):
            c.create_collection(self.meta_col, vectors_config=self.models.VectorParams(
                size=_META_VEC, distance=self.models.Distance.DOT))
        cfg = json.loads(self._meta("config") or "{}")
        if not given and cfg.get("params"):
            self.params = IndexParams(**cfg["params"])
        qs = self.params.query_string()
        if extra:  # never the api key
            qs += ("&" if qs else "?") + urlencode(extra)
        self.uri = f"qdrant:{self.location}{qs}"
        self._dim: int | None = cfg.get("dim")
        self._read_marks()
        if given and cfg.get("params") and self.server and self._dim:
            for name in self.cols.values():
                c.update_collection(name, hnsw_config=self._hnsw())
        if given and cfg.get("params") != self.params.to_dict():
            self._set_meta("config", json.dumps({"params": self.params.to_dict(), "dim": self._dim}))
        self._counts = self._count_all()
        if not self.server:
            self._make_writable()  # we hold the folder's lock: drop what a killed writer left

    # -- meta collection ----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        got = self.client.retrieve(self.meta_col, [point_id(f"meta:{key}")], with_payload=True)
        return str(got[0].payload["value"]) if got else None

    def _set_meta(self, key: str, value: str) -> None:
        self.client.upsert(self.meta_col, [self.models.PointStruct(
            id=point_id(f"meta:{key}"), vector=[0.0] * _META_VEC, payload={"key": key, "value": value})], wait=True)

    @property
    def manifest(self) -> Manifest | None:
        if not self.server:
            return super().manifest
        if self._manifest is None:
            text = self._meta("manifest")
            if text is not None:
                self._manifest = Manifest.from_dict(json.loads(text))
        return self._manifest

    def save_manifest(self, manifest: Manifest) -> None:
        if not self.server:
            return super().save_manifest(manifest)
        manifest.updated = time.time()
        self._set_meta("manifest", json.dumps(manifest.to_dict(), default=str))  # one point: atomic
        self._manifest = manifest

    # -- commit marks --------------------------------------------------------------------------
    def _dead(self) -> Any:
        """Points no reader may see: later than the commit mark, or numbered by a writer that died."""
        m = self.models
        conds = [m.FieldCondition(key="batch", range=m.Range(gt=self._wm))]
        conds += [m.FieldCondition(key="batch", range=m.Range(gte=lo, lte=hi)) for lo, hi in self._aborted]
        return m.Filter(should=conds)

    def _live(self, ids: Sequence[str] | None = None) -> Any:
        m = self.models
        must = [m.HasIdCondition(has_id=[point_id(i) for i in ids])] if ids is not None else None
        return m.Filter(must=must, must_not=[self._dead()])

    def _count_all(self) -> dict[Modality, int]:
        self._seen = time.monotonic()
        if not self._exists():
            return {m: 0 for m in MODALITIES}
        return {m: int(self.client.count(self.cols[m], count_filter=self._live(), exact=True).count)
                for m in MODALITIES}

    def _delete_uncommitted(self) -> None:
        for name in self.cols.values():
            if self.client.collection_exists(name):
                self.client.delete(name, points_selector=self.models.FilterSelector(filter=self._dead()), wait=True)

    # -- collections -----------------------------------------------------------------------------
    def _hnsw(self) -> Any:
        p = self.params
        return self.models.HnswConfigDiff(m=p.M, ef_construct=p.ef_construction)

    def _create(self, dim: int) -> None:
        m = self.models
        for name in self.cols.values():
            if not self.client.collection_exists(name):
                self.client.create_collection(name, vectors_config=m.VectorParams(size=dim, distance=m.Distance.DOT),
                                              hnsw_config=self._hnsw())
                if self.server:
                    self.client.create_payload_index(name, "batch", m.PayloadSchemaType.INTEGER)
        self._dim = dim
        self._set_meta("config", json.dumps({"params": self.params.to_dict(), "dim": dim}))

    def _exists(self) -> bool:
        return self._dim is not None and self.client.collection_exists(self.cols[Modality.TEXT])

    # -- contract ---------------------------------------------------------------------------------
    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int:
        v = self.check_add(items, vectors, self._dim)
        self._make_writable()
        if not self._exists():
            self._create(int(v.shape[1]))
        present = self.has([it.id for it in items])
        keep = [i for i, it in enumerate(items) if it.id not in present]
        if not keep:
            return 0
        batch = self._next_batch()
        points: dict[Modality, list[Any]] = {m: [] for m in MODALITIES}
        for i in keep:
            it = items[i]
            points[it.modality].append(self.models.PointStruct(
                id=point_id(it.id), vector=v[i].tolist(),
                payload={"id": it.id, "batch": batch, "text": it.text, "uri": it.uri,
                         "metadata": json.dumps(it.metadata)}))

        def write() -> None:
            for m, ps in points.items():
                for part in chunks(ps, 1000):
                    self.client.upsert(self.cols[m], list(part), wait=True)

        self._commit_batch(batch, write, {m: len(ps) for m, ps in points.items()})
        return len(keep)

    def delete(self, ids: Sequence[str]) -> int:
        self._make_writable()
        found = self._points(list(dict.fromkeys(ids)), with_vectors=False)
        by_mod: dict[Modality, list[str]] = {}
        for iid, (m, _) in found.items():
            by_mod.setdefault(m, []).append(point_id(iid))
        for m, pids in by_mod.items():
            for part in chunks(pids, 1000):
                self.client.delete(self.cols[m], points_selector=self.models.PointIdsList(points=list(part)),
                                   wait=True)
            self._counts[m] -= len(pids)
        return len(found)

    def _points(self, ids: Sequence[str], with_vectors: bool = True) -> dict[str, tuple[Modality, Any]]:
        """Live points of ``ids``: item id → (modality, point)."""
        if not ids or not self._exists():
            return {}
        self._refresh()
        out: dict[str, tuple[Modality, Any]] = {}
        for m, name in self.cols.items():
            for part in chunks(list(ids), 1000):
                pts, _ = self.client.scroll(name, scroll_filter=self._live(part), limit=len(part), with_payload=True,
                                            with_vectors=with_vectors)
                for p in pts:
                    out[p.payload["id"]] = (m, p)
        return out

    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult:
        q = self.check_queries(queries, k, self._dim)
        m = Modality.parse(modality)
        n = self.count(m)
        if not n:
            return [[] for _ in range(len(q))]
        p = self.params
        fetch = min(p.fetch(k), n)
        sp = (self.models.SearchParams(exact=p.index == "flat", hnsw_ef=max(p.ef_search, fetch)) if self.server
              else None)  # local mode always searches exactly (and warns about search params)
        flt = self._live()
        out: SearchResult = []
        for s in range(0, len(q), 256):
            reqs = [self.models.QueryRequest(query=row.tolist(), limit=fetch, filter=flt, params=sp, with_vector=True,
                                             with_payload=["id"]) for row in q[s : s + 256]]
            for qi, res in enumerate(self.client.query_batch_points(self.cols[m], reqs), s):
                ids = [pt.payload["id"] for pt in res.points]
                vec = np.array([pt.vector for pt in res.points], np.float32).reshape(len(ids), -1)
                out.append(rerank(q[qi], ids, vec, k))
        return out

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        found = self._points(list(dict.fromkeys(ids)), with_vectors=False)
        out: list[Item | None] = []
        for i in ids:
            if i not in found:
                out.append(None)
                continue
            m, pt = found[i]
            pl = pt.payload
            out.append(Item(id=i, modality=m, text=pl.get("text"), uri=pl.get("uri"),
                            metadata=json.loads(pl.get("metadata") or "{}")))
        return out

    def has(self, ids: Sequence[str]) -> set[str]:
        return set(self._points(list(dict.fromkeys(ids)), with_vectors=False))

    def count(self, modality: Modality | None = None) -> int:
        self._refresh()
        return sum(self._counts.values()) if modality is None else self._counts[Modality.parse(modality)]

    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        dim = self._dim or 0
        if ids is not None:
            found = self._points(list(dict.fromkeys(ids)))
            got = [i for i in ids if i in found]
            return got, np.array([found[i][1].vector for i in got], np.float32).reshape(len(got), dim)
        m = Modality.parse(modality)
        if not self._exists():
            return [], np.zeros((0, dim), np.float32)
        self._refresh()
        got, vecs, offset = [], [], None
        while True:
            pts, offset = self.client.scroll(self.cols[m], scroll_filter=self._live(), limit=4096, offset=offset,
                                             with_payload=["id"], with_vectors=True)
            got += [p.payload["id"] for p in pts]
            vecs += [p.vector for p in pts]
            if offset is None:
                break
        return got, np.array(vecs, np.float32).reshape(len(got), dim)

    def close(self) -> None:
        if getattr(self, "client", None) is None:
            return
        try:
            self._release_reservation()  # a clean close aborts nothing
        finally:
            if self.server:
                self.client.close()
            else:  # the last user in this process releases the folder's lock
                client, n = _LOCAL.get(self.location, (self.client, 1))
                if n <= 1:
                    _LOCAL.pop(self.location, None)
                    client.close()
                else:
                    _LOCAL[self.location] = (client, n - 1)
            self.client = None


def _make(rest: str, **options: Any) -> QdrantStore:
    """``qdrant:/data/kb`` (local mode) or ``qdrant:http://host:6333?collection=kb&index=hnsw``."""
    target, query = split_uri(rest)
    if not target:
        raise SpecError("qdrant needs a folder or an http(s):// server address", item="qdrant:")
    query.update({k: str(v) for k, v in options.items()})
    return QdrantStore(target, query)
