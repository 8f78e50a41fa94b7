"""Run an ASGI app under uvicorn in a background thread (tests, notebooks, ``mindgap serve-llm``).

Shared by the mindgap service (:mod:`mindgap.server.app`) and the OpenAI-compatible LLM
endpoint (:mod:`mindgap.rag.openai_server`). Imports only uvicorn, and only when called.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import MindgapError, require


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bind to port 0, read it back, release it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket bound to ``host:port``, or one clear error (port in use, bad address).

    Servers bind before they announce themselves, so "serving on ..." is never printed
    for a port that another process holds.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        why = "the port is already in use (choose another with --port)" if exc.errno == errno.EADDRINUSE \
            else (exc.strerror or str(exc))
        raise MindgapError(f"cannot listen on {host}:{port}: {why}", item="server") from None
    return sock


@dataclass
class ServerHandle:
    """A server running in a background thread; ``stop()`` ends it (lifespan shutdown included).

    ``url`` is ``http://host:port``; ``base_url`` adds the API prefix (``/v1`` for the LLM endpoint).
    """

    url: str
    server: Any
    thread: threading.Thread
    api_prefix: str = ""

    @property
    def base_url(self) -> str:
        return self.url + self.api_prefix

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 120.0,
                    lifespan: str = "on", api_prefix: str = "", name: str = "mindgap-server",
                    **config: Any) -> ServerHandle:
    """Run ``app`` under uvicorn in a daemon thread; port 0 = a free port. Returns once it accepts
    connections; raises :class:`MindgapError` when it does not start within ``startup_timeout``."""
    uvicorn = require("uvicorn", "server")
    sock = bind_socket(host, port)
    real_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=name)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - t0 > startup_timeout:
            server.should_exit = True
            raise MindgapError(f"the server on {host}:{real_port} did not start", item="server")
        time.sleep(0.02)
    return ServerHandle(url=f"http://{host}:{real_port}", server=server, thread=thread, api_prefix=api_prefix)


__all__ = ["ServerHandle", "bind_socket", "free_port", "serve_in_thread"]
