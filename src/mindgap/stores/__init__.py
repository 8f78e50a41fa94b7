"""Vector stores behind the ``stores`` registry, selected by URI.

* ``lancedb:/path`` or a bare path — LanceDB embedded (default);
* ``milvus:/path/file.db`` — milvus-lite; ``milvus:http://host:19530`` — a Milvus server;
* ``faiss:/path[?index=hnsw|ivf|flat]`` — FAISS in memory, saved next to its metadata;
* ``exact:`` / ``exact:/path`` — numpy oracle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import stores
from .base import BaseStore, VectorStore

stores.register_lazy("exact", "mindgap.stores.exact:_make", "exact numpy scan (memory or directory)")
stores.register_lazy("lancedb", "mindgap.stores.lancedb:_make", "LanceDB embedded, on disk (default)")
stores.register_lazy("milvus", "mindgap.stores.milvus:_make", "Milvus: milvus-lite file or http(s):// server")
stores.register_lazy("faiss", "mindgap.stores.faiss:_make", "FAISS flat / HNSW / IVF, saved with metadata")


def open_store(uri: str, **options: Any) -> VectorStore:
    """Open (or create) a store from a URI; a bare path means LanceDB.

    Example:
        >>> s = open_store("exact:")
        >>> s.count()
        0
    """
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in stores.names():
        uri = f"lancedb:{uri}"
    return stores.create(uri, **options)


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


def list_stores() -> dict[str, str]:
    return stores.describe()


__all__ = ["BaseStore", "VectorStore", "open_store", "list_stores", "local_path"]
