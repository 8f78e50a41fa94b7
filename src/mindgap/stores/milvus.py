"""Milvus store: milvus-lite embedded (``milvus:/path/kb.db``) or a server (``milvus:http://host:19530``).

Options: ``index=flat|hnsw|ivf|ivfsq8|ivfpq`` (``ivfpq`` needs a server) with ``M``,
``ef_construction``, ``ef_search``, ``nlist``, ``nprobe``, ``pq_m``, ``pq_bits``, ``refine`` (see
:class:`~mindgap.stores.base.IndexParams`); ``collection`` (default ``mindgap``), and for a
server ``token`` (``user:password`` or an API key) and ``db`` (database name). Example:
``milvus:https://host:19530?db=kb&collection=mmqa&token=root:Milvus&index=hnsw``.

Mapping: one collection per store with a partition per modality (``text``, ``image``); Milvus
builds indexes per segment and segments belong to one partition, so IVF lists are trained on one
modality (a mixed index would give text and image vectors separate lists — the modality gap — and
a text query would probe only text lists). Fields: ``id`` (primary key), ``modality``, ``batch``,
``text``, ``uri``, ``metadata`` (JSON text), ``vector``. A companion collection
``<collection>_meta`` holds the store's settings, the commit mark and — for a server — the
manifest (split into rows; a pointer row switches generations atomically), so it travels with
the data. milvus-lite keeps the manifest beside the file as ``<file>.manifest.json``.

Atomicity: a batch mixing texts and images is two inserts (one per partition). Every row carries
its batch number — reserved in the meta collection (``next``) before use — and the batch is
committed when the ``commit`` row says so. Numbers a writer reserved but never committed (it was
killed, or an insert failed) are *aborted* by the next writer: listed in ``aborted``, never
visible, their rows deleted — so even an insert of a killed client that reaches a server late
cannot join a later batch. milvus-lite cleans up when it opens (it holds the file's lock), a
server writer before its first write; server readers filter out what is not committed (the marks
are re-read at most once a second), so they never see half a batch. Inserts are durable when
acknowledged (milvus-lite writes its WAL through to the OS per insert), so there is no flush per
batch — milvus-lite flushes on :meth:`MilvusStore.close`. One writer at a time. Deleting many ids
is several delete calls and not atomic.
"""

from __future__ import annotations

import json
import re
import time
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

KINDS = ("flat", "hnsw", "ivf", "ivfsq8", "ivfpq")
MAX_VARCHAR = 65535
_MILVUS_INDEX = {"flat": "FLAT", "hnsw": "HNSW", "ivf": "IVF_FLAT", "ivfsq8": "IVF_SQ8", "ivfpq": "IVF_PQ"}
_CHUNK = 60000  # manifest characters per meta row (ASCII JSON, under the VARCHAR limit)
_LITE_USERS: dict[str, int] = {}  # milvus-lite file → open stores in this process


#: Connection attempts for a Milvus server before giving up (each waits up to pymilvus' 10 s).
SERVER_CONNECT_TRIES = 3
#: Longest wait in ``build_index`` for a server to finish indexing what was flushed.
INDEX_WAIT_S = 120.0


def expr_str(s: str) -> str:
    """A Milvus expression string literal: backslash, quote and line breaks escaped."""
    return '"' + (s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                  .replace("\r", "\\r").replace("\t", "\\t")) + '"'


def id_filter(ids: Sequence[str]) -> str:
    return "id in [" + ", ".join(expr_str(i) for i in ids) + "]"


class MilvusStore(CommitMarks, BaseStore):
    """Texts and images in one Milvus collection, a partition per modality."""

    _manifest_seen = 0.0

    def __init__(self, target: str, query: dict[str, str] | None = None) -> None:
        self.pm = require("pymilvus", "milvus")
        query = dict(query or {})
        given = any(k in query for k in INDEX_KEYS)
        self.server = target.startswith(("http://", "https://"))
        self.params, _ = IndexParams.from_query(query, KINDS, uri=f"milvus:{target}",
                                                extra=("collection", "token", "db"))
        if self.params.index == "ivfpq" and not self.server:
            raise SpecError("milvus-lite has no IVF_PQ index; use ivf, ivfsq8 or hnsw (or a Milvus server)",
                            item=target)
        self.col = query.get("collection") or "mindgap"
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.col):
            raise SpecError(f"bad Milvus collection name {self.col!r} (letters, digits, _)", item=target)
        self.meta_col = f"{self.col}_meta"
        if self.server:
            self.location, conn = target, {"uri": target, "token": query.get("token", ""),
                                           "db_name": query.get("db", "")}
        else:
            require("milvus_lite", "milvus")
            path = Path(target).expanduser().resolve()
            if path.suffix != ".db":
                raise SpecError("a milvus-lite store is a path ending in .db (milvus:/data/kb.db)", item=target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._manifest_path = Path(f"{path}.manifest.json")
            self.location, conn = str(path), {"uri": str(path)}
        self.client = self._connect(conn, target)
        if not self.server:
            _LITE_USERS[self.location] = _LITE_USERS.get(self.location, 0) + 1
        self._writable = False
        try:
            self._open(target, given, {k: query[k] for k in ("collection", "db") if query.get(k)})
        except BaseException:
            self.close()
            raise

    def _connect(self, conn: dict[str, Any], target: str) -> Any:
        """A MilvusClient. Servers: a dedicated gRPC channel per store (pymilvus shares one per
        address and, after 30 s idle, health-checks and reconnects it with a 10 s limit — which a
        busy server can fail), and transient "server unavailable" errors are retried with backoff
        (3 tries, up to ~35 s) before a clear error."""
        tries = SERVER_CONNECT_TRIES if self.server else 1
        for attempt in range(1, tries + 1):
            try:
                return self.pm.MilvusClient(**conn, **({"dedicated": True} if self.server else {}))
            except Exception as exc:  # noqa: BLE001 - pymilvus raises many kinds
                error = exc
                if attempt < tries:
                    time.sleep(2.0 * attempt)
        hint = (f"is the Milvus server at {target} running and reachable?" if self.server
                else "a milvus-lite file can be open in one process only")
        raise StoreError(f"cannot open Milvus ({error}); {hint}", item=target) from None

    def _open(self, target: str, given: bool, extra: dict[str, str]) -> None:
        if self.client.has_collection(self.col) and not self.client.has_collection(self.meta_col):
            raise StoreError(f"collection {self.col!r} was not made by mindgap (no {self.meta_col!r}); "
                             "pick another with ?collection=NAME", item=target)
        self._ensure_meta()
        cfg = json.loads(self._meta("config") or "{}")
        if not given and cfg.get("params"):
            self.params = IndexParams(**cfg["params"])
        qs = self.params.query_string()
        if extra:  # never the token
            qs += ("&" if qs else "?") + urlencode(extra)
        self.uri = f"milvus:{self.location}{qs}"
        self._dim: int | None = cfg.get("dim")
        self._read_marks()
        self._seen = 0.0
        if self.client.has_collection(self.col):
            self.client.load_collection(self.col)
            if given and IndexParams(**cfg.get("params", {})).build_dict() != self.params.build_dict():
                self._reindex()
            if not self.server:
                self._make_writable()  # we hold the file's lock: drop what a killed writer left
        if given and cfg.get("params") != self.params.to_dict():
            self._set_meta("config", json.dumps({"params": self.params.to_dict(), "dim": self._dim}))
        self._counts = self._count_all()

    # -- meta collection ----------------------------------------------------------------------
    def _ensure_meta(self) -> None:
        if not self.client.has_collection(self.meta_col):
            s = self.pm.MilvusClient.create_schema(auto_id=False)
            s.add_field("key", self.pm.DataType.VARCHAR, is_primary=True, max_length=256)
            s.add_field("value", self.pm.DataType.VARCHAR, max_length=MAX_VARCHAR)
            s.add_field("_v", self.pm.DataType.FLOAT_VECTOR, dim=2)
            ip = self.client.prepare_index_params()
            ip.add_index("_v", index_type="FLAT", metric_type="L2")
            self.client.create_collection(self.meta_col, schema=s)
            self.client.create_index(self.meta_col, ip, sync=False)  # (sync polls every 0.5 s)
        self.client.load_collection(self.meta_col)

    def _meta(self, key: str) -> str | None:
        rows = self.client.query(self.meta_col, filter=f"key == {expr_str(key)}", output_fields=["value"])
        return rows[0]["value"] if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self.client.upsert(self.meta_col, [{"key": key, "value": value, "_v": [0.0, 0.0]}])

    @property
    def manifest(self) -> Manifest | None:
        if not self.server:
            return super().manifest
        if self._manifest is not None and time.monotonic() - self._manifest_seen < 1.0:
            return self._manifest  # the Retriever asks on every search: re-read at most once a second
        ptr = self._meta("manifest")
        if ptr is None:
            return None
        p = json.loads(ptr)
        rows = self.client.query(self.meta_col, filter=f'key like "manifest.{int(p["gen"])}.%"',
                                 output_fields=["key", "value"])
        parts = dict(sorted((int(r["key"].rsplit(".", 1)[1]), r["value"]) for r in rows))
        if len(parts) != p["n"]:
            raise StoreError("the manifest in Milvus is incomplete", item=f"{self.uri} ({self.meta_col})")
        self._manifest = Manifest.from_dict(json.loads("".join(parts[i] for i in range(p["n"]))))
        self._manifest_seen = time.monotonic()
        return self._manifest

    def save_manifest(self, manifest: Manifest) -> None:
        if not self.server:
            return super().save_manifest(manifest)
        manifest.updated = time.time()
        text = json.dumps(manifest.to_dict(), default=str)  # ASCII: characters == bytes
        old = json.loads(self._meta("manifest") or '{"gen": 0}')
        gen = int(old["gen"]) + 1
        parts = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        self.client.upsert(self.meta_col, [{"key": f"manifest.{gen}.{i}", "value": c, "_v": [0.0, 0.0]}
                                           for i, c in enumerate(parts)])
        self._set_meta("manifest", json.dumps({"gen": gen, "n": len(parts)}))  # the switch
        self.client.delete(self.meta_col, filter=f'key like "manifest.{int(old["gen"])}.%"')
        self._manifest, self._manifest_seen = manifest, time.monotonic()

    # -- collection -----------------------------------------------------------------------------
    def _index_params(self) -> Any:
        p, ip = self.params, self.client.prepare_index_params()
        build: dict[str, Any] = {}
        if p.index == "hnsw":
            build = {"M": p.M, "efConstruction": p.ef_construction}
        elif p.index != "flat":
            build = {"nlist": p.nlist or 1024}
            if p.index == "ivfpq":
                build.update(m=p.pq_m or max(1, (self._dim or 8) // 8), nbits=p.pq_bits)
        # flattened keys for a server, plus the legacy JSON "params" pair (what milvus-lite reads)
        ip.add_index("vector", index_type=_MILVUS_INDEX[p.index], metric_type="IP",
                     params={**build, "params": json.dumps(build)} if build else {})
        return ip

    def _create(self, dim: int) -> None:
        s, dt = self.pm.MilvusClient.create_schema(auto_id=False), self.pm.DataType
        s.add_field("id", dt.VARCHAR, is_primary=True, max_length=MAX_VARCHAR)
        s.add_field("modality", dt.VARCHAR, max_length=16)
        s.add_field("batch", dt.INT64)
        for name in ("text", "uri"):
            s.add_field(name, dt.VARCHAR, max_length=MAX_VARCHAR, nullable=True)
        s.add_field("metadata", dt.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("vector", dt.FLOAT_VECTOR, dim=dim)
        self.client.create_collection(self.col, schema=s)
        self.client.create_index(self.col, self._index_params(), sync=False)
        for m in MODALITIES:
            self.client.create_partition(self.col, m.value)
        self.client.load_collection(self.col)
        self._dim = dim
        self._set_meta("config", json.dumps({"params": self.params.to_dict(), "dim": dim}))

    def _reindex(self) -> None:
        """Replace the vector index with the one the URI asks for."""
        self.client.release_collection(self.col)
        self.client.drop_index(self.col, "vector")
        self.client.create_index(self.col, self._index_params(), sync=False)
        self.client.load_collection(self.col)

    def _dead(self) -> str:
        """Rows no reader may see: later than the commit mark, or numbered by a writer that died."""
        return " or ".join([f"batch > {self._wm}"] + [f"(batch >= {lo} and batch <= {hi})" for lo, hi in self._aborted])

    def _live(self, extra: str = "") -> str:
        """Filter hiding uncommitted rows (server readers), and'ed with ``extra``."""
        parts = ([f"not ({self._dead()})"] if self.server else []) + ([extra] if extra else [])
        return " and ".join(f"({p})" for p in parts)

    def _count_all(self) -> dict[Modality, int]:
        self._seen = time.monotonic()
        if not self.client.has_collection(self.col):
            return {m: 0 for m in MODALITIES}
        out = {}
        for m in MODALITIES:  # a modality filter: milvus-lite ignores partitions in count(*)
            r = self.client.query(self.col, filter=self._live(f"modality == {expr_str(m.value)}"),
                                  output_fields=["count(*)"])
            out[m] = int(r[0]["count(*)"]) if r else 0
        return out

    def _delete_uncommitted(self) -> None:
        if self.client.has_collection(self.col):
            self.client.delete(self.col, filter=self._dead())

    # -- contract ---------------------------------------------------------------------------------
    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int:
        v = self.check_add(items, vectors, self._dim)
        self._make_writable()
        if not self.client.has_collection(self.col):
            self._create(int(v.shape[1]))
        present = self.has([it.id for it in items])
        keep = [i for i, it in enumerate(items) if it.id not in present]
        if not keep:
            return 0
        batch = self._next_batch()
        rows = {m: [] for m in MODALITIES}
        for i in keep:
            it = items[i]
            row = {"id": it.id, "modality": it.modality.value, "batch": batch, "text": it.text, "uri": it.uri,
                   "metadata": json.dumps(it.metadata), "vector": v[i].tolist()}
            for f in ("id", "text", "uri", "metadata"):
                if row[f] is not None and len(row[f].encode("utf-8", "surrogatepass")) > MAX_VARCHAR:
                    raise StoreError(f"{f} longer than Milvus' {MAX_VARCHAR} bytes", item=it.id)
            rows[it.modality].append(row)

        def write() -> None:
            for m, rs in rows.items():
                for part in chunks(rs, 2000):
                    self.client.insert(self.col, list(part), partition_name=m.value)

        self._commit_batch(batch, write, {m: len(rs) for m, rs in rows.items()})
        return len(keep)

    def delete(self, ids: Sequence[str]) -> int:
        self._make_writable()
        found = self._query(list(dict.fromkeys(ids)), ["modality"])
        for part in chunks(list(found), 500):
            self.client.delete(self.col, filter=id_filter(part))
        for r in found.values():
            self._counts[Modality.parse(r["modality"])] -= 1
        return len(found)

    def _query(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict[str, Any]]:
        if not ids or not self.client.has_collection(self.col):
            return {}
        out: dict[str, dict[str, Any]] = {}
        for part in chunks(list(ids), 500):
            for r in self.client.query(self.col, filter=self._live(id_filter(part)), output_fields=["id", *fields]):
                out[r["id"]] = r
        return out

    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult:
        q = self.check_queries(queries, k, self._dim)
        m = Modality.parse(modality)
        self._refresh()
        if not self._counts[m]:
            return [[] for _ in range(len(q))]
        p = self.params
        fetch = min(p.fetch(k), self._counts[m], 16384)
        sp: dict[str, Any] = {"ef": max(p.ef_search, fetch)} if p.index == "hnsw" else {}
        if p.index.startswith("ivf"):
            sp = {"nprobe": p.nprobe or 64}
        out: SearchResult = []
        for s in range(0, len(q), 1024):
            res = self.client.search(self.col, data=q[s : s + 1024].tolist(), limit=fetch, anns_field="vector",
                                     partition_names=[m.value], filter=self._live(), output_fields=["vector"],
                                     search_params={"metric_type": "IP", "params": sp})
            for qi, hits in enumerate(res, s):
                ids = [h["id"] for h in hits]
                vec = np.array([h["entity"]["vector"] for h in hits], np.float32).reshape(len(ids), -1)
                out.append(rerank(q[qi], ids, vec, k))
        return out

    def get(self, ids: Sequence[str]) -> list[Item | None]:
        rows = self._query(list(dict.fromkeys(ids)), ["modality", "text", "uri", "metadata"])
        return [Item(id=i, modality=Modality.parse(r["modality"]), text=r["text"], uri=r["uri"],
                     metadata=json.loads(r["metadata"] or "{}")) if (r := rows.get(i)) else None for i in ids]

    def has(self, ids: Sequence[str]) -> set[str]:
        return set(self._query(list(dict.fromkeys(ids)), []))

    def count(self, modality: Modality | None = None) -> int:
        self._refresh()
        return sum(self._counts.values()) if modality is None else self._counts[Modality.parse(modality)]

    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        if ids is not None:
            rows = self._query(list(dict.fromkeys(ids)), ["vector"])
            found = [i for i in ids if i in rows]
            mat = np.array([rows[i]["vector"] for i in found], np.float32).reshape(len(found), self._dim or 0)
            return found, mat
        m = Modality.parse(modality)
        if not self.count(m):
            return [], np.zeros((0, self._dim or 0), np.float32)
        got, vecs = [], []
        if not self.server:  # milvus-lite has no result window (and no AllocTimestamp for iterators)
            rows = self.client.query(self.col, filter="", partition_names=[m.value], output_fields=["id", "vector"],
                                     limit=self._counts[m])
            return [r["id"] for r in rows], np.array([r["vector"] for r in rows], np.float32).reshape(len(rows), -1)
        it = self.client.query_iterator(self.col, batch_size=4096, filter=self._live(), partition_names=[m.value],
                                        output_fields=["id", "vector"])
        while batch := it.next():
            got.extend(r["id"] for r in batch)
            vecs.append(np.array([r["vector"] for r in batch], np.float32))
        it.close()
        return got, np.concatenate(vecs).reshape(len(got), self._dim or 0)

    def build_index(self) -> None:
        """Seal what was written so Milvus builds the per-segment indexes now (flush).

        Milvus (re)builds indexes in the background after a flush, and ANN results change until
        it is done; so we wait for it — on a server until ``describe_index`` reports no pending
        rows (at most ``INDEX_WAIT_S``), in-process milvus-lite through its private
        ``_wait_for_bg`` (best effort) — and searches after ``build_index`` are stable.
        """
        if not self.client.has_collection(self.col):
            return
        self.client.flush(self.col)
        if self.server:
            deadline = time.monotonic() + INDEX_WAIT_S
            while time.monotonic() < deadline:
                info = self.client.describe_index(self.col, "vector") or {}
                if int(info.get("pending_index_rows", 0) or 0) == 0:
                    break
                time.sleep(0.2)
        else:
            try:
                from milvus_lite import server_manager_instance

                db = server_manager_instance._servers[self.location][1]
                db.get_collection(self.col)._wait_for_bg()
            except Exception:  # noqa: BLE001 - a private API of milvus-lite: never fail because of it
                pass

    def close(self) -> None:
        if getattr(self, "client", None) is None:
            return
        if self._writable and self.client.has_collection(self.col):
            self._release_reservation()  # a clean close aborts nothing
            if not self.server:
                self.build_index()
        self.client.close()
        self.client = None
        if not self.server:  # the last user releases the in-process milvus-lite server and the file's lock
            _LITE_USERS[self.location] -= 1
            if not _LITE_USERS[self.location]:
                from milvus_lite import server_manager_instance

                del _LITE_USERS[self.location]
                server_manager_instance.release_server(self.location)


def _make(rest: str, **options: Any) -> MilvusStore:
    """``milvus:/data/kb.db`` (milvus-lite) or ``milvus:http://host:19530?collection=kb&index=hnsw``."""
    target, query = split_uri(rest)
    if not target:
        raise SpecError("milvus needs a .db path or an http(s):// server address", item="milvus:")
    query.update({k: str(v) for k, v in options.items()})
    return MilvusStore(target, query)
