"""An on-disk cache of embedding batches, so re-fitting / re-evaluating skips re-encoding.

Encoding Flickr8k's 5,000 captions of a split takes minutes on a laptop CPU; every
``caption fit`` and ``caption eval`` needs them. A batch is cached under
``<cache root>/caption-emb/<key>.npy`` where the key hashes the encoder's name, the
identity of its weights on disk (path, size, mtime of every file in its directory, when
it has one) and the exact inputs (texts, or image paths with size and mtime). Only lists
of at least :data:`MIN_ITEMS` are cached; ``MINDGAP_NO_CACHE=1`` turns caching off.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MIN_ITEMS = 100


def cache_dir() -> Path:
    """``$MINDGAP_CACHE`` or ``$XDG_CACHE_HOME/mindgap`` or ``~/.cache/mindgap``, plus ``caption-emb``."""
    env = os.environ.get("MINDGAP_CACHE")
    root = Path(env).expanduser() if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mindgap"
    return root / "caption-emb"


def _encoder_identity(encoder: Any) -> str:
    parts = [str(getattr(encoder, "name", type(encoder).__name__)), str(getattr(encoder, "dim", ""))]
    path = getattr(encoder, "path", None)
    if path is not None and Path(path).is_dir():
        for f in sorted(Path(path).iterdir()):
            if f.is_file():
                st = f.stat()
                parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


def _key(encoder: Any, kind: str, items: Sequence[Any]) -> str:
    h = hashlib.sha1()
    h.update(_encoder_identity(encoder).encode())
    h.update(kind.encode())
    for it in items:
        if kind == "image":
            p = Path(it)
            st = p.stat()
            h.update(f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}\n".encode())
        else:
            h.update(str(it).encode("utf-8") + b"\n")
    return h.hexdigest()[:24]


def _cached(encoder: Any, kind: str, items: Sequence[Any], fn: Any) -> np.ndarray:
    usable = len(items) >= MIN_ITEMS and os.environ.get("MINDGAP_NO_CACHE") != "1"
    if kind == "image":
        usable = usable and all(isinstance(x, (str, Path)) and Path(x).is_file() for x in items)
    if not usable:
        return fn(list(items))
    f = cache_dir() / f"{_key(encoder, kind, items)}.npy"
    if f.is_file():
        try:
            arr = np.load(f)
            if arr.shape == (len(items), int(encoder.dim)):
                return arr
        except (OSError, ValueError):
            pass
    arr = fn(list(items))
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, arr)
        tmp.replace(f)
    except OSError:  # a read-only cache is not an error
        pass
    return arr


def encode_texts(encoder: Any, texts: Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
    """``encoder.encode_text`` through the cache."""
    return _cached(encoder, "text", texts, lambda xs: encoder.encode_text(xs, show_progress=show_progress))


def encode_images(encoder: Any, paths: Sequence[Any], *, show_progress: bool | None = None) -> np.ndarray:
    """``encoder.encode_image`` (image files) through the cache; other inputs are not cached."""
    return _cached(encoder, "image", paths, lambda xs: encoder.encode_image(xs, show_progress=show_progress))
