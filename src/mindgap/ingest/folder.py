"""Folder sources: images by extension, ``.txt`` / ``.md`` files as text passages.

Ids are the path relative to the folder (POSIX separators), so re-indexing the same
folder finds every item already present. What is refused, each as a ``(path, reason)``
skip record instead of an item:

* a symlink whose target lies outside the folder (a folder handed to ``mindgap index``
  must not leak files from elsewhere), a broken symlink, a symlinked sub-folder (not
  followed: its files are indexed under their real path when that is inside the folder);
* anything that is not a regular file (FIFOs, sockets, devices — reading them could block);
* unreadable files, empty files, text files that are not UTF-8 or hold only whitespace,
  text files over :data:`MAX_TEXT_BYTES`;
* files of other types (the reason names the extension).

Hidden files and folders (names starting with ``.``) are passed over silently, as ``ls`` does.
Corrupt or truncated images are found later, when the pipeline decodes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..images import IMAGE_EXTENSIONS
from ..text import decode_text
from ..types import Item, Modality

TEXT_EXTENSIONS = {".txt", ".md"}
#: Text files larger than this are skipped (a passage store is not a book store).
MAX_TEXT_BYTES = 10_000_000

Skip = tuple[str, str]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def walk_folder(root: Path) -> Iterator[tuple[Path, Path | None, str | None]]:
    """Every visible entry under ``root`` in sorted order: ``(path, real_path, reason)``.

    ``reason`` is set (and ``real_path`` is ``None``) for entries that must be skipped
    before looking at their content (symlink escapes, broken links, linked folders).
    """
    root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        dirnames.sort()
        keep = []
        for name in dirnames:
            if name.startswith("."):
                continue
            p = d / name
            if p.is_symlink():
                target = p.resolve()
                if not _inside(target, root):
                    yield p, None, f"symlink points outside the folder (to {target})"
                else:
                    yield p, None, "symlinked folder not followed (its files are indexed under their real path)"
                continue
            keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = d / name
            if p.is_symlink():
                target = p.resolve()
                if not target.exists():
                    yield p, None, f"broken symlink (to {target})"
                elif not _inside(target, root):
                    yield p, None, f"symlink points outside the folder (to {target})"
                else:
                    yield p, target, None
            else:
                yield p, p, None


def count_folder(root: Path) -> int:
    """Number of entries :func:`iter_folder` will yield (items + skip records)."""
    return sum(1 for _ in walk_folder(root))


def iter_folder(root: str | Path) -> Iterator[Item | Skip]:
    """Items (and ``(relative path, reason)`` skip records) of a folder, in sorted order.

    Example:
        >>> items = [x for x in iter_folder("docs/") if not isinstance(x, tuple)]  # doctest: +SKIP
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError("not a folder", item=str(root))
    for p, real, reason in walk_folder(root):
        rel = p.relative_to(root).as_posix()
        if reason is not None or real is None:
            yield rel, reason or "skipped"
            continue
        yield _entry(rel, p, real)


def _entry(rel: str, p: Path, real: Path) -> Item | Skip:
    ext = p.suffix.lower()
    is_img, is_txt = ext in IMAGE_EXTENSIONS, ext in TEXT_EXTENSIONS
    if not (is_img or is_txt):
        what = f"extension {ext!r}" if ext else "no extension"
        return rel, f"not an image or a .txt/.md file ({what})"
    if not real.is_file():  # checked before any read: a FIFO would block
        return rel, "not a regular file"
    try:
        size = real.stat().st_size
    except OSError as exc:
        return rel, f"cannot read file ({exc.strerror or exc})"
    if not os.access(real, os.R_OK):
        return rel, "cannot read file (permission denied)"
    if size == 0:
        return rel, "empty file"
    meta = {"path": rel, "size": size}
    if is_img:
        return Item(id=rel, modality=Modality.IMAGE, uri=str(real), metadata=meta)
    if size > MAX_TEXT_BYTES:
        return rel, f"text file too large ({size:,} bytes > {MAX_TEXT_BYTES:,})"
    try:
        data = real.read_bytes()
    except OSError as exc:
        return rel, f"cannot read file ({exc.strerror or exc})"
    try:
        text = decode_text(data, name=rel)
    except InputError as exc:
        return rel, exc.message
    if not text.strip():
        return rel, "empty text (only whitespace)"
    return Item(id=rel, modality=Modality.TEXT, text=text.strip(), metadata=meta)
