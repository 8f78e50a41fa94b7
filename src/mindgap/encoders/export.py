"""Export a PyTorch encoder (``hf:`` / ``mindgap:``) to the ONNX layout ``onnx:<dir>`` loads.

Written layout (the transformers.js / Xenova convention plus one small mindgap file)::

    onnx/text_model.onnx            inputs input_ids, attention_mask (+ token_type_ids) → text_embeds
    onnx/vision_model.onnx          input pixel_values (N, 3, S, S) → image_embeds
    onnx/*_quantized.onnx           with int8=True (see :mod:`.quantize`): dynamic int8 weights
                                    (MatMul / Gemm, 7-bit, down-projections kept fp32); a CNN
                                    image tower is quantised statically (QDQ) when calibration
                                    images are given
    tokenizer.json                  the text tower's tokenizer
    preprocessor_config.json        CLIPImageProcessor-style resize / crop / normalise
    mindgap_onnx.json               dim, max_text_tokens, pad id, source spec, exporter

Batch (and sequence) axes are dynamic. The directory is written atomically (a temp dir
beside it, then renamed).

Example:
    >>> export_onnx("hf:/models/clip-vit-base-patch32", "/models/clip-onnx", int8=True)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError, MissingDependency, ModelLoadError
from .dual_model import CLIP_MEAN, CLIP_STD
from .quantize import calibration_batches, quantize_tower, recipe_settings

ONNX_META = "mindgap_onnx.json"
ONNX_FORMAT = "mindgap-onnx"
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def _towers(enc: Any) -> tuple[Any, Any, list[str], int, str, Any]:
    """``(text_fn(**kw), image_fn(pixel_values), text input names, image size, kind, torch module)``."""
    from .dual import DualTorchEncoder
    from .hf import HFClipEncoder, _features

    if isinstance(enc, DualTorchEncoder):
        keys = [k for k in TEXT_KEYS if k in enc.tokenizer.model_input_names] or list(TEXT_KEYS[:2])
        import torch

        owner = torch.nn.ModuleDict({"text": enc.text_tower, "image": enc.image_tower})
        return enc.text_tower, enc.image_tower, keys, enc.image_size, "mindgap-dual-encoder", owner
    if isinstance(enc, HFClipEncoder):
        m = enc.model
        size = int(getattr(getattr(enc.config, "vision_config", enc.config), "image_size", 224))

        def text_fn(**kw: Any) -> Any:
            return _features(m.get_text_features(**kw))

        def image_fn(pixel_values: Any) -> Any:
            return _features(m.get_image_features(pixel_values=pixel_values))

        return text_fn, image_fn, list(enc._text_keys), size, enc.model_type or "hf", m
    raise InputError(f"cannot export {type(enc).__name__}; export-onnx takes hf: or mindgap: specs", item=enc.name)


def _modules(text_fn: Any, image_fn: Any, keys: list[str], owner: Any):  # noqa: ANN202
    """Wrap the towers as modules with named inputs (``owner`` holds the parameters)."""
    import torch

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = owner

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):  # noqa: ANN001, ANN201
            kw = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return text_fn(**{k: kw[k] for k in keys})

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.owner = owner

        def forward(self, pixel_values):  # noqa: ANN001, ANN201
            return image_fn(pixel_values)

    return Text().eval(), Image().eval()


def _export(module: Any, args: tuple, path: Path, names: list[str], output: str, axes: dict[str, dict[int, str]],
            opset: int, dynamo: bool | None) -> str:
    """Export one tower; the dynamo exporter first, the TorchScript one as a fallback."""
    import torch

    tries = [True, False] if dynamo is None else [dynamo]
    err: Exception | None = None
    for use_dynamo in tries:
        kw: dict[str, Any] = {"input_names": names, "output_names": [output], "opset_version": opset,
                              "dynamo": use_dynamo}
        if use_dynamo:
            dims = {a: torch.export.Dim(a, min=1) for d in axes.values() for a in d.values()}
            kw["dynamic_shapes"] = {n: {i: dims[a] for i, a in axes[n].items()} for n in names}
            kw["verbose"] = False
            kw["optimize"] = True
            kw["external_data"] = False
        else:
            kw["dynamic_axes"] = dict(axes, **{output: {0: "batch"}})
        noisy = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
        level = noisy.level
        try:
            noisy.setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, args, str(path), **kw)
            return "dynamo" if use_dynamo else "torchscript"
        except Exception as exc:  # noqa: BLE001 - exporter failures are many and varied
            err = exc
            path.unlink(missing_ok=True)
        finally:
            noisy.setLevel(level)
    raise ModelLoadError(f"ONNX export failed ({type(err).__name__}: {str(err).splitlines()[0][:300]})",
                         item=str(path.name))


def export_onnx(spec: str, out_dir: str | Path, *, int8: bool = False, opset: int = 18, dynamo: bool | None = None,
                overwrite: bool = False, encoder: Any = None, calib_images: Sequence[Any] | None = None,
                int8_all: bool = False) -> Path:
    """Export ``spec`` to ``out_dir`` in the ``onnx:`` layout.

    Args:
        spec: an ``hf:`` (CLIPModel, VisionTextDualEncoderModel or mindgap layout) or
            ``mindgap:`` encoder spec.
        out_dir: output directory (must not exist or be empty unless ``overwrite``).
        int8: also write ``onnx/*_quantized.onnx`` (int8; recipe in :mod:`.quantize`).
        calib_images: with ``int8``, images (paths / bytes / PIL) to calibrate a static
            int8 quantisation of a convolutional image tower (32–64 training-like images;
            not the split you evaluate on). Transformer towers stay dynamic.
        int8_all: with ``int8``, quantise the down-projections and projection heads of dynamic
            (transformer) towers too — faster, unchecked on trained weights (see :mod:`.quantize`).
        opset: ONNX opset.
        dynamo: force the dynamo (True) or TorchScript (False) exporter; default tries
            dynamo, then TorchScript.
        overwrite: replace an existing non-empty ``out_dir``.
        encoder: an already loaded CPU encoder for ``spec`` (skips loading).

    Returns:
        The output directory.
    """
    try:
        import onnx  # noqa: F401
        import torch
    except ImportError as exc:
        raise MissingDependency(exc.name or "onnx", "onnx") from None
    from . import load_encoder

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise InputError("output exists and is not empty (pass overwrite / --force)", item=str(out))
    enc = encoder if encoder is not None else load_encoder(spec, device="cpu")
    text_fn, image_fn, keys, size, kind, owner = _towers(enc)
    text_mod, image_mod = _modules(text_fn, image_fn, keys, owner)
    tok = enc.tokenizer(["a photo of a dog", "two cats"], padding=True, return_tensors="pt")
    targs = tuple(tok[k].to("cpu") for k in keys)
    pix = torch.randn(2, 3, size, size)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        (tmp / "onnx").mkdir()
        text_axes = {k: {0: "batch", 1: "sequence"} for k in keys}
        how = _export(text_mod, targs, tmp / "onnx/text_model.onnx", keys, "text_embeds", text_axes, opset, dynamo)
        _export(image_mod, (pix,), tmp / "onnx/vision_model.onnx", ["pixel_values"], "image_embeds",
                {"pixel_values": {0: "batch"}}, opset, dynamo)
        _write_assets(enc, tmp)
        recipes = {}
        if int8:
            calib = None
            if calib_images:
                pp = json.loads((tmp / "preprocessor_config.json").read_text())
                calib = calibration_batches(calib_images, size, pp.get("image_mean", CLIP_MEAN),
                                            pp.get("image_std", CLIP_STD))
            for part in ("text_model", "vision_model"):
                recipes[part] = quantize_tower(tmp / f"onnx/{part}.onnx", tmp / f"onnx/{part}_quantized.onnx",
                                               calib if part == "vision_model" else None,
                                               keep_down_projections=not int8_all)
        meta = {"format": ONNX_FORMAT, "source": spec, "model_type": kind, "dim": int(enc.dim),
                "max_text_tokens": int(enc.max_text_tokens), "image_size": size, "text_inputs": keys,
                "pad_token_id": getattr(enc.tokenizer, "pad_token_id", None),
                "pad_token": getattr(enc.tokenizer, "pad_token", None),
                "variants": ["fp32"] + (["int8"] if int8 else []), "int8_recipes": recipes,
                "int8_settings": {k: recipe_settings(v) for k, v in recipes.items()},
                "calibration_images": len(calib_images or []) if int8 else 0, "opset": opset, "exporter": how,
                "torch": torch.__version__}
        (tmp / ONNX_META).write_text(json.dumps(meta, indent=2))
        if out.exists():  # swap: old aside, new in, old removed — never a half-written out_dir
            old = out.with_name(f".old-{out.name}-{tmp.name[-8:]}")
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_assets(enc: Any, tmp: Path) -> None:
    """tokenizer.json (+ config) and preprocessor_config.json beside the graphs."""
    from .dual import DualTorchEncoder

    if isinstance(enc, DualTorchEncoder):
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"):
            if (enc.path / name).is_file():
                shutil.copy2(enc.path / name, tmp / name)
    else:
        src = Path(enc.source)
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "preprocessor_config.json"):
            if src.is_dir() and (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        if not (tmp / "tokenizer.json").is_file():
            enc.tokenizer.save_pretrained(str(tmp))
        if not (tmp / "preprocessor_config.json").is_file():
            enc.image_processor.save_pretrained(str(tmp))
    if not (tmp / "tokenizer.json").is_file():
        raise ModelLoadError("the tokenizer has no tokenizer.json (a fast tokenizer is needed for ONNX)", item=enc.name)
    if not (tmp / "preprocessor_config.json").is_file():
        raise ModelLoadError("no preprocessor_config.json could be written", item=enc.name)
