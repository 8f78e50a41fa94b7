"""transformers backend: ``hf:<hub-id-or-dir>``.

* A directory holding ``mindgap_model.json`` is mindgap's own layout and is delegated to
  :class:`~mindgap.encoders.dual.DualTorchEncoder`.
* Anything else is loaded with transformers: ``CLIPModel`` for ``model_type == "clip"``,
  ``VisionTextDualEncoderModel`` for ``"vision-text-dual-encoder"``, otherwise ``AutoModel``
  (any model exposing ``get_text_features`` / ``get_image_features``), together with its
  processor (tokenizer + image processor).

The Hub is used when reachable; offline (``HF_HUB_OFFLINE=1`` or no network) a model that
is not in the local cache fails with a :class:`~mindgap.errors.ModelLoadError` telling the
user to download it and pass ``hf:/path/to/dir``. Reachability is probed once (a TCP connect
to the Hub, 3 s) before loading a hub id, so an offline machine gets that message at once
(from the local cache only) instead of after huggingface_hub's minute of retries.

Options: ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``; default CUDA when available),
``fp16`` (default: on for CUDA, off for CPU), ``batch_size``, ``show_progress``,
``num_threads`` (torch intra-op threads).

Example:
    >>> enc = load_encoder("hf:/models/clip-vit-base-patch32", device="cpu")  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingDependency, ModelLoadError, SpecError
from .base import BaseEncoder

#: model_type → transformers class name for the dual encoders we know.
MODEL_CLASSES = {"clip": "CLIPModel", "vision-text-dual-encoder": "VisionTextDualEncoderModel"}


def _looks_like_path(ref: str) -> bool:
    return ref.startswith(("/", "./", "../", "~", ".\\")) or Path(ref).expanduser().exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the Hub's host cannot be reached over TCP.

    Behind an HTTPS proxy a direct connect proves nothing, so there the answer is True and
    huggingface_hub decides.
    """
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _load_error(ref: str, exc: BaseException, local: bool, online: bool = True) -> ModelLoadError:
    if local:
        return ModelLoadError(f"cannot load the model directory ({_first_line(exc)})", item=ref)
    where = "the Hugging Face Hub or the local cache" if online else "the local cache (the Hub is unreachable)"
    return ModelLoadError(
        f"cannot load {ref!r} from {where} ({_first_line(exc)}). "
        "If this machine is offline (or HF_HUB_OFFLINE=1 is set), download the model on a connected "
        f"machine, e.g. `huggingface-cli download {ref} --local-dir DIR`, copy DIR here and pass "
        "`hf:/path/to/DIR`",
        item=ref,
    )


def _features(out: Any) -> Any:
    """``get_*_features`` returns a tensor (transformers 4) or an output object (5)."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out


class HFClipEncoder(BaseEncoder):
    """A transformers CLIP-family dual encoder (CPU or CUDA; fp16 on GPU).

    Args:
        ref: hub id (``openai/clip-vit-base-patch32``) or a local directory.
        name: spec recorded in manifests (default ``hf:<ref>``).
        device: torch device; default CUDA when available, else CPU.
        fp16: run in half precision; default on for CUDA, off for CPU.
        batch_size: default batch size.
        show_progress: progress bar policy (see :class:`BaseEncoder`).
        num_threads: torch intra-op threads (CPU).
    """

    def __init__(self, ref: str, *, name: str | None = None, device: str | None = None, fp16: bool | None = None,
                 batch_size: int = 32, show_progress: bool | None = None, num_threads: int | None = None) -> None:
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependency(exc.name or "transformers", "torch") from None

        super().__init__(name or f"hf:{ref}", batch_size=batch_size, show_progress=show_progress)
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.ref = ref
        local = _looks_like_path(ref)
        src = str(Path(ref).expanduser()) if local else ref
        if local and not Path(src).is_dir():
            raise SpecError("no such model directory", item=ref)
        self.source = src
        online = local or hub_reachable()
        kw = {} if online else {"local_files_only": True}  # offline: the cache only, no retries
        bar = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar per load
        try:
            config = transformers.AutoConfig.from_pretrained(src, **kw)
            self.model_type = str(getattr(config, "model_type", ""))
            cls = getattr(transformers, MODEL_CLASSES.get(self.model_type, "AutoModel"))
            model = cls.from_pretrained(src, **kw)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(ref, exc, local, online) from None
        finally:
            if bar:
                transformers.utils.logging.enable_progress_bar()
        if not (hasattr(model, "get_text_features") and hasattr(model, "get_image_features")):
            raise ModelLoadError(f"model type {self.model_type!r} is not a text–image dual encoder", item=ref)
        self.tokenizer, self.image_processor = self._load_processor(src, ref, local, kw)

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.fp16 = (self.device.type == "cuda") if fp16 is None else bool(fp16)
        self.dtype = torch.float16 if self.fp16 else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.config = config
        params = inspect.signature(model.get_text_features).parameters
        self._text_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in params]
        self.max_text_tokens = self._max_tokens(config)
        self.dim = int(getattr(config, "projection_dim", 0) or self._probe_dim())

    @staticmethod
    def _load_processor(src: str, ref: str, local: bool, kw: dict[str, Any]) -> tuple[Any, Any]:
        import transformers

        tok = imp = None
        try:
            proc = transformers.AutoProcessor.from_pretrained(src, **kw)
            tok = getattr(proc, "tokenizer", None)
            imp = getattr(proc, "image_processor", None)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        try:
            tok = tok or transformers.AutoTokenizer.from_pretrained(src, **kw)
            imp = imp or transformers.AutoImageProcessor.from_pretrained(src, **kw)
        except (OSError, ValueError, KeyError) as exc:
            raise _load_error(ref, exc, local, not kw) from None
        return tok, imp

    def _max_tokens(self, config: Any) -> int:
        text_cfg = getattr(config, "text_config", config)
        n = int(getattr(text_cfg, "max_position_embeddings", 77) or 77)
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 100_000:
            n = min(n, tok_max)
        return n

    def _probe_dim(self) -> int:
        return int(self._encode_text_batch(["a"]).shape[1])

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_text_tokens,
                             return_tensors="pt")
        inputs = {k: tok[k].to(self.device) for k in self._text_keys if k in tok}
        with torch.inference_mode():
            out = _features(self.model.get_text_features(**inputs))
        return out.float().cpu().numpy()

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:
        import torch

        px = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            out = _features(self.model.get_image_features(pixel_values=px.to(self.device, self.dtype)))
        return out.float().cpu().numpy()


def _make(rest: str, **options: Any) -> BaseEncoder:
    """``hf:<hub-id-or-dir>``; empty → the default real model (ViT-B/32)."""
    from . import DEFAULT_REAL_SPEC

    ref = rest.strip() or DEFAULT_REAL_SPEC.partition(":")[2]
    path = Path(ref).expanduser()
    if (path / "mindgap_model.json").is_file():
        from .dual import DualTorchEncoder

        options.pop("fp16", None)
        return DualTorchEncoder(path, name=f"hf:{ref}", **options)
    return HFClipEncoder(ref, **options)
