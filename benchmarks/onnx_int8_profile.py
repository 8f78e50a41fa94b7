"""Where the time goes: ViT-B/32 image tower, PyTorch fp32 vs ONNX Runtime fp32 / int8 variants.

Run: ``python benchmarks/onnx_int8_profile.py [--rounds 5] [--threads 2] [--out DIR]``
→ ``benchmarks/results/onnx_int8/profile.json`` and ``.md``.

A randomly initialised ``CLIPModel`` with the default ``CLIPConfig`` (ViT-B/32 at 224 px;
:func:`benchmarks.encoders.build_b32`) is exported with :func:`mindgap.encoders.export.export_onnx`
(the shipped recipe) and re-quantised a few other ways. Everything runs in one process:

* **model only** — the same preprocessed pixel batch (real Flickr8k test images) through
  ``model.get_image_features`` (torch, ``inference_mode``) and through each ONNX graph;
  rounds are *interleaved* (each round runs every variant once per batch size), so other
  jobs on a shared machine slow all variants alike; the median and min–max over rounds are
  reported, and ratios are medians of the per-round ratios;
* **per-op profile** — ONNX Runtime's profiler (``enable_profiling``) on a few batch-16
  runs of selected graphs, node time summed per op type, plus the op-type census of the
  graph ONNX Runtime actually runs (``optimized_model_filepath``): which ops stay fp32;
* **end to end** — ``encode_image`` from file paths (decode + preprocess + model +
  normalise) for ``hf:`` and ``onnx:`` encoders, interleaved the same way;
* **accuracy** — min cosine of each variant's embeddings to PyTorch's on 64 test images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "onnx_int8"
BATCHES = (16, 64)


def _session(path: Path, threads: int, level: str = "all", profile: str | None = None,
             save_optimized: Path | None = None):  # noqa: ANN202
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    if profile:
        o.enable_profiling = True
        o.profile_file_prefix = profile
    if save_optimized:
        o.optimized_model_filepath = str(save_optimized)
    return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])


def _op_census(path: Path) -> dict[str, int]:
    import onnx

    return dict(Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node).most_common())


def _fuse(src: Path, dst: Path) -> dict[str, int]:
    """onnxruntime.transformers' optimizer (model_type clip: attention / LayerNorm / GELU fusion)."""
    from onnxruntime.transformers.optimizer import optimize_model

    m = optimize_model(str(src), model_type="clip", num_heads=12, hidden_size=768, opt_level=0)
    m.save_model_to_file(str(dst))
    return m.get_fused_operator_statistics()


def _dyn(src: Path, dst: Path, exclude: list[str] | None = None, reduce_range: bool = True,
         per_channel: bool = True) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from mindgap.encoders.quantize import _quiet

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range, op_types_to_quantize=["MatMul", "Gemm", "Attention"],
                         nodes_to_exclude=exclude or [])


def _static(src: Path, dst: Path, calib: list[np.ndarray], fmt: str = "QDQ") -> None:
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from mindgap.encoders.quantize import _quiet

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{"pixel_values": b} for b in calib])

        def get_next(self):  # noqa: ANN201
            return next(self._it, None)

    pre = dst.with_name(dst.stem + ".pre.onnx")
    with _quiet():
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(dst), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["MatMul", "Gemm"])
    pre.unlink(missing_ok=True)


def _profile(path: Path, px: np.ndarray, threads: int, work: Path, runs: int = 3) -> dict:
    sess = _session(path, threads, profile=str(work / f"prof-{path.stem}"),
                    save_optimized=work / f"opt-{path.stem}.onnx")
    name = sess.get_inputs()[0].name
    sess.run(None, {name: px})  # warm-up (also profiled; dropped below by taking the last runs)
    for _ in range(runs):
        sess.run(None, {name: px})
    prof = sess.end_profiling()
    events = json.loads(Path(prof).read_text())
    run_events = [e for e in events if e.get("name") == "model_run"]
    t_after = run_events[-runs]["ts"] if len(run_events) >= runs + 1 else 0
    by_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= t_after:
            by_op[e["args"]["op_name"]] += e["dur"]
    total = sum(by_op.values()) or 1.0
    run_ms = statistics.median(e["dur"] for e in run_events[-runs:]) / 1000 if run_events else float("nan")
    Path(prof).unlink(missing_ok=True)
    ops = sorted(by_op.items(), key=lambda kv: -kv[1])
    return {"graph": path.name, "batch": int(px.shape[0]), "runs": runs, "run_ms_median": round(run_ms, 1),
            "kernel_share_pct": {k: round(100 * v / total, 1) for k, v in ops},
            "kernel_ms_per_run": {k: round(v / runs / 1000, 1) for k, v in ops},
            "executed_graph_ops": _op_census(work / f"opt-{path.stem}.onnx")}


def _summ(xs: list[float]) -> dict:
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3), "max": round(max(xs), 3),
            "all": [round(x, 3) for x in xs]}


def interleaved(runners: dict[str, Any], batches: tuple[int, ...] | list[int], rounds: int,
                log: Any = None) -> dict[tuple[str, int], list[float]]:
    """Items/s per (runner, batch size): one warm-up call each, then ``rounds`` rounds that run every
    runner once per batch size, the order reversed every other round. ``runners[name](bs)`` runs one batch."""
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for bs in batches:
        for fn in runners.values():
            fn(bs)  # warm-up
    for r in range(rounds):
        for bs in batches:
            order = list(runners.items())
            if r % 2:
                order.reverse()
            for k, fn in order:
                t = time.perf_counter()
                fn(bs)
                times[(k, bs)].append(bs / (time.perf_counter() - t))
        if log:
            log(r)
    return times


def finish(res: dict, t0: float, out: Path, stem: str, markdown: Any) -> None:
    """Load average after, total time; write ``out/<stem>.json`` and ``.md`` and print the markdown."""
    res["environment"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2))
    (out / f"{stem}.md").write_text(markdown(res))
    print(markdown(res))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--e2e-rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--keep", type=Path, default=None, help="Keep the exported graphs in this folder.")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import onnxruntime
    import torch

    from encoders import _cpu_name, build_b32
    from mindgap.datasets import load_caption_set
    from mindgap.encoders import load_encoder
    from mindgap.encoders.dual_model import CLIP_MEAN, CLIP_STD, preprocess_images
    from mindgap.encoders.export import export_onnx
    from mindgap.encoders.quantize import down_projections
    from mindgap.images import load_image

    t0 = time.perf_counter()
    load_before = os.getloadavg()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="mindgap-onnxprof-"))
    res: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "environment": {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": args.threads,
                                 "vnni": "avx512_vnni" in Path("/proc/cpuinfo").read_text(),
                                 "loadavg_before": [round(x, 2) for x in load_before], "torch": torch.__version__,
                                 "onnxruntime": onnxruntime.__version__}}
    try:
        b32 = build_b32(work / "clip")
        hf = load_encoder(f"hf:{b32}", device="cpu", num_threads=args.threads)
        t = time.perf_counter()
        exp = export_onnx(f"hf:{b32}", work / "onnx", int8=True, encoder=hf)
        res["export_seconds"] = round(time.perf_counter() - t, 1)
        g = exp / "onnx"
        fp32, shipped = g / "vision_model.onnx", g / "vision_model_quantized.onnx"
        recs = load_caption_set("flickr8k_224", split="test")
        paths = [r.path for r in recs[:64]]
        pil = [load_image(p) for p in paths]
        px64 = preprocess_images(pil, 224, CLIP_MEAN, CLIP_STD)
        calib_recs = load_caption_set("flickr8k_224", split="val")[:32]
        calib = [preprocess_images([load_image(r.path) for r in calib_recs[i:i + 8]], 224, CLIP_MEAN, CLIP_STD)
                 for i in range(0, 32, 8)]

        graphs: dict[str, Path] = {"onnx-fp32": fp32, "int8 shipped (dynamic, down-proj fp32)": shipped}
        notes: dict[str, str] = {}
        t = time.perf_counter()
        _dyn(fp32, g / "v_dyn_all.onnx")
        graphs["int8 dynamic, all MatMul"] = g / "v_dyn_all.onnx"
        _dyn(fp32, g / "v_dyn_all_8bit.onnx", reduce_range=False)
        graphs["int8 dynamic, all MatMul, 8-bit"] = g / "v_dyn_all_8bit.onnx"
        try:
            stats = _fuse(fp32, g / "v_fused.onnx")
            notes["fusion"] = json.dumps({k: v for k, v in stats.items() if v})
            graphs["fp32 fused (transformers optimizer)"] = g / "v_fused.onnx"
            _dyn(g / "v_fused.onnx", g / "v_fused_dyn.onnx", exclude=down_projections(g / "v_fused.onnx"))
            graphs["int8 fused, dynamic, down-proj fp32"] = g / "v_fused_dyn.onnx"
            _dyn(g / "v_fused.onnx", g / "v_fused_dyn_all.onnx")
            graphs["int8 fused, dynamic, all"] = g / "v_fused_dyn_all.onnx"
        except Exception as exc:  # noqa: BLE001
            notes["fusion"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        try:
            _static(fp32, g / "v_static_qdq.onnx", calib)
            graphs["int8 static QDQ (MatMul)"] = g / "v_static_qdq.onnx"
            _static(fp32, g / "v_static_qop.onnx", calib, fmt="QOperator")
            graphs["int8 static QOperator (MatMul)"] = g / "v_static_qop.onnx"
        except Exception as exc:  # noqa: BLE001
            notes["static"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
        res["quantise_seconds"] = round(time.perf_counter() - t, 1)
        res["notes"] = notes
        res["graph_mb"] = {k: round(p.stat().st_size / 2**20, 1) for k, p in graphs.items()}
        print("graphs:", list(graphs), notes, flush=True)

        model = hf.model
        sessions = {k: _session(p, args.threads) for k, p in graphs.items()}

        def run_torch(px: np.ndarray) -> np.ndarray:
            from mindgap.encoders.hf import _features

            with torch.inference_mode():
                return _features(model.get_image_features(pixel_values=torch.from_numpy(px))).numpy()

        runners = {"torch fp32": run_torch}
        for k, s in sessions.items():
            runners[k] = (lambda s: (lambda px: s.run(None, {"pixel_values": px})[0]))(s)

        ref = run_torch(px64)
        ref /= np.linalg.norm(ref, axis=1, keepdims=True)
        acc = {}
        for k, fn in runners.items():
            e = fn(px64)
            e = e / np.linalg.norm(e, axis=1, keepdims=True)
            acc[k] = round(float(np.einsum("ij,ij->i", e, ref).min()), 5)
        res["min_cos_vs_torch"] = acc
        print("accuracy:", acc, flush=True)

        # model only, interleaved rounds
        times = interleaved({k: (lambda fn: lambda bs: fn(px64[:bs]))(fn) for k, fn in runners.items()}, BATCHES,
                            args.rounds, log=lambda r: print(f"round {r + 1}/{args.rounds} done, "
                                                             f"{time.perf_counter() - t0:.0f} s", flush=True))
        model_only = []
        for bs in BATCHES:
            base = times[("torch fp32", bs)]
            for k in runners:
                xs = times[(k, bs)]
                model_only.append({"variant": k, "batch": bs, "images_per_s": _summ(xs),
                                   "x_torch": _summ([a / b for a, b in zip(xs, base)])})
        res["model_only"] = model_only

        # per-op profiles (batch 16)
        prof_keys = [k for k in graphs if k in ("onnx-fp32", "int8 shipped (dynamic, down-proj fp32)",
                                                  "int8 dynamic, all MatMul", "int8 fused, dynamic, all",
                                                  "int8 static QDQ (MatMul)")]
        res["profiles"] = {k: _profile(graphs[k], px64[:16], args.threads, work) for k in prof_keys}
        print("profiles done", flush=True)

        # end to end: encode_image from paths, hf vs onnx int8 (shipped, and the best model-only variant)
        best = max((m for m in model_only if m["batch"] == 16 and m["variant"].startswith("int8")),
                   key=lambda m: m["x_torch"]["median"])["variant"]
        res["best_int8_variant_batch16"] = best
        alt = work / "onnx_best"
        shutil.copytree(exp, alt)
        shutil.copy2(graphs[best], alt / "onnx" / "vision_model_quantized.onnx")
        encs = {"hf": hf, "onnx int8 shipped": load_encoder(f"onnx:{exp}", variant="int8", num_threads=args.threads),
                f"onnx int8 {best}": load_encoder(f"onnx:{alt}", variant="int8", num_threads=args.threads)}
        e2e = interleaved({k: (lambda e: lambda bs: e.encode_image(paths[:bs], batch_size=bs, show_progress=False))(enc)
                           for k, enc in encs.items()}, BATCHES, args.e2e_rounds)
        # preprocessing alone (decode + resize + normalise), per pipeline
        pre = {}
        t = time.perf_counter()
        hf.image_processor(images=[load_image(p) for p in paths], return_tensors="pt")
        pre["hf image_processor (decode + preprocess) ms/image"] = round(1000 * (time.perf_counter() - t) / len(paths), 2)
        t = time.perf_counter()
        encs["onnx int8 shipped"]._preprocess([load_image(p) for p in paths])
        pre["onnx encoder (decode + preprocess) ms/image"] = round(1000 * (time.perf_counter() - t) / len(paths), 2)
        res["preprocess"] = pre
        res["end_to_end"] = []
        for bs in BATCHES:
            base = e2e[("hf", bs)]
            for k in encs:
                xs = e2e[(k, bs)]
                res["end_to_end"].append({"encoder": k, "batch": bs, "images_per_s": _summ(xs),
                                          "x_hf": _summ([a / b for a, b in zip(xs, base)])})
    finally:
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(work / "onnx", args.keep)
        shutil.rmtree(work, ignore_errors=True)
    finish(res, t0, args.out, "profile", to_markdown)
    return 0


def to_markdown(res: dict) -> str:
    env = res["environment"]
    out = ["# ViT-B/32 image tower: where the int8 time goes", "",
           f"Measured {res['date']} on {env['cpu']} ({env['cpu_count']} cores, shared; AVX-512 VNNI: {env['vnni']}), "
           f"{env['threads']} threads; torch {env['torch']}, onnxruntime {env['onnxruntime']}; load average "
           f"{env['loadavg_before']} before, {env.get('loadavg_after')} after; total {res['total_seconds']} s. "
           "Random-weight CLIP ViT-B/32 (`benchmarks/encoders.py build_b32`). Rounds are interleaved "
           "(every variant once per round), so other jobs slow all variants alike; median and min–max over rounds; "
           "× torch is the median of the per-round ratios.", ""]
    if res.get("notes"):
        out += [f"* {k}: {v}" for k, v in res["notes"].items()] + [""]
    out += ["## Model only (same preprocessed pixels)", "",
            "| variant | batch | images/s median (min–max) | × torch median (min–max) | min cos vs torch | MB |",
            "|---|---:|---:|---:|---:|---:|"]
    for m in res["model_only"]:
        i, x = m["images_per_s"], m["x_torch"]
        out.append(f"| {m['variant']} | {m['batch']} | {i['median']:.1f} ({i['min']:.1f}–{i['max']:.1f}) | "
                   f"{x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f}) | {res['min_cos_vs_torch'].get(m['variant'], '')} "
                   f"| {res['graph_mb'].get(m['variant'], '')} |")
    out += ["", "## End to end (encode_image from files)", "",
            "| encoder | batch | images/s median (min–max) | × hf median (min–max) |", "|---|---:|---:|---:|"]
    for m in res.get("end_to_end", []):
        i, x = m["images_per_s"], m["x_hf"]
        out.append(f"| {m['encoder']} | {m['batch']} | {i['median']:.1f} ({i['min']:.1f}–{i['max']:.1f}) | "
                   f"{x['median']:.2f} ({x['min']:.2f}–{x['max']:.2f}) |")
    out += [""] + [f"* {k}: {v}" for k, v in res.get("preprocess", {}).items()] + [""]
    out += ["## Per-op profile (ONNX Runtime profiler, batch 16, kernel time share)", ""]
    for k, p in res.get("profiles", {}).items():
        top = ", ".join(f"{op} {s} %" for op, s in list(p["kernel_share_pct"].items())[:8])
        census = ", ".join(f"{op} {n}" for op, n in list(p["executed_graph_ops"].items())[:10])
        out += [f"* **{k}** — {p['run_ms_median']} ms per batch-16 run: {top}.", f"  Executed graph: {census}."]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
