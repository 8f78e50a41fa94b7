"""Knowledge in: sources → :class:`~mindgap.types.Item` streams → a store.

Source kinds, detected from the path (``kind=`` overrides):

==========  ====================================================  =========================
kind        what                                                  item ids
==========  ====================================================  =========================
``mmqa``    a folder with ``subset_dev100/`` (the MMQA dev slice)  MMQA doc ids
``captions`` a folder with ``captions.jsonl`` (Flickr8k layout)    ``image_id`` (``#0`` texts)
``jsonl``   a ``.jsonl`` / ``.jsonl.gz`` file, one item a line    the record's ``id``
``folder``  any other folder: images by extension, .txt/.md text  path relative to the folder
==========  ====================================================  =========================

A source that does not exist as a path but names a folder of the shared data directory
(``mmqa``, ``flickr8k_224``) is taken from there.

:func:`iter_source` yields items and ``(source, reason)`` **skip records** for what cannot
be indexed (each reason names the file or line); :meth:`Retriever.index` reports the skips,
embeds the rest and commits them batch by batch (see :mod:`mindgap.ingest.pipeline`).

Re-indexing: ids are stable, so running the same source again adds only what is missing
(this is also how an interrupted run resumes). A store remembers the sources it was built
from (manifest ``sources``); indexing a *different* source into a non-empty store is
refused unless ``append=True`` (CLI ``--append``) — a typo'd ``--store`` must not silently
mix two knowledge bases. An item whose content changed under the same id is not
re-embedded: delete it first (``mindgap rm``).

Example:
    >>> from mindgap import Retriever
    >>> r = Retriever("exact:/tmp/kb")                              # doctest: +SKIP
    >>> report = r.index_source("docs/")                          # doctest: +SKIP
    >>> report.added, len(report.skipped)                         # doctest: +SKIP
    ({'text': 12, 'image': 30}, 2)
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..types import Item
from .captions import count_captions, is_caption_dir, iter_captions
from .folder import count_folder, iter_folder
from .jsonl import count_jsonl, iter_jsonl
from .mmqa import count_mmqa, is_mmqa_dir, iter_mmqa
from .report import IngestReport

if TYPE_CHECKING:  # pragma: no cover
    from ..retriever import Retriever

Skip = tuple[str, str]
SOURCE_KINDS = ("folder", "jsonl", "mmqa", "captions")


def resolve_source(source: str | Path) -> Path:
    """An existing path (absolute, resolved), else a folder of the shared data directory."""
    p = Path(source).expanduser()
    if p.exists():
        return p.resolve()
    if not p.is_absolute() and len(p.parts) == 1:
        from ..datasets import shared_data_dir

        try:
            cand = shared_data_dir() / p
        except InputError:
            cand = None
        if cand is not None and cand.exists():
            return cand.resolve()
    raise InputError("source not found (a folder, a .jsonl file, or a shared data set such as 'mmqa')",
                     item=str(source))


def detect_kind(path: Path) -> str:
    """``mmqa`` / ``captions`` / ``folder`` for folders, ``jsonl`` for ``.jsonl(.gz)`` files."""
    if path.is_dir():
        if is_mmqa_dir(path):
            return "mmqa"
        if is_caption_dir(path):
            return "captions"
        return "folder"
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    raise InputError("cannot ingest this file: expected a folder or a .jsonl / .jsonl.gz file", item=str(path))


def _check_kind(path: Path, kind: str | None) -> str:
    if kind in (None, "", "auto"):
        return detect_kind(path)
    if kind not in SOURCE_KINDS:
        raise InputError(f"unknown source kind {kind!r}; use one of: auto, {', '.join(SOURCE_KINDS)}", item="kind")
    if (kind == "jsonl") == path.is_dir():
        raise InputError(f"source kind {kind!r} needs a {'file' if kind == 'jsonl' else 'folder'}", item=str(path))
    return kind


def source_key(path: Path, kind: str, *, split: str | None = None, tables: bool = False,
               captions_as_text: bool = False) -> str:
    """How the manifest names a source: ``kind:/abs/path`` plus the options that change its content."""
    opts = [f"split={split}"] if split and kind == "captions" else []
    if tables and kind == "mmqa":
        opts.append("tables")
    if captions_as_text and kind == "captions":
        opts.append("captions_as_text")
    return f"{kind}:{path}" + (f"?{'&'.join(opts)}" if opts else "")


def iter_source(source: str | Path, *, kind: str | None = None, split: str | None = None,
                limit: int | None = None, tables: bool = False,
                captions_as_text: bool = False) -> Iterator[Item | Skip]:
    """Items and ``(source, reason)`` skip records of a source (kinds in the module docstring).

    Args:
        source: folder, ``.jsonl`` file, MMQA folder, image–caption folder or shared data-set name.
        kind: force a kind instead of detecting it.
        split: image–caption folders: only this split (``val``, ``test``, ...).
        limit: stop after this many entries (items + skip records).
        tables: MMQA: also index the 30 tables as linearised text passages.
        captions_as_text: image–caption folders: also index caption #0 as a text passage.
    """
    path = resolve_source(source)
    kind = _check_kind(path, kind)
    if kind == "mmqa":
        it: Iterator[Item | Skip] = iter_mmqa(path, tables=tables)
    elif kind == "captions":
        it = iter_captions(path, split=split, captions_as_text=captions_as_text)
    elif kind == "jsonl":
        it = iter_jsonl(path)
    else:
        it = iter_folder(path)
    return islice(it, limit) if limit is not None else it


def count_source(source: str | Path, *, kind: str | None = None, split: str | None = None,
                 limit: int | None = None, tables: bool = False, captions_as_text: bool = False) -> int:
    """How many entries :func:`iter_source` yields (for the progress bar's total)."""
    path = resolve_source(source)
    kind = _check_kind(path, kind)
    if kind == "mmqa":
        n = count_mmqa(path, tables=tables)
    elif kind == "captions":
        n = count_captions(path, split=split, captions_as_text=captions_as_text)
    elif kind == "jsonl":
        n = count_jsonl(path)
    else:
        n = count_folder(path)
    return min(n, limit) if limit is not None else n


def plan_source(source: str | Path, *, kind: str | None = None, split: str | None = None, tables: bool = False,
                captions_as_text: bool = False) -> tuple[Path, str, str]:
    """Resolve a source: ``(path, kind, manifest key)``; clear errors for bad ones, an empty one included.

    Raises:
        InputError: the source does not exist, has an unknown kind, or is empty (a JSONL file
            without a non-blank line, a folder without a visible file).
    """
    path = resolve_source(source)
    kind = _check_kind(path, kind)
    check_not_empty(path, kind)
    return path, kind, source_key(path, kind, split=split, tables=tables, captions_as_text=captions_as_text)


def check_not_empty(path: Path, kind: str) -> None:
    """Refuse a JSONL file or a folder with nothing in it, before a store is touched."""
    if kind == "jsonl" and count_jsonl(path) == 0:
        raise InputError("the file is empty: no JSONL lines to index (one JSON object per line)", item=str(path))
    if kind == "folder" and next(iter_folder(path), None) is None:
        raise InputError("the folder is empty: no files to index (images, .txt or .md)", item=str(path))


def check_append(store: Any, key: str, append: bool) -> None:
    """Refuse indexing a different source into a non-empty store without ``append``.

    Args:
        store: the open :class:`~mindgap.stores.VectorStore`.
        key: the source's manifest key (:func:`source_key`).
        append: the caller asked to add a different source.
    """
    m = store.manifest
    n = store.count()
    if append or n == 0 or m is None or key in m.sources:
        return
    have = ", ".join(s for s in m.sources if not s.startswith("deleted:")) or "items added without a recorded source"
    raise InputError(f"the store already holds {n} item(s) from {have}; re-indexing the same source adds only "
                     f"what is missing — to add a different source ({key}) pass --append", item=store.uri)


def index_source(retriever: Retriever, source: str | Path, *, kind: str | None = None, append: bool = False,
                 split: str | None = None, limit: int | None = None, tables: bool = False,
                 captions_as_text: bool = False, batch_size: int = 64, progress: bool = True,
                 workers: int | None = None, **index_options: Any) -> IngestReport:
    """Ingest a source into ``retriever``'s store (see the module docstring for the rules).

    Args:
        retriever: the :class:`~mindgap.Retriever` whose encoder and store are used.
        source / kind / split / limit / tables / captions_as_text: as in :func:`iter_source`.
        append: allow a source other than the ones the (non-empty) store was built from.
        batch_size: items per committed batch (one atomic ``store.add`` each).
        progress: show a progress bar (items/s, running counts).
        workers: image decode threads (default :func:`~mindgap.ingest.pipeline.default_workers`).
        index_options: passed to :meth:`~mindgap.Retriever.index` (``prefetch``).

    Raises:
        InputError: unknown source, or a different source into a non-empty store without ``append``.

    Returns:
        the :class:`~mindgap.ingest.report.IngestReport` (added per modality, already present,
        skipped items with reasons, seconds).
    """
    opts = {"split": split, "tables": tables, "captions_as_text": captions_as_text}
    path, kind, key = plan_source(source, kind=kind, **opts)  # an empty source is refused here
    check_append(retriever.store, key, append)
    total = count_source(path, kind=kind, limit=limit, **opts) if progress else None
    items = iter_source(path, kind=kind, limit=limit, **opts)
    return retriever.index(items, batch_size=batch_size, progress=progress, total=total, source=key,
                           workers=workers, **index_options)


__all__ = ["SOURCE_KINDS", "IngestReport", "Skip", "check_append", "check_not_empty", "count_source", "detect_kind", "index_source", "iter_source",
           "plan_source", "resolve_source", "source_key"]
