"""The ingestion pipeline behind :meth:`mindgap.Retriever.index`.

Stages, per batch of ``batch_size`` items::

    source iterator ─▶ batch ─▶ store.has(ids)  ─▶ decode images ─▶ encode ─▶ store.add (one atomic commit)
                                (skip present)     (thread pool,     (main thread)
                                                    runs ahead)

Image decoding (file read, JPEG/PNG decode, RGB conversion — Pillow releases the GIL while
decoding) runs in a thread pool for up to ``prefetch`` batches ahead of the encoder, so on a
2-core machine one core decodes while the other(s) encode; the queue is bounded by
``prefetch`` so memory stays flat. Batches commit strictly in source order, each with one
``store.add``: a killed process leaves exactly the batches that committed, and re-running
skips every id already present (resume). If the source iterator raises, the batches it had
already produced are committed before the error propagates; an error while encoding or
writing (or Ctrl-C) drops the uncommitted batches. The progress bar shows items/s and
running counts.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import ImageError, InputError
from ..images import load_image
from ..text import printable, unicode_problem
from ..types import Item, Modality
from .report import IngestReport

if TYPE_CHECKING:  # pragma: no cover
    from ..retriever import Retriever


def default_workers() -> int:
    """Decode threads: one per core, at most 4 (decoding is cheap next to encoding)."""
    return max(1, min(4, os.cpu_count() or 1))


def decode_image(it: Item) -> Any:
    """Decode one image item → RGB ``PIL.Image``, or the :class:`ImageError` (returned, not raised)."""
    if not it.uri:
        return ImageError("image item has no file path (uri)", item=it.id)
    try:
        return load_image(it.uri, name=it.uri)
    except ImageError as exc:
        return exc


def item_unicode_problem(it: Item) -> str | None:
    """The first field of ``it`` (id, text, uri, metadata) that is not valid Unicode, as ``"field: why"``."""
    return (unicode_problem(it.id, "id") or unicode_problem(it.text, "text") or unicode_problem(it.uri, "uri")
            or unicode_problem(it.metadata, "metadata"))


def _batches(items: Iterable[Item | tuple[str, str]], size: int, report: IngestReport, bar: Any,
             seen: set[str]) -> Iterator[list[Item]]:
    batch: list[Item] = []
    for it in items:
        if isinstance(it, tuple):  # (source, reason) skip record from ingest
            report.skipped.append((printable(str(it[0])), printable(str(it[1]))))
            bar.update(1)
            continue
        bad = item_unicode_problem(it)
        if bad:  # every source passes here: one policy for text that cannot be stored (skip, report)
            report.skipped.append((printable(it.id), bad))
            bar.update(1)
            continue
        if it.id in seen:  # the same id twice in one run: the first one wins
            report.mark_present(it)
            bar.update(1)
            continue
        seen.add(it.id)
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_index(retr: Retriever, items: Iterable[Item | tuple[str, str]], *, batch_size: int = 64,
              progress: bool = True, total: int | None = None, source: str | None = None,
              workers: int | None = None, prefetch: int = 2) -> IngestReport:
    """Embed and add ``items`` in committed batches (see the module docstring)."""
    from tqdm.auto import tqdm

    if int(batch_size) < 1:
        raise InputError("batch_size must be >= 1", item="batch_size")
    report = IngestReport()
    retr.encoder  # noqa: B018 - load the model before the clock starts: the rate measures ingestion
    t0 = time.perf_counter()
    recorded = False

    def record_source() -> None:
        # the manifest (encoder spec, dim, sources) is written before the first commit, and only
        # then: a run that commits nothing leaves a new store without one
        nonlocal recorded
        if not recorded:
            m = retr.manifest
            if source and source not in m.sources:
                m.sources.append(source)
                retr.store.save_manifest(m)
            recorded = True

    if retr.store.manifest is not None:
        record_source()
    bar = tqdm(total=total, unit="item", desc="index", disable=not progress, smoothing=0.1, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="mindgap-decode")
    pending: deque[tuple[list[Item], list[Item], dict[str, Future]]] = deque()

    def commit(batch: list[Item], fresh: list[Item], futs: dict[str, Future]) -> None:
        if fresh:
            decoded = {i: f.result() for i, f in futs.items()}
            good, vecs, skipped = retr.embed_items(fresh, decoded=decoded)
            report.skipped.extend(skipped)
            if good:
                record_source()
                # ids were checked when the batch was formed; stores take one writer at a time,
                # so every one of them is new here
                retr.store.add(good, vecs)
                retr.lexical_added(good)  # the side index follows the committed batch (a no-op without one)
                for it in good:
                    report.added[it.modality.value] += 1
        bar.set_postfix_str(f"text {report.added['text']} image {report.added['image']} "
                            f"present {report.already_present} skipped {len(report.skipped)}", refresh=False)
        bar.update(len(batch))

    batches = _batches(items, int(batch_size), report, bar, set())
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except Exception:
                while pending:  # the source failed: commit what it already gave (whole batches), then raise
                    commit(*pending.popleft())
                raise
            present = retr.store.has([it.id for it in batch])
            fresh = [it for it in batch if it.id not in present]
            for it in batch:
                if it.id in present:
                    report.mark_present(it)
            futs = {it.id: pool.submit(decode_image, it) for it in fresh if it.modality == Modality.IMAGE}
            pending.append((batch, fresh, futs))
            while len(pending) > max(0, int(prefetch)):
                commit(*pending.popleft())
        while pending:
            commit(*pending.popleft())
    finally:
        for _, _, futs in pending:
            for f in futs.values():
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report.seconds = time.perf_counter() - t0
    return report
