"""OpenCLIP backend: ``open_clip:<arch>/<pretrained tag or checkpoint path>``.

Examples: ``open_clip:ViT-B-32/laion2b_s34b_b79k`` (a pretrained tag, downloaded by
open_clip on first use), ``open_clip:ViT-B-32/openai``, ``open_clip:ViT-B-32//models/b32.pt``
(a local checkpoint: everything after the first ``/`` is the tag or path). A bare
architecture (``open_clip:ViT-B-32``) loads random weights — only useful for timing.

``open_clip_torch`` is optional (``pip install 'mindgap[open_clip]'``); it is imported
lazily and its absence is a :class:`~mindgap.errors.MissingDependency`.

Options: ``device`` (default CUDA when available), ``fp16`` (default on CUDA only),
``batch_size``, ``show_progress``, ``num_threads``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependency, ModelLoadError, SpecError
from .base import BaseEncoder


def parse_spec(rest: str) -> tuple[str, str | None]:
    """``"ViT-B-32/laion2b_s34b_b79k"`` → ``("ViT-B-32", "laion2b_s34b_b79k")``; bare arch → tag None."""
    arch, sep, pretrained = rest.strip().partition("/")
    if not arch:
        raise SpecError("open_clip needs <arch>/<pretrained>, e.g. open_clip:ViT-B-32/laion2b_s34b_b79k",
                        item=f"open_clip:{rest}")
    return arch, (pretrained or None) if sep else None


class OpenClipEncoder(BaseEncoder):
    """An OpenCLIP model (``create_model_and_transforms`` + ``get_tokenizer``).

    Args:
        arch: model architecture name (``open_clip.list_models()``).
        pretrained: a pretrained tag (``open_clip.list_pretrained()``) or a checkpoint path.
        name: spec recorded in manifests.
        device: torch device (default CUDA when available).
        fp16: half precision (default: on for CUDA).
        batch_size: default batch size.
        show_progress: progress bar policy.
        num_threads: torch intra-op threads.
    """

    def __init__(self, arch: str, pretrained: str | None = None, *, name: str | None = None,
                 device: str | None = None, fp16: bool | None = None, batch_size: int = 32,
                 show_progress: bool | None = None, num_threads: int | None = None) -> None:
        try:
            import open_clip
            import torch
        except ImportError:
            raise MissingDependency("open_clip", "open_clip") from None

        super().__init__(name or f"open_clip:{arch}/{pretrained or ''}", batch_size=batch_size,
                         show_progress=show_progress)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.fp16 = (self.device.type == "cuda") if fp16 is None else bool(fp16)
        self.dtype = torch.float16 if self.fp16 else torch.float32
        if arch not in open_clip.list_models():
            raise SpecError(f"unknown open_clip architecture {arch!r} (see open_clip.list_models())", item=arch)
        if pretrained and ("/" in pretrained or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors"))):
            if not Path(pretrained).expanduser().is_file():
                raise SpecError("no such open_clip checkpoint file", item=pretrained)
            pretrained = str(Path(pretrained).expanduser())
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained,
                                                                         device=self.device)
            self.tokenizer = open_clip.get_tokenizer(arch)
        except (OSError, RuntimeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"cannot load open_clip {arch}/{pretrained} ({msg}); offline, download the checkpoint "
                f"elsewhere and pass open_clip:{arch}//path/to/checkpoint",
                item=f"{arch}/{pretrained}",
            ) from None
        self.model = model.to(self.device, self.dtype).eval()
        self.preprocess = preprocess
        self.max_text_tokens = int(getattr(model, "context_length", 77) or 77)
        with torch.inference_mode():
            self.dim = int(self._encode_text_batch(["a"]).shape[1])

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        # open_clip tokenizers pad / truncate to the model's context length (77 for CLIP).
        tokens = self.tokenizer(texts).to(self.device)
        with torch.inference_mode():
            out = self.model.encode_text(tokens)
        return out.float().cpu().numpy()

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:
        import torch

        px = torch.stack([self.preprocess(im) for im in images]).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.encode_image(px)
        return out.float().cpu().numpy()


def _make(rest: str, **options: Any) -> OpenClipEncoder:
    """``open_clip:<arch>/<pretrained tag or checkpoint path>``."""
    arch, pretrained = parse_spec(rest)
    return OpenClipEncoder(arch, pretrained, name=f"open_clip:{rest.strip()}", **options)
