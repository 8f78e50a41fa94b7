"""Encoders: one Protocol, backends behind the ``encoders`` registry.

Backends register lazily so ``import mindgap`` never imports torch.
"""

from __future__ import annotations

from typing import Any

from ..registry import encoders
from .base import BaseEncoder, Encoder, l2_normalize

encoders.register_lazy("mindgap", "mindgap.encoders.dual:_make", "mindgap's own small dual encoder (bundled name or dir), PyTorch")
encoders.register_lazy("hf", "mindgap.encoders.hf:_make", "transformers CLIPModel / VisionTextDualEncoderModel (hub id or dir)")
encoders.register_lazy("open_clip", "mindgap.encoders.open_clip:_make", "OpenCLIP <arch>/<pretrained tag or checkpoint>")
encoders.register_lazy("onnx", "mindgap.encoders.onnx:_make", "ONNX Runtime, transformers.js layout (onnx/text_model*.onnx, ...)")

DEFAULT_OFFLINE_SPEC = "mindgap:flickr8k-effnet"
DEFAULT_REAL_SPEC = "hf:openai/clip-vit-base-patch32"


def load_encoder(spec: str = DEFAULT_OFFLINE_SPEC, **options: Any) -> Encoder:
    """Build an encoder from a spec string.

    Example:
        >>> enc = load_encoder("mindgap:flickr8k-effnet")  # doctest: +SKIP
        >>> enc.encode_text(["a dog runs"]).shape  # doctest: +SKIP
        (1, 256)
    """
    return encoders.create(spec, **options)


def list_encoders() -> dict[str, str]:
    """Available encoder schemes and what they are."""
    return encoders.describe()


__all__ = ["BaseEncoder", "Encoder", "l2_normalize", "load_encoder", "list_encoders",
           "DEFAULT_OFFLINE_SPEC", "DEFAULT_REAL_SPEC"]
