"""ONNX Runtime backend: ``onnx:<dir>`` in the transformers.js / Xenova layout.

Layout (what ``mindgap export-onnx`` writes, and what Xenova/* CLIP repos ship)::

    onnx/text_model{,_quantized,_int8,_fp16}.onnx   → text_embeds (else the first output)
    onnx/vision_model{,_quantized,_int8,_fp16}.onnx → image_embeds (else the first output)
    tokenizer.json                                   loaded with ``tokenizers.Tokenizer``
    preprocessor_config.json                         shortest-edge bicubic resize, centre crop, normalise
    mindgap_onnx.json                                optional: dim, max_text_tokens, pad token

Spec: ``onnx:/path/dir`` or with options in a query string,
``onnx:/path/dir?variant=int8&num_threads=2``; keyword options to
:func:`~mindgap.encoders.load_encoder` win over the query string.

Options: ``variant`` — ``"fp32"`` (default), ``"int8"`` (``*_int8.onnx``, else
``*_quantized.onnx``), ``"quantized"`` (the reverse order) or ``"fp16"``; ``num_threads``
(ONNX Runtime intra-op threads); ``batch_size``; ``show_progress``; ``providers`` (ONNX
Runtime execution providers, default CPU); ``spin`` (``1``: ONNX Runtime's threads busy-wait
between runs, its own default; mindgap turns that off, see :class:`OnnxEncoder`).

The maximum text length is read from ``mindgap_onnx.json`` (written at export), else the
tokenizer config's ``model_max_length`` / ``config.json``, else 77 (CLIP).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from ..errors import InputError, MissingDependency, ModelLoadError, SpecError
from .base import BaseEncoder
from .dual_model import CLIP_MEAN, CLIP_STD, preprocess_images

VARIANT_SUFFIXES = {
    "fp32": [""], "int8": ["_int8", "_quantized"], "quantized": ["_quantized", "_int8"],
    "uint8": ["_uint8", "_quantized"], "fp16": ["_fp16"],
}
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_NP_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
             "tensor(float16)": np.float16}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read JSON ({exc})", item=str(path)) from None


def find_graph(root: Path, part: str, variant: str) -> Path:
    """``onnx/<part><suffix>.onnx`` (or at the top level) for a variant; clear error if absent."""
    if variant not in VARIANT_SUFFIXES:
        raise SpecError(f"unknown ONNX variant {variant!r}; use one of {', '.join(VARIANT_SUFFIXES)}", item=variant)
    for suffix in VARIANT_SUFFIXES[variant]:
        for sub in ("onnx", "."):
            p = root / sub / f"{part}{suffix}.onnx"
            if p.is_file():
                return p
    have = sorted(p.name for p in root.glob("**/*.onnx"))
    raise ModelLoadError(f"no {part} graph for variant {variant!r} (found: {', '.join(have) or 'no .onnx files'})",
                         item=str(root))


class OnnxEncoder(BaseEncoder):
    """Dual encoder run with ONNX Runtime from a transformers.js-layout directory.

    Args:
        path: the directory.
        name: spec recorded in manifests (default ``onnx:<path>`` plus the variant).
        variant: which graphs to load (see module doc).
        num_threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).
        batch_size: default batch size.
        show_progress: progress bar policy.
        providers: ONNX Runtime execution providers (default ``["CPUExecutionProvider"]``).
        spin: let ONNX Runtime's intra-op threads busy-wait between runs (its default). Off here:
            numpy's BLAS threads do the same after a store scan, and the two pools slowed each
            other. Measured on 2 cores (benchmarks/results/query_loop.md), one query text
            encoded and searched at a time (p50): 8.0 → 4.7 ms at 10K items and 16.5 → 8.6 ms
            at 100K. On a 2K-item store spinning is faster (2.9 ms against 4.1 ms): ``spin=1``.
            A batch of 192 texts encoded as fast either way.
    """

    def __init__(self, path: str | Path, *, name: str | None = None, variant: str = "fp32",
                 num_threads: int | None = None, batch_size: int = 32, show_progress: bool | None = None,
                 providers: list[str] | None = None, spin: bool = False) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependency(exc.name or "onnxruntime", "onnx") from None

        root = Path(path).expanduser()
        if not root.is_dir():
            raise SpecError("no such ONNX model directory", item=str(path))
        variant = (variant or "fp32").lower()
        super().__init__(name or f"onnx:{path}" + ("" if variant == "fp32" else f"?variant={variant}"),
                         batch_size=batch_size, show_progress=show_progress)
        self.path, self.variant = root, variant
        self.meta = _read_json(root / "mindgap_onnx.json")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.spin = bool(spin)
        if not self.spin:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads:
            opts.intra_op_num_threads = int(num_threads)
            opts.inter_op_num_threads = 1
        prov = providers or ["CPUExecutionProvider"]
        self.text_graph, self.vision_graph = find_graph(root, "text_model", variant), find_graph(root, "vision_model", variant)
        try:
            self.text_sess = ort.InferenceSession(str(self.text_graph), opts, providers=prov)
            self.vision_sess = ort.InferenceSession(str(self.vision_graph), opts, providers=prov)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(f"ONNX Runtime cannot load the graphs ({str(exc).splitlines()[0][:300]})",
                                 item=str(root)) from None
        self._text_inputs = {i.name: i for i in self.text_sess.get_inputs()}
        unknown = [n for n in self._text_inputs if n not in TEXT_INPUTS]
        if "input_ids" not in self._text_inputs or unknown:
            raise ModelLoadError(f"text graph has unsupported inputs {list(self._text_inputs)}", item=str(self.text_graph))
        self._text_out = self._output_name(self.text_sess, "text_embeds")
        self._image_out = self._output_name(self.vision_sess, "image_embeds")
        self._pixel = self.vision_sess.get_inputs()[0]

        if not (root / "tokenizer.json").is_file():
            raise ModelLoadError("missing tokenizer.json", item=str(root))
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.max_text_tokens = self._max_tokens(root)
        shape = self._text_inputs["input_ids"].shape
        seq = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None  # a fixed-length graph
        if seq:
            self.max_text_tokens = min(self.max_text_tokens, seq)
        pad_id = self._pad_id(root)
        self.tokenizer.enable_truncation(max_length=self.max_text_tokens)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self._pad_token or "[PAD]", length=seq)
        self._image_setup(_read_json(root / "preprocessor_config.json"))
        out_dim = self.text_sess.get_outputs()[0].shape[-1]
        self.dim = int(self.meta.get("dim") or (out_dim if isinstance(out_dim, int) else 0)
                       or self._encode_text_batch(["a"]).shape[1])

    @staticmethod
    def _output_name(sess: Any, preferred: str) -> str:
        names = [o.name for o in sess.get_outputs()]
        return preferred if preferred in names else names[0]

    def _max_tokens(self, root: Path) -> int:
        if self.meta.get("max_text_tokens"):
            return int(self.meta["max_text_tokens"])
        cfg = _read_json(root / "config.json")
        n = int(cfg.get("text_config", cfg).get("max_position_embeddings", 77) or 77)
        tok_max = _read_json(root / "tokenizer_config.json").get("model_max_length")
        return min(n, int(tok_max)) if isinstance(tok_max, (int, float)) and 0 < tok_max < 100_000 else n

    def _pad_id(self, root: Path) -> int:
        self._pad_token = self.meta.get("pad_token")
        if self.meta.get("pad_token_id") is not None:
            return int(self.meta["pad_token_id"])
        tok = _read_json(root / "tokenizer_config.json").get("pad_token")
        tok = tok.get("content") if isinstance(tok, dict) else tok
        if tok and self.tokenizer.token_to_id(tok) is not None:
            self._pad_token = tok
            return int(self.tokenizer.token_to_id(tok))
        pad = self.tokenizer.padding or {}
        self._pad_token = pad.get("pad_token")
        return int(pad.get("pad_id", 0))

    def _image_setup(self, pp: dict[str, Any]) -> None:
        crop = pp.get("crop_size") or pp.get("size") or {}
        static = self._pixel.shape[-1] if isinstance(self._pixel.shape[-1], int) else None
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        self.image_size = int(crop.get("height") or crop.get("shortest_edge") or static or self.meta.get("image_size") or 224)
        size = pp.get("size") or {}
        self.resize_to = int(size.get("shortest_edge") or self.image_size) if isinstance(size, dict) else int(size)
        self.do_crop = bool(pp.get("do_center_crop", True))
        self.mean = pp.get("image_mean", CLIP_MEAN) if pp.get("do_normalize", True) else [0.0, 0.0, 0.0]
        self.std = pp.get("image_std", CLIP_STD) if pp.get("do_normalize", True) else [1.0, 1.0, 1.0]
        self.rescale = float(pp.get("rescale_factor", 1 / 255)) * 255.0 if pp.get("do_rescale", True) else 255.0

    def _preprocess(self, images: list[Any]) -> np.ndarray:
        from PIL import Image

        if self.resize_to != self.image_size and self.do_crop:
            resized = []
            for im in images:  # shortest edge → resize_to, then preprocess_images centre-crops
                w, h = im.size
                s = self.resize_to / min(w, h)
                resized.append(im.resize((max(self.image_size, round(w * s)), max(self.image_size, round(h * s))),
                                         Image.BICUBIC))
            images = [_crop(im, self.image_size) for im in resized]
        px = preprocess_images(images, self.image_size, self.mean, self.std)
        if self.rescale != 1.0:  # rescale_factor other than 1/255
            m = np.asarray(self.mean, np.float32)[:, None, None]
            s = np.asarray(self.std, np.float32)[:, None, None]
            px = ((px * s + m) * self.rescale - m) / s
        return px

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer.encode_batch(texts)
        arrays = {"input_ids": [e.ids for e in enc], "attention_mask": [e.attention_mask for e in enc],
                  "token_type_ids": [e.type_ids for e in enc]}
        feed = {n: np.asarray(arrays[n], dtype=_NP_TYPES.get(i.type, np.int64)) for n, i in self._text_inputs.items()}
        return np.asarray(self.text_sess.run([self._text_out], feed)[0], dtype=np.float32)

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:
        px = self._preprocess(images).astype(_NP_TYPES.get(self._pixel.type, np.float32))
        return np.asarray(self.vision_sess.run([self._image_out], {self._pixel.name: px})[0], dtype=np.float32)


def _crop(im: Any, size: int) -> Any:
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def parse_spec(rest: str) -> tuple[str, dict[str, Any]]:
    """``/dir?variant=int8&num_threads=2&spin=1`` → ``("/dir", {"variant": "int8", "num_threads": 2, "spin": True})``."""
    path, _, query = rest.partition("?")
    opts: dict[str, Any] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        if k in {"num_threads", "batch_size"}:
            try:
                opts[k] = int(v)
            except ValueError:
                raise SpecError(f"{k} must be an integer, got {v!r}", item=k) from None
        elif k == "variant":
            opts[k] = v
        elif k == "spin":
            if v.strip().lower() not in {"0", "1", "true", "false", "yes", "no"}:
                raise SpecError(f"spin must be 0 or 1, got {v!r}", item=k)
            opts[k] = v.strip().lower() in {"1", "true", "yes"}
        else:
            raise SpecError(f"unknown onnx option {k!r} (known: variant, num_threads, batch_size, spin)", item=k)
    if not path.strip():
        raise InputError("onnx: needs a directory, e.g. onnx:/models/clip-onnx", item="onnx:")
    return path.strip(), opts


def _make(rest: str, **options: Any) -> OnnxEncoder:
    """``onnx:<dir>[?variant=int8&num_threads=N&spin=0|1]``."""
    path, opts = parse_spec(rest)
    opts.update({k: v for k, v in options.items() if v is not None})
    device = str(opts.pop("device", None) or "cpu")
    if device.startswith("cuda") and "providers" not in opts:
        opts["providers"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    variant = str(opts.get("variant", "fp32")).lower()
    name = f"onnx:{path}" + ("" if variant == "fp32" else f"?variant={variant}")
    return OnnxEncoder(path, name=name, **opts)
