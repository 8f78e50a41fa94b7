"""The HTTP service: :func:`create_app` builds the FastAPI app, the lifespan loads the model once.

Example:
    >>> from mindgap.server import create_app, serve_in_thread
    >>> app = create_app("exact:/tmp/kb", generator="extractive")            # doctest: +SKIP
    >>> with serve_in_thread(app) as srv:                                     # doctest: +SKIP
    ...     httpx.get(srv.url + "/search", params={"query": "a dog", "gap": "zscore"}).json()

Run it with ``mindgap serve STORE``. One process holds the encoder and the store; CPU work
runs in threads (:mod:`mindgap.server.workers`), every error is JSON with a stable ``code``
(:class:`~mindgap.server.schemas.ErrorResponse`), CORS is off unless origins are given, and
``/docs`` is off (Swagger UI loads from a CDN; the schema is at ``/openapi.json``).
"""

# no `from __future__ import annotations`: FastAPI resolves route signatures at runtime.

import logging
from contextlib import asynccontextmanager
from typing import Any, Optional

from ..errors import require
from .security import AllowedHostsMiddleware, BodyLimitMiddleware, SecurityHeadersMiddleware
from .state import STATIC_DIR, ServerConfig, ServerState, rss_bytes  # noqa: F401 - re-exported
from .threaded import ServerHandle
from .threaded import serve_in_thread as _serve_in_thread

log = logging.getLogger("mindgap.server")

class StatsMiddleware:
    """Count requests per route template and status class (for ``/stats``)."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_tracking(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        finally:
            route = scope.get("route")
            name = f"{scope.get('method', '')} {getattr(route, 'path', None) or 'unmatched'}"
            self.state.count(name, status["code"])


def create_app(store: Any = None, *, config: Optional[ServerConfig] = None, **options: Any) -> Any:
    """The FastAPI app serving ``store``.

    Args:
        store: store URI or a :class:`~mindgap.retriever.Retriever`.
        config: a full :class:`ServerConfig`; or give its fields as keyword ``options``.

    The encoder and store are loaded by the lifespan (or earlier by ``app.state.mg.start()``,
    which ``mindgap serve`` calls so a bad store fails before the port opens).
    """
    require("fastapi", "server")
    from fastapi import FastAPI

    from . import routes, routes_vision
    from .errors import install_error_handlers

    cfg = config or ServerConfig(store=store, **options)
    if config is not None and store is not None:
        cfg.store = store
    state = ServerState(cfg)

    @asynccontextmanager
    async def lifespan(app: Any):  # noqa: ANN202
        import anyio

        await anyio.to_thread.run_sync(state.start)
        try:
            yield
        finally:
            state.stop()

    app = FastAPI(title="mindgap", version="1",
                  description="Multimodal (image + text) retrieval and RAG that minds the modality gap. "
                              "Errors are JSON `{\"error\": {\"code\", \"message\", \"item\"}}`.",
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.mg = state
    install_error_handlers(app)
    app.include_router(routes.router(cfg))
    app.include_router(routes_vision.router(cfg))
    routes.mount_page(app)
    app.add_middleware(StatsMiddleware, state=state)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_upload_bytes)
    if "*" not in cfg.allowed_hosts:
        app.add_middleware(AllowedHostsMiddleware, allowed=list(cfg.allowed_hosts))
    app.add_middleware(SecurityHeadersMiddleware)
    return app


#: Largest request line + headers uvicorn accepts. h11's default (16 KiB) is below what the
#: schema allows: ``GET /search?query=`` takes 20,000 characters, up to ~240 KB percent-encoded,
#: and a longer head is dropped without any answer (a connection reset, found by the fuzz test).
MAX_REQUEST_HEAD_BYTES = 512 * 1024

#: uvicorn settings shared by ``mindgap serve`` and :func:`serve_in_thread`.
UVICORN_OPTIONS = {"timeout_keep_alive": 30, "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES}


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *,
                    startup_timeout: float = 120.0) -> ServerHandle:
    """Run ``app`` under uvicorn (lifespan on) in a daemon thread; port 0 = a free port."""
    return _serve_in_thread(app, host, port, startup_timeout=startup_timeout, lifespan="on",
                            name="mindgap-server", **UVICORN_OPTIONS)


def default_api_key() -> Optional[str]:
    """``MINDGAP_API_KEY`` from the environment (empty = none; see :mod:`mindgap.env`)."""
    from ..env import api_key

    return api_key()
