"""An emulated Qdrant server for tests: no Qdrant server binary exists on PyPI or Debian, so
``qdrant:http://...`` URIs are routed to one in-memory qdrant-client engine per URL (the same
client API a server answers), and the client options the store asked for are recorded."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def emulate_qdrant_server(monkeypatch) -> Iterator[list[dict[str, Any]]]:
    import qdrant_client

    import mindgap.stores.qdrant as qd

    engines: dict[str, Any] = {}
    seen: list[dict[str, Any]] = []

    class Shared:  # every store on a URL shares its engine; closing a store keeps the "server" up
        def __init__(self, engine: Any) -> None:
            self._engine = engine

        def __getattr__(self, name: str) -> Any:
            return getattr(self._engine, name)

        def close(self) -> None:
            pass

    def fake(**opts: Any) -> Any:
        seen.append(opts)
        if "path" in opts:
            return qdrant_client.QdrantClient(**opts)
        assert opts["url"].startswith(("http://", "https://")) and opts["timeout"] > 0
        return Shared(engines.setdefault(opts["url"], qdrant_client.QdrantClient(location=":memory:")))

    monkeypatch.setattr(qd, "new_client", fake)
    try:
        yield seen
    finally:
        for engine in engines.values():
            engine.close()
