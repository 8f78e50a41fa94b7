"""Image–caption sets in the shared ``captions.jsonl`` layout (Flickr8k, MMQA images).

Layout (see ../shared/data/README.md): a folder with ``images/`` and ``captions.jsonl``,
one JSON object per image: ``{"image": "images/…", "captions": [...], "split": "...",
"image_id": "..."}``, paths relative to the folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError


@dataclass
class CaptionedImage:
    """One image with its captions."""

    image_id: str
    path: Path
    captions: list[str]
    split: str
    extra: dict[str, Any] = field(default_factory=dict)


def shared_data_dir() -> Path:
    """Locate the shared data folder.

    Order: ``$MINDGAP_DATA``; ``../shared/data`` from the current directory; the same
    beside the source checkout. Raises a clear error if none exists.
    """
    cands = []
    if os.environ.get("MINDGAP_DATA"):
        cands.append(Path(os.environ["MINDGAP_DATA"]))
    cands.append(Path.cwd().parent / "shared" / "data")
    cands.append(Path.cwd() / "shared" / "data")
    here = Path(__file__).resolve()
    for parent in here.parents:
        cands.append(parent.parent / "shared" / "data")
        if (parent / "pyproject.toml").exists():
            break
    for c in cands:
        if c.is_dir():
            return c
    raise InputError(
        "shared data folder not found; set MINDGAP_DATA to the folder holding flickr8k_224/ and mmqa/",
        item="MINDGAP_DATA",
    )


def load_caption_set(root: str | Path, split: str | None = None) -> list[CaptionedImage]:
    """Read a ``captions.jsonl`` image–caption set, optionally one split, sorted by id.

    Args:
        root: the folder (or a data-set name under :func:`shared_data_dir`, e.g.
            ``"flickr8k_224"``).
        split: keep only this split (``"val"``, ``"test"``, …).
    """
    root = Path(root)
    if not root.exists() and not root.is_absolute():
        root = shared_data_dir() / root
    f = root / "captions.jsonl"
    if not f.is_file():
        raise InputError("no captions.jsonl in this folder", item=str(root))
    out: list[CaptionedImage] = []
    with f.open("rb") as fh:
        for ln, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                img = rec["image"]
                caps = rec["captions"]
            except (ValueError, KeyError, UnicodeDecodeError) as exc:
                raise InputError(f"line {ln}: bad record ({exc})", item=str(f)) from None
            if split is not None and rec.get("split") != split:
                continue
            iid = str(rec.get("image_id") or Path(img).stem)
            extra = {k: v for k, v in rec.items() if k not in {"image", "captions", "split", "image_id"}}
            out.append(CaptionedImage(iid, root / img, [str(c) for c in caps], str(rec.get("split", "")), extra))
    if not out:
        raise InputError(f"no images{'' if split is None else f' in split {split!r}'}", item=str(f))
    out.sort(key=lambda r: r.image_id)
    return out
