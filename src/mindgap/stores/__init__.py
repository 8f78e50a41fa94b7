"""Vector stores behind the ``stores`` registry, selected by URI.

* ``lancedb:/path`` or a bare path — LanceDB embedded (default);
* ``milvus:/path/file.db`` — milvus-lite; ``milvus:http://host:19530`` — a Milvus server;
* ``faiss:/path[?index=hnsw|ivf|flat]`` — FAISS in memory, saved next to its metadata;
* ``qdrant:/path`` — Qdrant local mode (embedded); ``qdrant:http://host:6333`` — a Qdrant server;
* ``exact:`` / ``exact:/path`` — numpy oracle.

An existing store is opened with the backend that built it: its manifest records the
backend (``index.uri``), a URI naming another backend is refused, and a bare path opens the
recorded one. An unknown scheme (``fais:runs/kb``) is a one-line error, never a folder of
that name. ``open_store(uri, create=False)`` (read-only commands) creates nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import SpecError, StoreError
from ..registry import stores
from .base import BaseStore, VectorStore

stores.register_lazy("exact", "mindgap.stores.exact:_make", "exact numpy scan (memory or directory)")
stores.register_lazy("lancedb", "mindgap.stores.lancedb:_make", "LanceDB embedded, on disk (default)")
stores.register_lazy("milvus", "mindgap.stores.milvus:_make", "Milvus: milvus-lite file or http(s):// server")
stores.register_lazy("faiss", "mindgap.stores.faiss:_make", "FAISS flat / HNSW / IVF, saved with metadata")
stores.register_lazy("qdrant", "mindgap.stores.qdrant:_make", "Qdrant: local folder (embedded) or http(s):// server")


#: what looks like a URI scheme (two characters or more: ``C:`` is a Windows drive letter)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+$")


def split_store_uri(uri: str) -> tuple[str, str]:
    """``(scheme, rest)`` of a store URI; ``("", path)`` for a bare path.

    Raises:
        SpecError: a scheme that names no store backend (a typo such as ``fais:``).

    Example:
        >>> split_store_uri("faiss:/kb?index=hnsw")
        ('faiss', '/kb?index=hnsw')
        >>> split_store_uri("runs/kb")
        ('', 'runs/kb')
    """
    if not isinstance(uri, str) or not uri.strip():
        raise SpecError("empty store URI", item="store")
    scheme, sep, rest = uri.partition(":")
    if not sep or (not _SCHEME.match(scheme) and scheme not in stores.names()):
        return "", uri
    if scheme not in stores.names():
        raise SpecError(f"unknown store scheme {scheme!r}; use one of {', '.join(s + ':' for s in stores.names())} "
                        "(a bare path means lancedb)", item=uri)
    return scheme, rest


def recorded_backend(uri: str) -> str | None:
    """The backend an existing local store was built with (its manifest's ``index.uri``), else ``None``."""
    p = local_path(uri)
    if p is None:
        return None
    for mp in (p / "manifest.json", Path(f"{p}.manifest.json")):
        if not mp.is_file():
            continue
        try:
            rec = json.loads(mp.read_text()).get("index", {}).get("uri", "")
        except (OSError, ValueError, AttributeError):
            return None  # a corrupt manifest is reported by the store that reads it
        scheme = str(rec).partition(":")[0]
        return scheme if scheme in stores.names() else None
    if p.is_dir() and any(p.glob("*.lance")):
        return "lancedb"  # a LanceDB folder whose first batch never committed a manifest
    return None


def open_store(uri: str, *, create: bool = True, **options: Any) -> VectorStore:
    """Open (or create) a store from a URI; a bare path means LanceDB (or the backend that built it).

    Args:
        uri: ``scheme:rest`` or a bare path.
        create: ``False`` (read-only callers): a local store that does not exist is an error,
            and nothing is created.
        options: backend options (``index=...``).

    Raises:
        SpecError: an unknown scheme.
        StoreError: the store was built by another backend, or (``create=False``) does not exist.

    Example:
        >>> s = open_store("exact:")
        >>> s.count()
        0
    """
    scheme, rest = split_store_uri(uri)
    built_by = recorded_backend(uri)
    if not scheme:
        scheme, rest = built_by or "lancedb", uri
    elif built_by is not None and built_by != scheme:
        raise StoreError(f"this is a {built_by} store (its manifest records the backend); open it as "
                         f"{built_by}:{rest} or as the bare path, not with {scheme}:", item=uri)
    p = local_path(f"{scheme}:{rest}")
    if not create and p is not None and not p.exists():
        raise StoreError("no store at this path (build one with `mindgap index SOURCE --store URI`)", item=uri)
    return stores.create(f"{scheme}:{rest}", **options)


def local_path(uri: str) -> Path | None:
    """The file or folder behind a store URI; ``None`` for in-memory and remote stores.

    Reads the URI as :func:`open_store` does: a path without a known scheme (a Windows drive
    letter included) is a bare LanceDB path.
    """
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in stores.names():
        rest = uri
    rest = rest.split("?", 1)[0]
    if not rest or "://" in rest:
        return None
    return Path(rest).expanduser()


def side_dir(uri: str, kind: str) -> Path | None:
    """Where a store keeps a side structure ``kind`` (``lexical``, ``hubterms``): ``<folder>/<kind>``
    beside a folder store's data, ``<file>.<kind>`` beside a file store (Milvus Lite's ``.db``);
    ``None`` for in-memory and remote stores."""
    scheme, _ = split_store_uri(uri)
    p = local_path(uri)
    if p is None:
        return None
    if scheme == "milvus" or p.suffix == ".db":
        return Path(f"{p}.{kind}")
    return p / kind


def list_stores() -> dict[str, str]:
    """Store schemes → one-line descriptions.

    Example:
        >>> sorted(list_stores())
        ['exact', 'faiss', 'lancedb', 'milvus', 'qdrant']
    """
    return stores.describe()


__all__ = ["BaseStore", "VectorStore", "list_stores", "local_path", "side_dir", "open_store", "recorded_backend",
           "split_store_uri"]
