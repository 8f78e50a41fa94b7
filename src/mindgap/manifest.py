"""What built a store: encoder spec and dimension, text mode, index spec, fitted gap correctors.

Saved as JSON with every store (``manifest.json`` in a store directory, ``<file>.manifest.json``
beside a milvus-lite file). A query encoder that differs from ``encoder.spec`` is refused: the
classic bug of this field is a corrector fitted for encoder A applied to queries of encoder B.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import EncoderMismatch, StoreError
from .fileio import write_json_atomic

MANIFEST_VERSION = 1


@dataclass
class Manifest:
    """Store manifest.

    Attributes:
        encoder_spec: spec string of the encoder that embedded the items.
        dim: embedding dimension.
        encoder_weights: fingerprint of the encoder's weights
            (:func:`mindgap.encoders.base.weights_fingerprint`), when they are local files.
        encoder_training: what the encoder was trained on (dataset, split, image ids), when
            known — used to refuse fitting gap correctors on the encoder's training data.
        text_mode: how passages were embedded (``sentences`` mean or ``truncate``).
        index: backend/index parameters.
        gap: fitted gap correctors, name → ``to_dict()``.
        default_gap: corrector used when a search names none.
        sources: what was ingested (paths / kinds), for the record.
        lexical: the lexical side index for hybrid search (library, version, indexed fields,
            folder, fitted fusion weights), ``None`` when the store has none (:mod:`mindgap.lexical`).
    """

    encoder_spec: str
    dim: int
    encoder_training: dict[str, Any] | None = None
    encoder_weights: str | None = None
    text_mode: str = "sentences"
    index: dict[str, Any] = field(default_factory=dict)
    gap: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_gap: str = "naive"
    sources: list[str] = field(default_factory=list)
    lexical: dict[str, Any] | None = None
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    version: int = MANIFEST_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def check_encoder(self, spec: str, dim: int, weights: str | None = None) -> None:
        """Refuse a query encoder that is not the one that built the store: another spec or dim,
        or — when both are known (:func:`mindgap.encoders.base.weights_fingerprint`) — other
        weights under the same spec (a model directory retrained in place)."""
        if spec != self.encoder_spec or int(dim) != int(self.dim):
            raise EncoderMismatch(
                f"this store was built with encoder {self.encoder_spec!r} (dim {self.dim}); "
                f"refusing queries embedded with {spec!r} (dim {dim}). Re-index with the new "
                "encoder or query with the original one.",
                item="encoder",
            )
        if weights and self.encoder_weights and weights != self.encoder_weights:
            raise EncoderMismatch(
                f"this store was built with encoder {spec!r} whose weights were {self.encoder_weights}; the "
                f"weights loaded under that name now are {weights} (retrained or replaced). Their vectors do "
                "not compare: re-index with the new weights or load the original ones.",
                item="encoder",
            )

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a manifest."""
        self.updated = time.time()
        write_json_atomic(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        p = Path(path)
        if not p.is_file():
            raise StoreError("store manifest not found (is this a mindgap store?)", item=str(p))
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"corrupt store manifest ({exc})", item=str(p)) from None


def encoder_training_info(encoder: Any) -> dict[str, Any] | None:
    """What an encoder was trained on, when it records it (mindgap's own models do)."""
    cfg = getattr(encoder, "config", None)
    if isinstance(cfg, dict) and isinstance(cfg.get("training"), dict):
        data = cfg["training"].get("data", {})
        return {
            "dataset": data.get("dataset"),
            "split": data.get("split"),
            "image_ids": list(data.get("train_images", [])),
            "calib_image_ids": list(data.get("calib_images", [])),
        }
    return None
