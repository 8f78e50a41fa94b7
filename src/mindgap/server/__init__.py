"""The HTTP service (FastAPI) and its web page: ``mindgap serve STORE``.

:func:`create_app` builds the app; :func:`serve_in_thread` runs it on 127.0.0.1 in a
background thread (tests, notebooks). FastAPI is imported only when an app is built, so
``import mindgap.server`` stays cheap.
"""

from __future__ import annotations

from typing import Any


def create_app(store: Any = None, **options: Any) -> Any:
    """See :func:`mindgap.server.app.create_app`."""
    from .app import create_app as _create

    return _create(store, **options)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, **kw: Any) -> Any:
    """See :func:`mindgap.server.app.serve_in_thread`."""
    from .app import serve_in_thread as _serve

    return _serve(app, host, port, **kw)


__all__ = ["create_app", "serve_in_thread"]
