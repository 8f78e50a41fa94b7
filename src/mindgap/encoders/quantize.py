"""int8 quantisation of exported towers with ONNX Runtime (used by :mod:`.export`).

Two recipes, chosen per graph:

* **dynamic** (default; transformers): per-channel int8 weights of MatMul / Gemm,
  activations quantised on the fly — no calibration data. Activation ranges are per
  batch, so results depend slightly on batch composition.
* **static QDQ** (convolutional towers, when calibration images are given): dynamic
  quantisation leaves convolutions in fp32 (ONNX Runtime's ``ConvInteger`` is ~4× *slower*
  than fp32 here), so a conv-dominated graph is quantised statically — per-channel int8
  weights, uint8 activations with ranges calibrated on real images; batch-independent.

Two rules keep int8 within cosine 0.98 of fp32 (measured in ``tests/test_onnx_export.py``
and ``benchmarks/results/encoders.md``):

1. **7-bit weights** (``reduce_range``). On x86 CPUs without VNNI (AVX2 / AVX-512F only —
   this machine's AMD EPYC) ONNX Runtime multiplies uint8 activations by int8 weights with
   ``VPMADDUBSW``, which adds two u8×s8 products into a *saturating int16*: 255·127·2 =
   64,770 > 32,767. Weights that use the whole int8 range therefore overflow silently —
   the graph is right, the kernel clips. It hit the bundled CNN's first convolution
   hardest (its input, normalised pixels, spans the full uint8 range, and per-channel
   scales stretch each filter to ±127): min cosine to PyTorch 0.67 on Flickr8k test images
   and mean 0.967, while the same QDQ graph run unfused (``ORT_DISABLE_ALL``, plain float
   arithmetic) gave 0.998 — so calibration data, per-channel scales and op choice were
   not the problem. With weights in ±63, 255·63·2 = 32,130 cannot overflow; on VNNI CPUs
   (no saturation) it merely costs one bit of weight precision. It also lifted the tiny random
   CLIP's ViT towers from 0.966 to 0.9997. (transformers.js's conversion script also
   defaults to ``reduce_range``.)
2. **Down-projections stay fp32** in dynamic graphs: a MatMul / Gemm whose weight maps a
   wider input to a narrower output (the FFN output ``4d → d`` of every transformer
   block, and the final projection heads). Their inputs are post-GELU hidden states whose
   outliers per-tensor dynamic activation scales handle worst; on the bundled MiniLM text
   tower (quantising one MatMul at a time, 300 Flickr8k test captions) the FFN outputs of
   the first layers cost the most, and keeping all down-projections fp32 lifts the minimum
   cosine over 600 test captions from 0.976 to 0.987, at about a third of the int8 MatMul
   savings. On a ViT-B/32-sized image tower those fp32 MatMuls are 48 % of the int8 graph's
   time, and quantising them too (``keep_down_projections=False``; ``export-onnx --int8-all``)
   made it 1.3–1.7× faster (``benchmarks/results/onnx_int8``). It stays opt-in: with random
   weights every variant is above cosine 0.9995, which says nothing about a trained model's
   activation outliers — check the cosine on your model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Recorded in ``mindgap_onnx.json`` (``int8_settings``) so an export says how it was made.
DYNAMIC_SETTINGS = {"weights": "int8 per-channel, 7-bit range", "activations": "uint8 per-tensor, per batch",
                    "fp32": "down-projections (weight in > out)"}
#: the dynamic recipe with ``keep_down_projections=False``
DYNAMIC_ALL_SETTINGS = {**DYNAMIC_SETTINGS, "fp32": "none (every MatMul / Gemm with a weight is int8)"}
STATIC_SETTINGS = {"weights": "int8 per-channel, 7-bit range", "activations": "uint8 per-tensor, calibrated (min-max)",
                   "format": "QDQ", "fp32": "first convolution and the MLP head"}


@contextmanager
def _quiet():  # noqa: ANN202
    """Silence ONNX Runtime's "consider pre-processing" advice on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _load(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False)


def is_conv_dominated(path: Path) -> bool:
    """True for CNN towers (more Conv than MatMul/Gemm nodes); a ViT has one Conv (patchify)."""
    ops = [n.op_type for n in _load(path).graph.node]
    return ops.count("Conv") > ops.count("MatMul") + ops.count("Gemm")


def down_projections(path: Path) -> list[str]:
    """Names of MatMul / Gemm nodes whose constant weight maps more inputs to fewer outputs.

    In a transformer these are each block's FFN output (``4d → d``) and the projection
    heads; they are left in fp32 by :func:`quantize_int8` (see the module doc).
    """
    from onnx import helper

    g = _load(path).graph
    shapes = {i.name: list(i.dims) for i in g.initializer}
    out = []
    for n in g.node:
        if n.op_type not in ("MatMul", "Gemm") or len(n.input) < 2 or n.input[1] not in shapes:
            continue
        w = shapes[n.input[1]]
        if len(w) != 2:
            continue
        trans_b = n.op_type == "Gemm" and any(a.name == "transB" and helper.get_attribute_value(a) for a in n.attribute)
        k, m = (w[1], w[0]) if trans_b else (w[0], w[1])
        if k > m:
            out.append(n.name)
    return out


def quantize_int8(src: Path, dst: Path, *, op_types: tuple[str, ...] = ("MatMul", "Gemm"),
                  keep_down_projections: bool = True) -> list[str]:
    """Dynamic int8: per-channel 7-bit weights of ``op_types``; down-projections stay fp32 unless
    ``keep_down_projections`` is False.

    Returns:
        The names of the nodes kept in fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = down_projections(src) if keep_down_projections else []
    # the quantiser first rewrites each Gemm as a MatMul named "<gemm>_MatMul": exclude both names
    exclude = keep + [f"{n}_MatMul" for n in keep]
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=list(op_types), nodes_to_exclude=exclude)
    return keep


def quantize_static_int8(src: Path, dst: Path, batches: Sequence[np.ndarray], input_name: str = "pixel_values") -> None:
    """Static QDQ int8 (7-bit per-channel weights) with activation ranges calibrated on ``batches``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{input_name: b} for b in batches])

        def get_next(self) -> dict[str, Any] | None:
            return next(self._it, None)

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        with _quiet():
            quant_pre_process(str(src), str(pre))  # shape inference + BatchNorm folding
            quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=static_fp32_nodes(pre))
    finally:
        pre.unlink(missing_ok=True)


def static_fp32_nodes(path: Path) -> list[str]:
    """Nodes a static int8 conv tower keeps in fp32: the first convolution (raw pixels in) and
    the MLP projection head (MatMul / Gemm after pooling).

    Measured on the bundled EfficientNet-Lite0 tower (160 Flickr8k test images, int8 vs fp32
    ONNX): quantising everything gives min / mean cosine 0.884 / 0.959; these two exclusions
    0.910 / 0.966 and the fastest graph; leaving the depthwise convolutions or the residual
    Adds in fp32 instead is *worse* (0.69 / 0.87 and 0.56 / 0.82: every fp32 island adds a
    dequantise–requantise pair whose rounding compounds through the inverted residuals).
    """
    g = _load(path).graph
    convs = [n.name for n in g.node if n.op_type == "Conv"]
    return convs[:1] + [n.name for n in g.node if n.op_type in ("MatMul", "Gemm")]


def calibration_batches(images: Sequence[Any], size: int, mean: list[float], std: list[float],
                        batch: int = 8) -> list[np.ndarray]:
    """Decode (with all of mindgap's checks) and preprocess calibration images into batches."""
    from ..images import describe, load_image
    from .dual_model import preprocess_images

    pil = [load_image(obj, name=describe(obj, i)) for i, obj in enumerate(images)]
    px = preprocess_images(pil, size, mean, std)
    return [px[i : i + batch] for i in range(0, len(px), batch)]


def quantize_tower(src: Path, dst: Path, calib: Sequence[np.ndarray] | None = None, *,
                   keep_down_projections: bool = True) -> str:
    """Quantise one exported tower; returns the recipe used (``"dynamic"``, ``"dynamic-all"`` when
    ``keep_down_projections`` is False, or ``"static-qdq"``)."""
    if calib and is_conv_dominated(src):
        quantize_static_int8(src, dst, calib)
        return "static-qdq"
    quantize_int8(src, dst, keep_down_projections=keep_down_projections)
    return "dynamic" if keep_down_projections else "dynamic-all"


def recipe_settings(recipe: str) -> dict[str, str]:
    """What a recipe name means (for ``mindgap_onnx.json``)."""
    return dict({"static-qdq": STATIC_SETTINGS, "dynamic-all": DYNAMIC_ALL_SETTINGS}.get(recipe, DYNAMIC_SETTINGS))
