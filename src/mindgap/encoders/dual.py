"""PyTorch backend for mindgap's own dual-encoder layout (see :mod:`.dual_model`).

Spec: ``mindgap:<name-or-dir>`` — a bundled model name (``flickr8k-effnet``, the offline
default; ``flickr8k-small``, the previous one) or a directory; ``hf:<dir>`` also dispatches here when the directory holds a
``mindgap_model.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError
from ..registry import encoders
from .base import BaseEncoder
from .dual_model import CLIP_MEAN, CLIP_STD, DualEncoderModel, preprocess_images

#: Models that ship inside the package (trained here by ``mindgap train``).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_OFFLINE_MODEL = "flickr8k-effnet"
DEFAULT_OFFLINE_SPEC = f"mindgap:{DEFAULT_OFFLINE_MODEL}"


def resolve_model_dir(name: str) -> Path:
    """Bundled model name or directory → directory (clear error otherwise)."""
    name = name or DEFAULT_OFFLINE_MODEL
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    b = BUNDLED_DIR / name
    if b.is_dir():
        return b
    avail = sorted(d.name for d in BUNDLED_DIR.iterdir() if d.is_dir()) if BUNDLED_DIR.is_dir() else []
    raise SpecError(
        f"no mindgap model {name!r}: not a directory and not a bundled model "
        f"(bundled: {', '.join(avail) or 'none'}); train one with `mindgap train --out DIR`",
        item=name,
    )


class DualTorchEncoder(BaseEncoder):
    """Encoder over a mindgap dual-encoder directory, run with PyTorch (CPU or CUDA)."""

    def __init__(self, path: str | Path, *, name: str | None = None, device: str | None = None,
                 batch_size: int = 64, show_progress: bool | None = None, num_threads: int | None = None) -> None:
        import torch
        from transformers import AutoTokenizer

        super().__init__(name or f"mindgap:{path}", batch_size=batch_size, show_progress=show_progress)
        self.path = Path(path)
        if num_threads:
            torch.set_num_threads(num_threads)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.config, self.image_tower, self.text_tower, self.logit_scale = DualEncoderModel.load(self.path)
        self.image_tower.to(self.device)
        self.text_tower.to(self.device)
        tok_src = self.path if (self.path / "tokenizer.json").exists() else self.config["text"]["base"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(tok_src))
        self.dim = int(self.config["embed_dim"])
        self.max_text_tokens = int(self.config["text"].get("max_tokens", 128))
        self.image_size = int(self.config["image_size"])
        self.mean = self.config.get("image_mean", CLIP_MEAN)
        self.std = self.config.get("image_std", CLIP_STD)

    @property
    def temperature(self) -> float:
        return float(np.exp(-self.logit_scale.item()))

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt")
        with torch.inference_mode():
            out = self.text_tower(**{k: v.to(self.device) for k, v in tok.items()})
        return out.float().cpu().numpy()

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:
        import torch

        px = torch.from_numpy(preprocess_images(images, self.image_size, self.mean, self.std)).to(self.device)
        with torch.inference_mode():
            out = self.image_tower(px)
        return out.float().cpu().numpy()


@encoders.register("mindgap", help="mindgap's own small dual encoder (bundled name or directory), PyTorch")
def _make(rest: str, **options: Any) -> DualTorchEncoder:
    path = resolve_model_dir(rest)
    return DualTorchEncoder(path, name=f"mindgap:{rest or DEFAULT_OFFLINE_MODEL}", **options)
