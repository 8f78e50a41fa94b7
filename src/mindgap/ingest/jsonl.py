"""JSONL sources: one knowledge item per line.

Format (``.jsonl`` or ``.jsonl.gz``, UTF-8)::

    {"id": "doc-1", "text": "A passage ...", "title": "free metadata ..."}
    {"id": "img-7", "image": "photos/dog.jpg", "caption": "a dog", "metadata": {"k": "v"}}

* ``id`` (string or integer) is required and must be unique in the file;
* exactly one of ``text`` (a non-empty string) or ``image`` (a path, relative to the
  JSONL file's folder, or absolute) — an image's optional ``caption`` (or ``title``) is
  stored with it for display and text-only RAG generators;
* every other field, and the keys of an optional ``metadata`` object, are kept as metadata;
* an optional ``modality`` field must agree with the text/image field;
* every string (keys included) must be valid Unicode: a lone surrogate escape such as
  ``"\\ud800"`` makes the line a bad line.

Bad lines are not fatal: each becomes a ``("<file>:<line>", reason)`` skip record whose
reason names the line number, and the rest of the file is indexed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from ..text import unicode_problem
from ..types import Item, Modality

Skip = tuple[str, str]
_RESERVED = {"id", "text", "image", "metadata", "modality"}


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def count_jsonl(path: Path) -> int:
    """Non-blank lines of the file (the number of items + skip records it yields)."""
    with _open(path) as fh:
        return sum(1 for raw in fh if raw.strip())


def iter_jsonl(path: str | Path) -> Iterator[Item | Skip]:
    """Items and skip records of a JSONL knowledge file (format in the module docstring)."""
    path = Path(path).resolve()
    base = path.parent
    first_line: dict[str, int] = {}
    with _open(path) as fh:
        for ln, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{path.name}:{ln}"
            out = _parse(raw, ln, base, first_line)
            yield (where, out) if isinstance(out, str) else out


def _parse(raw: bytes, ln: int, base: Path, first_line: dict[str, int]) -> Item | str:
    """One line → an Item, or the reason (a string naming the line) it is skipped."""
    try:
        line = raw.decode("utf-8-sig" if ln == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        return f"line {ln}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    try:
        rec: Any = json.loads(line)
    except ValueError as exc:
        return f"line {ln}: not valid JSON ({getattr(exc, 'msg', exc)} at column {getattr(exc, 'colno', '?')})"
    if not isinstance(rec, dict):
        return f"line {ln}: expected a JSON object, got {type(rec).__name__}"
    bad = unicode_problem(rec, "field")
    if bad:  # a lone surrogate escape ("\ud800") parses but cannot be stored or printed
        return f"line {ln}: {bad.removeprefix('field.')}"
    rid = rec.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or not str(rid).strip():
        return f"line {ln}: missing or empty 'id' (a string or integer is required)"
    rid = str(rid).strip()
    has_t, has_i = rec.get("text") is not None, rec.get("image") is not None
    if has_t == has_i:
        which = "both 'text' and 'image'" if has_t else "neither 'text' nor 'image'"
        return f"line {ln}: id {rid!r} has {which}; give exactly one"
    if rid in first_line:
        return f"line {ln}: duplicate id {rid!r} (first on line {first_line[rid]})"
    modality = Modality.TEXT if has_t else Modality.IMAGE
    if rec.get("modality") is not None and str(rec["modality"]).strip().lower() != modality.value:
        field = "text" if has_t else "image"
        return f"line {ln}: id {rid!r} says modality {rec['modality']!r} but has the field {field!r}"
    meta = {k: v for k, v in rec.items() if k not in _RESERVED}
    extra = rec.get("metadata")
    if extra is not None:
        if not isinstance(extra, dict):
            return f"line {ln}: 'metadata' must be a JSON object"
        meta.update(extra)
    if has_t:
        text = rec["text"]
        if not isinstance(text, str):
            return f"line {ln}: 'text' of id {rid!r} must be a string"
        if not text.strip():
            return f"line {ln}: empty text for id {rid!r}"
        first_line[rid] = ln
        return Item(id=rid, modality=Modality.TEXT, text=text.strip(), metadata=meta)
    img = rec["image"]
    if not isinstance(img, str) or not img.strip():
        return f"line {ln}: 'image' of id {rid!r} must be a path string"
    p = Path(img).expanduser()
    p = (p if p.is_absolute() else base / p).resolve()
    if not p.is_file():
        return f"line {ln}: image file of id {rid!r} not found ({p})"
    caption = rec.get("caption", rec.get("title"))
    first_line[rid] = ln
    return Item(id=rid, modality=Modality.IMAGE, uri=str(p),
                text=caption if isinstance(caption, str) and caption.strip() else None, metadata=meta)
