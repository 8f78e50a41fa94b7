"""CPU-bound work off the event loop: one model thread, text-request batching, a store lock.

* The encoder runs in **one** dedicated thread. On a CPU the model already uses every core
  for one batch, so running two batches at once only adds contention; one thread keeps
  latency predictable and lets requests queue up into batches.
* :class:`TextBatcher` merges the texts of concurrent requests (``/embed/text``, text
  ``/search``, ``/ask``) into one encoder call. It never waits on a timer: when the model
  thread is idle a request is encoded at once; while it is busy, arriving requests queue and
  leave together in the next batch (up to ``max_batch`` texts). Under load that amortises
  the per-call overhead; alone, a request pays nothing extra. A request whose texts make
  the merged batch fail is retried alone, so one bad request never fails its neighbours.
* :class:`RWLock` lets searches run in parallel while index writes get the store alone.
* :func:`within` applies the per-request timeout: the client gets a 504 JSON error; the
  thread finishes its work in the background (a thread cannot be killed safely).
* Writes (``POST /items``) are different: a 504 must not hide a commit. A write embeds in
  chunks of ``max_batch`` inputs, each one job on the model thread (:class:`PooledEncoder`),
  so reads queued meanwhile run between chunks instead of behind the whole write; and a
  :class:`WriteJob` decides the race with the timeout: before the commit begins, the
  timeout cancels the write (nothing is written, the 504 says so); once it has begun, the
  answer waits for it and reports what was committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from .security import RequestTimeout


class WriteCancelled(RequestTimeout):
    """A write cancelled by its request's timeout before anything was committed."""

T = TypeVar("T")


class RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


async def within(awaitable: Awaitable[T], timeout: float | None, what: str) -> T:
    """Await with the per-request timeout; a timeout becomes :class:`RequestTimeout` (504)."""
    if not timeout:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise RequestTimeout(f"{what} took longer than the server's {timeout:g} s request timeout",
                             item=what) from None


class WriteJob:
    """The cancel-or-commit decision of one write, shared by the request and its worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = threading.Event()
        self.committing = False

    def check(self) -> None:
        """Raise :class:`WriteCancelled` once the request has given up."""
        if self.cancelled.is_set():
            raise WriteCancelled("the write was cancelled by the request timeout", item="indexing")

    def begin_commit(self) -> None:
        """From here on the write completes (raises :class:`WriteCancelled` if cancelled first)."""
        with self._lock:
            self.check()
            self.committing = True

    def cancel(self) -> bool:
        """Cancel unless the commit has begun; ``True`` means nothing will be written."""
        with self._lock:
            if self.committing:
                return False
            self.cancelled.set()
            return True


class PooledEncoder:
    """An encoder stand-in for a write: each chunk of ``chunk`` inputs is one job on the model thread.

    The model thread runs jobs in arrival order, so a search queued while a long write
    embeds waits for one chunk, not for the whole write. A cancelled ``job`` stops at the
    next chunk.
    """

    def __init__(self, encoder: Any, pool: ThreadPoolExecutor, chunk: int, job: WriteJob | None = None) -> None:
        self.encoder, self.pool, self.chunk, self.job = encoder, pool, max(1, int(chunk)), job
        self.name, self.dim = encoder.name, encoder.dim

    def _run(self, fn: Callable[..., np.ndarray], inputs: list[Any]) -> np.ndarray:
        out = []
        for s in range(0, len(inputs), self.chunk):
            if self.job is not None:
                self.job.check()
            out.append(self.pool.submit(fn, inputs[s : s + self.chunk], show_progress=False).result())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_text(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._run(self.encoder.encode_text, list(texts))

    def encode_image(self, images: list[Any], show_progress: bool = False) -> np.ndarray:
        return self._run(self.encoder.encode_image, list(images))


class Workers:
    """The thread pools: ``model`` (1 thread, the encoder), ``store`` (searches and writes),
    ``generate`` (1 thread: LLM answers, captions).
    """

    def __init__(self, store_threads: int = 4) -> None:
        self.model = ThreadPoolExecutor(1, thread_name_prefix="mindgap-model")
        self.store = ThreadPoolExecutor(store_threads, thread_name_prefix="mindgap-store")
        self.generate = ThreadPoolExecutor(1, thread_name_prefix="mindgap-generate")

    async def run(self, pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool, partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        for p in (self.model, self.store, self.generate):
            p.shutdown(wait=False, cancel_futures=True)


class TextBatcher:
    """Merge concurrent text-encoding requests into shared encoder calls.

    Args:
        encode: ``list[str] -> (n, d)`` array (the encoder's ``encode_text``).
        pool: the executor the encoder runs in (one thread).
        max_batch: most texts per encoder call (a single larger request still goes whole).
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], pool: ThreadPoolExecutor,
                 max_batch: int = 64) -> None:
        self.encode_fn, self.pool, self.max_batch = encode, pool, max(1, int(max_batch))
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._running = False
        self._task: asyncio.Task | None = None
        self.calls = 0
        self.requests = 0
        self.texts = 0
        self.max_seen = 0

    @property
    def mean_requests_per_call(self) -> float:
        return self.requests / self.calls if self.calls else 0.0

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` (one request) → ``(len(texts), d)``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((list(texts), fut))
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())  # keep a reference: tasks are weakly held
        return await fut

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        batch, n = [], 0
        while self._pending:
            texts, fut = self._pending[0]
            if batch and n + len(texts) > self.max_batch:
                break
            self._pending.pop(0)
            if fut.done():  # cancelled (client timeout / disconnect)
                continue
            batch.append((texts, fut))
            n += len(texts)
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                flat = [t for texts, _ in batch for t in texts]
                self.calls += 1
                self.requests += len(batch)
                self.texts += len(flat)
                self.max_seen = max(self.max_seen, len(batch))
                try:
                    vecs = await loop.run_in_executor(self.pool, self.encode_fn, flat)
                except Exception as exc:  # noqa: BLE001 - isolate the request that broke the batch
                    if len(batch) == 1:
                        if not batch[0][1].done():
                            batch[0][1].set_exception(exc)
                    else:
                        for texts, fut in batch:
                            await self._single(texts, fut)
                    continue
                s = 0
                for texts, fut in batch:
                    if not fut.done():
                        fut.set_result(vecs[s : s + len(texts)])
                    s += len(texts)
        finally:
            self._running = False

    async def _single(self, texts: list[str], fut: asyncio.Future) -> None:
        loop = asyncio.get_running_loop()
        try:
            vecs = await loop.run_in_executor(self.pool, self.encode_fn, texts)
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(vecs)

    def stats(self) -> dict[str, Any]:
        return {"encoder_calls": self.calls, "requests": self.requests, "texts": self.texts,
                "mean_requests_per_call": round(self.mean_requests_per_call, 3),
                "max_requests_in_one_call": self.max_seen, "max_batch": self.max_batch}
