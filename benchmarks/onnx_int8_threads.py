"""ViT-B/32 image tower, model only: PyTorch fp32 vs ONNX Runtime fp32 / int8 at 1 and 2 threads.

Run: ``python benchmarks/onnx_int8_threads.py [--graphs DIR] [--rounds 4]``
→ ``benchmarks/results/onnx_int8/threads.json`` and ``.md``.

The companion of :mod:`onnx_int8_profile` (same random-weight ViT-B/32, same graphs; ``--graphs``
reuses the folder that script keeps with ``--keep``, else the graphs are exported and quantised
again). Why a second run: on this shared 2-core machine other jobs (load average up to 10 while
the profile ran) slow a 2-thread PyTorch GEMM far more than ONNX Runtime — PyTorch's OpenMP
splits each GEMM statically over both threads and waits at a barrier for the slower one, while
ONNX Runtime's pool hands out work dynamically — so a 2-thread ratio measured under load
overstates ONNX Runtime's lead. With **one** thread there is no barrier: interleaved rounds
then compare per-core efficiency, and load slows both sides alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "onnx_int8"
VARIANTS = {"onnx-fp32": "vision_model.onnx", "int8 shipped (dynamic, down-proj fp32)": "vision_model_quantized.onnx",
            "int8 dynamic, all MatMul": "v_dyn_all.onnx"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graphs", type=Path, default=None, help="a folder kept by onnx_int8_profile.py --keep")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="16,64")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnxruntime
    import torch

    from encoders import _cpu_name, build_b32
    from mindgap.datasets import load_caption_set
    from mindgap.encoders import load_encoder
    from mindgap.encoders.dual_model import CLIP_MEAN, CLIP_STD, preprocess_images
    from mindgap.encoders.export import export_onnx
    from mindgap.encoders.hf import _features
    from mindgap.images import load_image
    from onnx_int8_profile import _dyn, _session, _summ, finish, interleaved

    t0 = time.perf_counter()
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "environment": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(),
                                 "loadavg_before": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
                                 "onnxruntime": onnxruntime.__version__}}
    work = Path(tempfile.mkdtemp(prefix="mindgap-onnxthr-"))
    try:
        b32 = build_b32(work / "clip")
        hf = load_encoder(f"hf:{b32}", device="cpu")
        g = args.graphs
        if g is None:
            g = export_onnx(f"hf:{b32}", work / "onnx", int8=True, encoder=hf) / "onnx"
            _dyn(g / "vision_model.onnx", g / "v_dyn_all.onnx")
        elif (g / "onnx").is_dir():
            g = g / "onnx"
        paths = [r.path for r in load_caption_set("flickr8k_224", split="test")[:64]]
        px = preprocess_images([load_image(p) for p in paths], 224, CLIP_MEAN, CLIP_STD)
        threads = [int(x) for x in args.threads.split(",")]
        batches = [int(x) for x in args.batches.split(",")]
        model = hf.model

        def run_torch(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return _features(model.get_image_features(pixel_values=torch.from_numpy(x))).numpy()

        torch.set_num_threads(max(threads))
        ref = run_torch(px[:16])
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        sess = {(k, t): _session(g / f, t) for k, f in VARIANTS.items() for t in threads}
        acc = {}
        for k in VARIANTS:
            e = sess[(k, threads[0])].run(None, {"pixel_values": px[:16]})[0]
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            acc[k] = round(float(np.einsum("ij,ij->i", e, ref).min()), 5)
        res["min_cos_vs_torch_16_images"] = acc  # also checks the graphs are this model's (else ~0)
        print("accuracy", acc, flush=True)
        runners = {}
        for t in threads:
            runners[f"torch fp32@{t}"] = (lambda t: lambda bs: (torch.set_num_threads(t), run_torch(px[:bs])))(t)
            for k in VARIANTS:
                runners[f"{k}@{t}"] = (lambda s: lambda bs: s.run(None, {"pixel_values": px[:bs]}))(sess[(k, t)])
        times = interleaved(runners, batches, args.rounds,
                            log=lambda r: print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - t0:.0f} s, "
                                                f"load {os.getloadavg()[0]:.1f}", flush=True))
        rows = []
        for t in threads:
            for bs in batches:
                base = times[(f"torch fp32@{t}", bs)]
                for k in ["torch fp32", *VARIANTS]:
                    xs = times[(f"{k}@{t}", bs)]
                    rows.append({"variant": k, "threads": t, "batch": bs, "images_per_s": _summ(xs),
                                 "x_torch": _summ([a / b for a, b in zip(xs, base)])})
        res["rows"] = rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    finish(res, t0, args.out, "threads", to_markdown)
    return 0


def to_markdown(res: dict) -> str:
    env = res["environment"]
    out = ["# ViT-B/32 image tower, model only: 1 vs 2 threads", "",
           f"Measured {res['date']} on {env['cpu']} ({env['cpu_count']} cores, shared); torch {env['torch']}, "
           f"onnxruntime {env['onnxruntime']}; load average {env['loadavg_before']} before, {env['loadavg_after']} "
           f"after; total {res['total_seconds']} s. Same preprocessed Flickr8k test pixels for every variant; rounds "
           "interleaved (order reversed every other round); median and min–max over rounds; × torch = median of the "
           "per-round ratios. Min cosine to torch (16 images): "
           + ", ".join(f"{k} {v}" for k, v in res["min_cos_vs_torch_16_images"].items()) + ".", "",
           "| threads | batch | variant | images/s median (min–max) | × torch median (min–max) |",
           "|---:|---:|---|---:|---:|"]
    for r in res["rows"]:
        i, x = r["images_per_s"], r["x_torch"]
        out.append(f"| {r['threads']} | {r['batch']} | {r['variant']} | {i['median']:.1f} ({i['min']:.1f}–{i['max']:.1f})"
                   f" | {x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f}) |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
