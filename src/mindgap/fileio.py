"""Atomic, durable file writes: a reader (or a process killed mid-write) sees the old file or the
new one, never half of one.

The recipe (temp file in the same folder → write → fsync → ``os.replace`` → optionally fsync
the folder) is used by every store, the manifest and the server's upload folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[str], None], *, sync_dir: bool = False) -> None:
    """Produce ``path`` atomically: ``write(tmp_path)`` fills a temp file beside it, which is
    fsync-ed and renamed over ``path``. The temp file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if sync_dir:
        fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, *, sync_dir: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(data), sync_dir=sync_dir)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str)))


__all__ = ["fsync_dir", "write_atomic", "write_bytes_atomic", "write_json_atomic"]
