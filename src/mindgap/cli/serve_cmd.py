"""``mindgap serve``: the HTTP API and the web page over one store."""

from __future__ import annotations

import os

import typer

from .common import err_console

GEN_HELP = "Generator for /ask: extractive (default, no LLM), local:smollm2 (offline LLM), openai:<model>[@url]."


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        store: str = typer.Argument(..., help="Store URI (lancedb:/path, exact:/dir, ...; a bare path = LanceDB)."),
        host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
        port: int = typer.Option(8000, "--port"),
        encoder: str = typer.Option(None, "--encoder", help="Encoder spec (default: the one that built the store)."),
        generator: str = typer.Option("extractive", "--generator", "-g", help=GEN_HELP),
        template: str = typer.Option("paper", "--template", help="/ask prompt template: paper, short or a file."),
        caption_model: str = typer.Option(None, "--caption-model",
                                          help="A `mindgap caption fit` directory: enables /caption."),
        api_key: str = typer.Option(None, "--api-key",
                                    help="Require this key (Bearer or X-API-Key). Default: $MINDGAP_API_KEY."),
        max_upload_mb: float = typer.Option(16.0, "--max-upload-mb", help="Largest request body (MiB)."),
        max_pixels: int = typer.Option(None, "--max-pixels",
                                       help="Largest image in pixels (default: $MINDGAP_MAX_IMAGE_PIXELS or 64M)."),
        timeout: float = typer.Option(60.0, "--timeout", help="Per-request limit in seconds (504 after)."),
        max_batch: int = typer.Option(64, "--max-batch", help="Most texts per merged encoder call (1 = no batching)."),
        cors_origin: list[str] = typer.Option(None, "--cors-origin",
                                              help="Allow this browser origin (repeatable). CORS is off by default."),
        allowed_host: list[str] = typer.Option(None, "--allowed-host",
                                               help="Accept requests whose Host header names this (repeatable; "
                                                    "'*' = any). Default: the loopback names when --host is "
                                                    "loopback, else any."),
        create: bool = typer.Option(False, "--create", help="Start on an empty new store if STORE does not exist."),
        upload_dir: str = typer.Option(None, "--upload-dir",
                                       help="Where images posted to /items are kept (default: STORE.uploads)."),
        threads: int = typer.Option(None, "--threads",
                                    help="PyTorch threads for the encoder (default: half the CPUs, at least 1)."),
        log_level: str = typer.Option("warning", "--log-level", help="uvicorn log level."),
    ) -> None:
        """Serve the HTTP API (/search, /ask, /embed/*, /items, ...) and the web page at /.

        The encoder and the store are loaded once, before the port opens: a missing store
        is an error here unless --create is given. Errors are JSON with a stable `code`;
        the OpenAPI schema is at /openapi.json.
        """
        # A long-running server sees many (batch, length) shapes; oneDNN caches a primitive per
        # shape. Measured on the bundled model (400 random text batches of 1-45): RSS grew
        # 470 -> 772 MB with the default cache, to a ~654 MB plateau with capacity 64, and stayed
        # ~500 MB with the cache off, while CPU per call stayed within noise (batch 1: 19-22 ms,
        # batch 25: 214-216 ms). Must be set before PyTorch loads; an explicit setting wins.
        for var in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"):
            os.environ.setdefault(var, "0")
        from ..env import api_key as env_api_key
        from ..errors import StoreError, require
        from ..images import max_pixels as default_pixels
        from ..server.app import UVICORN_OPTIONS, ServerConfig, create_app
        from ..server.security import default_allowed_hosts, is_loopback
        from ..server.threaded import bind_socket
        from ..stores import local_path

        uvicorn = require("uvicorn", "server")
        p = local_path(store)
        if p is not None and not p.exists() and not create:
            raise StoreError("store does not exist: build it with `mindgap index`, or pass --create to start empty",
                             item=store)
        api_key = (api_key or "").strip() or env_api_key()
        hosts = list(allowed_host or []) or default_allowed_hosts(host)
        sock = bind_socket(host, port)  # before anything is announced: a port in use is the only message
        cfg = ServerConfig(store=store, encoder=encoder, generator=generator, template=template,
                           caption_model=caption_model, api_key=api_key or None, allowed_hosts=hosts,
                           max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                           max_pixels=int(max_pixels or default_pixels()), timeout_s=timeout, max_batch=max_batch,
                           cors_origins=list(cors_origin or []), create=create, upload_dir=upload_dir,
                           torch_threads=threads or max(1, (os.cpu_count() or 2) // 2))
        app = create_app(config=cfg)
        try:
            app.state.mg.start()  # load now: a bad store or model fails before the port accepts anything
        except BaseException:
            sock.close()
            raise
        if not is_loopback(host) and not cfg.api_key:
            err_console.print(f"[yellow]warning: listening on {host} without an API key (set MINDGAP_API_KEY)[/]")
        st = app.state.mg
        n = st.retriever.store.count() if st.retriever is not None else 0
        err_console.print(serve_banner(store, n, st.encoder.name, host, port, bool(cfg.api_key), hosts),
                          highlight=False, markup=False)
        server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, **UVICORN_OPTIONS))
        server.run(sockets=[sock])


def serve_banner(store: str, n: int, encoder: str, host: str, port: int, auth: bool, hosts: list[str]) -> str:
    """The startup lines: what is served where, whether a key is required, which Host names are accepted.

    Example:
        >>> print(serve_banner("kb", 3, "enc", "127.0.0.1", 8000, False, ["localhost"]))
        serving kb (3 items, encoder enc) on http://127.0.0.1:8000/  — API schema: /openapi.json
        auth: off (no API key: anyone who can reach the port can search, add and delete); Host: localhost
    """
    url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
    key = ("on (API key required: Authorization: Bearer <key> or X-API-Key)" if auth else
           "off (no API key: anyone who can reach the port can search, add and delete)")
    return (f"serving {store} ({n} items, encoder {encoder}) on {url}  — API schema: /openapi.json\n"
            f"auth: {key}; Host: {', '.join(hosts)}")
