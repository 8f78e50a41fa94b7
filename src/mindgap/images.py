"""Safe image loading shared by every encoder, the ingester and the server.

Images arrive as paths, raw bytes or PIL images. Each is fully decoded (so a truncated
file fails here, not deep inside a model), converted to RGB, and checked against a pixel
limit *before* decoding (decompression bombs: a 30000×30000 PNG is a few KB on disk but
~2.7 GB in memory). Every failure is an :class:`~mindgap.errors.ImageError` naming the item.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

from .errors import ImageError, ImageTooLarge

#: Default pixel limit (width × height); override with MINDGAP_MAX_IMAGE_PIXELS.
DEFAULT_MAX_PIXELS = 64_000_000

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


def max_pixels() -> int:
    """The pixel limit in force (environment variable or default)."""
    try:
        return int(os.environ.get("MINDGAP_MAX_IMAGE_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def describe(obj: Any, index: int | None = None) -> str:
    """A short human name for an image input (for error messages)."""
    if isinstance(obj, (str, Path)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes{'' if index is None else f' at index {index}'}>"
    name = getattr(obj, "filename", None)
    if name:
        return str(name)
    return f"<{type(obj).__name__}{'' if index is None else f' at index {index}'}>"


def load_image(obj: Any, *, name: str | None = None, limit: int | None = None):  # noqa: ANN201
    """Decode one image input into an RGB ``PIL.Image`` with all checks.

    Args:
        obj: a path, bytes, or a PIL image.
        name: how to call it in errors (defaults to the path / a byte count).
        limit: pixel limit (defaults to :func:`max_pixels`).

    Raises:
        ImageError: unreadable, corrupt, truncated or not an image.
        ImageTooLarge: more pixels than ``limit``.
    """
    from PIL import Image, UnidentifiedImageError

    label = name or describe(obj)
    limit = limit or max_pixels()
    if isinstance(obj, Image.Image):
        w, h = obj.size
        if w * h > limit:
            raise ImageTooLarge(f"image is {w}x{h} = {w*h:,} pixels, over the limit of {limit:,}", item=label)
        if w == 0 or h == 0:
            raise ImageError("image has zero width or height", item=label)
        return obj.convert("RGB") if obj.mode != "RGB" else obj
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if not p.exists():
            raise ImageError("file does not exist", item=label)
        if not p.is_file():
            raise ImageError("not a regular file", item=label)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ImageError(f"cannot read file ({exc.strerror or exc})", item=label) from None
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
    else:
        raise ImageError(
            f"unsupported image input of type {type(obj).__name__}; pass a path, bytes or a PIL image",
            item=label,
        )
    if not data:
        raise ImageError("empty file / no bytes", item=label)
    try:
        im = _open(Image, data)
    except UnidentifiedImageError:
        raise ImageError("not an image (format not recognised)", item=label) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image over PIL's decompression-bomb limit ({exc})", item=label) from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header cut short, a malformed header
        raise ImageError(f"corrupt or truncated image header ({exc})", item=label) from None
    w, h = im.size
    if w * h > limit:
        raise ImageTooLarge(
            f"image is {w}x{h} = {w*h:,} pixels, over the limit of {limit:,} "
            "(possible decompression bomb)",
            item=label,
        )
    if w == 0 or h == 0:
        raise ImageError("image has zero width or height", item=label)
    try:
        im.load()
        if getattr(im, "n_frames", 1) > 1:
            im.seek(0)
        rgb = im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt or truncated image ({exc})", item=label) from None
    return rgb


_PIL_LIMIT_LOCK = threading.Lock()


def _open(Image: Any, data: bytes) -> Any:  # noqa: N803 - the PIL module
    """``Image.open`` (header only: cheap) with PIL's own size guard lifted.

    Our check on the header size is authoritative and names the dimensions. PIL's guard
    (``Image.MAX_IMAGE_PIXELS``) is process-global, so it is lifted and restored under a
    lock: decode threads (ingestion, the server) must never race on that global, nor on
    the warnings filters (``warnings.catch_warnings`` is not thread-safe). Decoding itself
    (``load``) happens outside the lock.
    """
    with _PIL_LIMIT_LOCK:
        pil_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(io.BytesIO(data))
        finally:
            Image.MAX_IMAGE_PIXELS = pil_limit

def is_image_path(path: str | Path) -> bool:
    """True when the file extension is a known image extension."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def sniff_image_bytes(data: bytes) -> str | None:
    """Detect an image format from magic bytes (never from a file name)."""
    sigs = {
        b"\xff\xd8\xff": "jpeg",
        b"\x89PNG\r\n\x1a\n": "png",
        b"GIF87a": "gif",
        b"GIF89a": "gif",
        b"BM": "bmp",
    }
    for sig, fmt in sigs.items():
        if data.startswith(sig):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None
