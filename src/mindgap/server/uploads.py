"""Images posted to ``POST /items``: kept on disk under a content-addressed name, freed when no item uses them.

Files are named by the SHA-256 of their bytes, so two items with the same image share one
file. :class:`Uploads` counts, per file, the store's items that reference it (built from
the store on first use, then kept up to date by the server's writes and deletes, which run
under the store's write lock) and deletes a file when its last item is deleted. A file
being written for a request that has not committed yet is *pinned*: a concurrent delete of
its last item leaves it in place. A crash between a delete's commit and the file's removal
leaves an orphan file, never an item without its file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..fileio import write_bytes_atomic
from ..images import sniff_image_bytes
from ..types import Item, Modality

log = logging.getLogger("mindgap.server")


class Uploads:
    """The upload folder of one server and the reference count of its files.

    Args:
        folder: where uploaded images are kept.
        store: the server's store (scanned once, lazily, for the counts).
    """

    def __init__(self, folder: Path, store: Any) -> None:
        self.folder, self.store = Path(folder), store
        self._lock = threading.Lock()
        self._refs: dict[str, set[str]] | None = None  # file name -> ids of items using it
        self._pins: dict[str, int] = {}

    def _name(self, uri: str | None) -> str | None:
        """The file name of ``uri`` when it lies in the upload folder, else ``None``."""
        if not uri:
            return None
        p = Path(uri)
        return p.name if p.parent == self.folder else None

    def _counts(self) -> dict[str, set[str]]:
        if self._refs is None:
            refs: dict[str, set[str]] = {}
            ids, _ = self.store.vectors(Modality.IMAGE)
            for it in self.store.get(list(ids)) if ids else []:
                name = self._name(it.uri) if it is not None else None
                if name:
                    refs.setdefault(name, set()).add(it.id)
            self._refs = refs
        return self._refs

    def save(self, data: bytes) -> Path:
        """Keep ``data`` (durable before returning) and pin it until :meth:`unpin`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fmt = sniff_image_bytes(data) or "bin"
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:40]}.{fmt}"
        with self._lock:
            self._pins[path.name] = self._pins.get(path.name, 0) + 1
            if not (path.exists() and path.stat().st_size == len(data)):
                write_bytes_atomic(path, data, sync_dir=True)
        return path

    def unpin(self, paths: Iterable[Path | str]) -> None:
        with self._lock:
            for p in paths:
                name = Path(p).name
                left = self._pins.get(name, 0) - 1
                if left > 0:
                    self._pins[name] = left
                else:
                    self._pins.pop(name, None)

    def added(self, items: Iterable[Item]) -> None:
        """Items just committed (call under the store's write lock)."""
        with self._lock:
            if self._refs is None:
                return  # counted from the store when first needed
            for it in items:
                name = self._name(it.uri) if it.modality == Modality.IMAGE else None
                if name:
                    self._refs.setdefault(name, set()).add(it.id)

    def deleted(self, items: Iterable[Item | None]) -> list[str]:
        """Items just deleted (call under the store's write lock); removes files no item uses. Returns their names."""
        freed = []
        with self._lock:
            refs = self._counts()
            for it in items:
                name = self._name(it.uri) if it is not None and it.modality == Modality.IMAGE else None
                if not name:
                    continue
                users = refs.get(name, set())
                users.discard(it.id)
                if users:
                    continue
                refs.pop(name, None)
                if self._pins.get(name):
                    continue  # a request is about to commit an item using it
                try:
                    (self.folder / name).unlink(missing_ok=True)
                    freed.append(name)
                except OSError as exc:  # pragma: no cover - a permission problem: keep serving
                    log.warning("could not remove the unused upload %s: %s", name, exc)
        return freed


__all__ = ["Uploads"]
