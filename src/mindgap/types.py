"""The shared vocabulary: modalities, knowledge items and search hits.

One result shape (:class:`Hit`) is used everywhere: Python API, CLI ``--json``, HTTP.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
from numpy.typing import NDArray

#: What ``Encoder.encode_image`` accepts for one image.
ImageInput = Union[str, Path, bytes, "PILImage"]  # noqa: F821 - PIL imported lazily

Array = NDArray[np.float32]


class Modality(str, enum.Enum):
    """Knowledge / query modality."""

    TEXT = "text"
    IMAGE = "image"

    @classmethod
    def parse(cls, value: "str | Modality") -> "Modality":
        """Parse ``"text"``/``"image"`` (case-insensitive) with a clear error."""
        from .errors import InputError

        if isinstance(value, Modality):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InputError(
                f"unknown modality {value!r}; expected one of: text, image", item="modality"
            ) from None


MODALITIES: tuple[Modality, ...] = (Modality.TEXT, Modality.IMAGE)


@dataclass
class Item:
    """One piece of knowledge: a text passage or an image.

    Attributes:
        id: stable identifier (unique within a store).
        modality: text or image.
        text: the passage (text items) or a caption/title (image items, optional).
        uri: where the image lives (path), for image items.
        metadata: free JSON-serialisable metadata.
    """

    id: str
    modality: Modality
    text: str | None = None
    uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modality"] = self.modality.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Item":
        return cls(
            id=str(d["id"]),
            modality=Modality.parse(d["modality"]),
            text=d.get("text"),
            uri=d.get("uri"),
            metadata=dict(d.get("metadata") or {}),
        )


@dataclass
class Hit:
    """One search result.

    Attributes:
        id: item id.
        modality: the item's modality.
        cosine: raw cosine between query and item embeddings.
        score: the corrected score the merged ranking uses.
        rank: 1-based rank in the merged list.
        modality_rank: 1-based rank within its own modality (by cosine; by cosine minus the item's
            hubness term under ``calibrated`` with ``hub > 0``; hybrid search: by cosine).
        text: passage text or caption, when stored.
        uri: image path, when stored.
        metadata: stored metadata.
    """

    id: str
    modality: Modality
    cosine: float
    score: float
    rank: int = 0
    modality_rank: int = 0
    text: str | None = None
    uri: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modality"] = self.modality.value
        return d
