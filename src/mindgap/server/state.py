"""What the server holds: its configuration, its state between requests, the page's files.

:class:`ServerState` (retriever, encoder, batcher, locks, counters) is what routes receive
(``Depends(get_state)``); :mod:`mindgap.server.app` builds the app around it. Routes import
this module, never the app module: the imports go one way.
"""

# no `from __future__ import annotations`: dataclass fields are read at runtime.

import logging
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import MindgapError
from ..images import max_pixels as default_max_pixels
from ..stores import local_path
from .security import StoreEmpty, StoreUnavailable
from .workers import RWLock, TextBatcher, Workers

log = logging.getLogger("mindgap.server")

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class ServerConfig:
    """Everything ``mindgap serve`` can set.

    Attributes:
        store: store URI (``exact:/dir``, ``lancedb:/dir``, a bare path = LanceDB), or an
            open :class:`~mindgap.retriever.Retriever` (tests, notebooks).
        encoder: encoder spec or instance (default: the store's).
        generator: ``/ask`` generator spec (``extractive`` needs no LLM; ``local:smollm2``).
        template: ``/ask`` prompt template.
        caption_model: a ``mindgap caption fit`` directory for ``/caption`` (optional).
        api_key: require this key (constant-time compare); ``None`` = open.
        max_upload_bytes: largest request body.
        max_pixels: largest image (width × height), checked before decoding.
        timeout_s: per-request limit on the work done for it.
        max_batch: most texts per merged encoder call.
        cors_origins: allowed browser origins (empty = CORS off).
        allowed_hosts: ``Host`` header names accepted (``*`` = any, the default of
            :func:`create_app`); ``mindgap serve`` defaults to the loopback names when bound
            to a loopback address (:func:`~mindgap.server.security.default_allowed_hosts`).
        create: start on an empty new store when the store does not exist.
        upload_dir: where images posted to ``/items`` are kept (default: beside the store).
        torch_threads: intra-op threads for a PyTorch encoder (``None`` = leave as is). The
            CLI uses half the CPUs: the event loop, JSON and store searches need the rest, and
            an oversubscribed CPU makes PyTorch's spinning threads 10-20× slower.
    """

    store: Any = None
    encoder: Any = None
    generator: Any = "extractive"
    template: str = "paper"
    caption_model: Optional[str] = None
    api_key: Optional[str] = None
    max_upload_bytes: int = 16 * 1024 * 1024
    max_pixels: int = field(default_factory=default_max_pixels)
    timeout_s: float = 60.0
    max_batch: int = 64
    cors_origins: list = field(default_factory=list)
    allowed_hosts: list = field(default_factory=lambda: ["*"])
    create: bool = False
    upload_dir: Optional[str] = None
    warmup: bool = True
    torch_threads: Optional[int] = None


class ServerState:
    """What the app holds between requests: retriever, encoder, batcher, locks, counters."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.retriever: Any = None
        self.problem: Optional[MindgapError] = None
        self.encoder: Any = None
        self.workers: Optional[Workers] = None
        self.batcher: Optional[TextBatcher] = None
        self.lock = RWLock()
        self.rag: Any = None
        self.captioner: Any = None
        self.caption_problem: Optional[str] = None
        self.upload_dir: Optional[Path] = None
        self.uploads: Any = None  # mindgap.server.uploads.Uploads, when there is a store
        self.started_at = 0.0
        self._start_lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.statuses: dict[str, int] = {}

    # -- start / stop ---------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.encoder is not None

    def start(self) -> None:
        """Open the store, load the encoder (and generator, caption model) — once."""
        with self._start_lock:
            if self.started:
                return
            self._start()

    def _start(self) -> None:
        from ..encoders import load_encoder
        from ..retriever import Retriever, resolve_encoder_spec

        cfg = self.config
        if isinstance(cfg.store, Retriever):
            self.retriever = cfg.store
        elif cfg.store:
            uri = str(cfg.store)
            p = local_path(uri)
            if p is not None and not p.exists() and not cfg.create:
                self.problem = StoreUnavailable(
                    f"the store {uri} does not exist: build it with `mindgap index`, or start the server with "
                    "--create to begin with an empty one", item="store")
            else:
                self.retriever = Retriever(uri, encoder=cfg.encoder)
        else:
            self.problem = StoreUnavailable("this server was started without a store", item="store")
        if self.retriever is not None:
            self.encoder = self.retriever.encoder
        elif cfg.encoder is not None and not isinstance(cfg.encoder, str):
            self.encoder = cfg.encoder
        else:
            self.encoder = load_encoder(resolve_encoder_spec(None, cfg.encoder))
        if cfg.torch_threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(cfg.torch_threads))
        if cfg.warmup:
            self.encoder.encode_text(["warm up"], show_progress=False)
            self._warm_gap()
        self.upload_dir = self._upload_dir()
        if self.retriever is not None:
            from .uploads import Uploads

            self.uploads = Uploads(self.upload_dir, self.retriever.store)
        self._load_rag()
        self._load_captioner()
        self.workers = Workers()
        self.batcher = TextBatcher(self._encode_texts, self.workers.model, cfg.max_batch)
        self.started_at = time.time()

    def _warm_gap(self) -> None:
        """The default corrector's per-item terms for every stored item (loaded from the table
        saved beside the store, the rest computed), so no search pays for them."""
        if self.retriever is None:
            return
        from ..errors import MindgapError

        try:
            got = self.retriever.warm_gap()
        except MindgapError as exc:  # e.g. a default corrector that is not fitted: searches say so
            log.warning("gap corrector not warmed: %s", exc)
            return
        if got:
            log.info("gap corrector warmed: %s", got)

    def _encode_texts(self, texts: list) -> Any:
        return self.encoder.encode_text(texts, show_progress=False)

    def _upload_dir(self) -> Path:
        if self.config.upload_dir:
            return Path(self.config.upload_dir).expanduser().resolve()
        uri = getattr(getattr(self.retriever, "store", None), "uri", None) or str(self.config.store or "")
        p = local_path(uri) if uri else None
        if p is None:
            return Path(tempfile.mkdtemp(prefix="mindgap-uploads-"))
        p = p.resolve()
        return p.with_name(p.name + ".uploads")

    def _load_rag(self) -> None:
        from ..rag import RagPipeline

        gen = self.config.generator
        if isinstance(gen, str):
            from ..rag.generators import load_generator

            gen = load_generator(gen)
        self.rag = RagPipeline(self.retriever, gen, template=self.config.template)

    def _load_captioner(self) -> None:
        if not self.config.caption_model:
            self.caption_problem = ("this server has no caption model: start it with --caption-model DIR "
                                    "(a `mindgap caption fit` directory)")
            return
        from ..caption.generate import Captioner
        from ..caption.map import CaptionModel

        model = CaptionModel.load(self.config.caption_model)
        if getattr(self.encoder, "name", None) == model.meta.get("encoder"):
            model.use_encoder(self.encoder)
        gen = self.rag.generator if self.rag is not None else None
        self.captioner = Captioner(model, gen)

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.shutdown()
        if self.retriever is not None:
            try:
                self.retriever.close()
            except Exception:  # noqa: BLE001 - closing on shutdown is best effort
                log.warning("closing the store failed", exc_info=True)

    # -- guards ----------------------------------------------------------------------
    def need_retriever(self, *, allow_empty: bool = False) -> Any:
        """The retriever, or the reason there is none (404 missing store, 409 empty)."""
        if self.retriever is None:
            raise self.problem or StoreUnavailable("no store", item="store")
        if not allow_empty and self.retriever.store.count() == 0:
            raise StoreEmpty(f"the store {self.retriever.store.uri} is empty: POST /items or `mindgap index` it first",
                             item="store")
        return self.retriever

    # -- stats -----------------------------------------------------------------------
    def count(self, route: str, status: int) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1
        key = f"{status // 100}xx"
        self.statuses[key] = self.statuses.get(key, 0) + 1

    def store_stats(self) -> dict:
        """Counts, encoder, fitted correctors (reads the store: run it in a worker thread)."""
        r = self.retriever
        out: dict[str, Any] = {"store": None, "problem": str(self.problem) if self.problem else None}
        if r is not None:
            with self.lock.read():
                out.update(r.stats())
            out["gap_correctors"] = sorted(set(out.get("gap_correctors", [])) | {"naive"})
        else:
            out["encoder"] = getattr(self.encoder, "name", None)
        return out

    def stats(self) -> dict:
        """Everything ``/stats`` shows (call the server part on the event loop: its counters live there)."""
        out = self.store_stats()
        out["server"] = self.server_stats()
        return out

    def server_stats(self) -> dict:
        return {
            "uptime_s": round(time.time() - self.started_at, 1) if self.started_at else 0.0,
            "requests": dict(sorted(self.requests.items())), "statuses": dict(sorted(self.statuses.items())),
            "batching": self.batcher.stats() if self.batcher else None,
            "memory_rss_mb": round(rss_bytes() / 2**20, 1),
            "generator": getattr(self.rag.generator, "name", None) if self.rag else None,
            "caption_model": self.config.caption_model if self.captioner else None,
            "limits": {"max_upload_bytes": self.config.max_upload_bytes, "max_pixels": self.config.max_pixels,
                       "timeout_s": self.config.timeout_s, "max_batch": self.config.max_batch},
            "auth": bool(self.config.api_key),
        }


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc``; else the peak from ``getrusage``)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
