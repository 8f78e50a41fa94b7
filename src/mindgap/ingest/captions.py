"""Image–caption folders in the shared ``captions.jsonl`` layout (Flickr8k, MMQA images).

Each record becomes one **image** item, id = its ``image_id`` (the same ids
:mod:`mindgap.eval.benchmarks` uses), caption #0 stored as the image's text (display,
text-only RAG generators — it is not embedded), all captions, the split and the
record's other fields kept as metadata. With ``captions_as_text=True`` caption #0 is
also indexed as a **text** passage with id ``"{image_id}#0"`` (the benchmark's passage
id), which builds the mixed text + image store the gap demos use.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..datasets import load_caption_set
from ..types import Item, Modality

Skip = tuple[str, str]


def is_caption_dir(path: Path) -> bool:
    return (path / "captions.jsonl").is_file()


def count_captions(root: Path, *, split: str | None = None, captions_as_text: bool = False) -> int:
    n = len(load_caption_set(root, split=split))
    return 2 * n if captions_as_text else n


def iter_captions(root: str | Path, *, split: str | None = None,
                  captions_as_text: bool = False) -> Iterator[Item | Skip]:
    """Image items (and optionally caption passages) of a ``captions.jsonl`` folder, sorted by id."""
    for r in load_caption_set(Path(root).resolve(), split=split):
        p = Path(r.path).resolve()
        caps = [c.strip() for c in r.captions if c and c.strip()]
        if not p.is_file():
            yield r.image_id, f"image file not found ({p})"
        else:
            meta = {"image_id": r.image_id, "split": r.split, "captions": caps, **r.extra}
            yield Item(id=r.image_id, modality=Modality.IMAGE, uri=str(p), text=caps[0] if caps else None,
                       metadata=meta)
        if captions_as_text:
            if not caps:
                yield f"{r.image_id}#0", "no caption to index as text"
                continue
            yield Item(id=f"{r.image_id}#0", modality=Modality.TEXT, text=caps[0],
                       metadata={"image_id": r.image_id, "split": r.split, "caption_index": 0})
