"""Ingestion throughput of ``mindgap index`` (:meth:`mindgap.Retriever.index_source`) with the offline model.

Run: ``nice python benchmarks/ingest.py [--threads N] [--store exact|lancedb]``
→ ``benchmarks/results/ingest.json`` and ``ingest.md``.

Sources (real data, each into a fresh store, batch 64, the model loaded once beforehand):

* ``flickr-images`` — 256 Flickr8k test images (224 px JPEGs) through the image–caption reader;
* ``mmqa-images`` — the 257 MMQA images (original Wikipedia files, up to ~1,500 px: decode-heavy);
* ``flickr-captions`` — 512 Flickr8k captions (one sentence each) from a JSONL file;
* ``mmqa-passages`` — 128 MMQA passages (``{title}. {text}``, ~6 sentences), sentence-mean and
  first-tokens (``truncate``) modes.

Image sources run twice: **serial** (one decode thread, no prefetch: decode, then encode) and
**pipelined** (the default: decode threads two batches ahead of the encoder). Items/s counts
every item from the first batch to the last commit, store writes included. The load average
is recorded before and after each row: other jobs on a shared 2-core machine slow every number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--store", default="exact", choices=["exact", "lancedb"])
    args = ap.parse_args()
    import torch

    from mindgap.datasets import load_caption_set, shared_data_dir
    from mindgap.encoders import load_encoder
    from mindgap.eval.benchmarks import _gz_jsonl
    from mindgap.ingest.pipeline import default_workers
    from mindgap.retriever import Retriever

    if args.threads:
        torch.set_num_threads(args.threads)
    enc = load_encoder(DEFAULT_OFFLINE_SPEC)
    data = shared_data_dir()
    tmp = Path(tempfile.mkdtemp(prefix="mindgap-ingest-bench-"))
    flickr = load_caption_set(data / "flickr8k_224", split="test")
    src = {}
    d = tmp / "flickr_imgs"
    d.mkdir()
    for r in flickr[:256]:  # copies: symlinks out of the folder are refused by the folder reader
        shutil.copyfile(r.path, d / r.path.name)
    src["flickr-images"] = d
    src["mmqa-images"] = tmp / "mmqa_images.jsonl"
    src["mmqa-images"].write_text("".join(json.dumps({"id": p.stem, "image": str(p)}) + "\n"
                                          for p in sorted((data / "mmqa" / "images").iterdir())))
    src["flickr-captions"] = tmp / "captions.jsonl"
    src["flickr-captions"].write_text("".join(json.dumps({"id": f"{r.image_id}#{j}", "text": c}) + "\n"
                                              for r in flickr[:128] for j, c in enumerate(r.captions[:4])))
    texts = _gz_jsonl(data / "mmqa" / "subset_dev100" / "MMQA_texts_n100.jsonl.gz")[:128]
    src["mmqa-passages"] = tmp / "passages.jsonl"
    src["mmqa-passages"].write_text("".join(json.dumps({"id": t["id"], "text": f"{t['title']}. {t['text']}"}) + "\n"
                                            for t in texts))
    runs = [("flickr-images", "serial", {}), ("flickr-images", "pipelined", {}),
            ("mmqa-images", "serial", {}), ("mmqa-images", "pipelined", {}),
            ("flickr-captions", "pipelined", {}), ("mmqa-passages", "sentences", {"text_mode": "sentences"}),
            ("mmqa-passages", "truncate", {"text_mode": "truncate"})]
    rows = []
    t_all = time.time()
    for i, (name, mode, kw) in enumerate(runs):
        uri = f"{args.store}:{tmp / f'store{i}'}"
        r = Retriever(uri, encoder=enc, text_mode=kw.get("text_mode", "sentences"))
        opts = {"workers": 1, "prefetch": 0} if mode == "serial" else {}
        before = _load()
        rep = r.index_source(src[name], batch_size=64, progress=False, **opts)
        n = sum(rep.added.values())
        rows.append({"source": name, "mode": mode, "items": n, "skipped": len(rep.skipped),
                     "seconds": round(rep.seconds, 2), "items_per_s": round(rep.items_per_second, 1),
                     "load_before": before, "load_after": _load()})
        print(rows[-1], flush=True)
        r.close()
    res = {"measured": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "decode_workers": default_workers(),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
           "store": args.store, "encoder": DEFAULT_OFFLINE_SPEC, "batch_size": 64,
           "total_s": round(time.time() - t_all, 1), "python": sys.version.split()[0], "rows": rows}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ingest.json").write_text(json.dumps(res, indent=2))
    md = [f"# Ingestion throughput (`mindgap index`, offline model, {args.store} store)", "",
          f"Measured {res['measured']} on {res['cpus']} shared cores, torch threads {res['torch_threads']} "
          f"(OMP_WAIT_POLICY {res['omp_wait_policy']}), "
          f"{res['decode_workers']} decode threads, batch 64; total {res['total_s']} s. Load averages are recorded "
          "per row: other jobs on the machine slow every number.", "",
          "| source | mode | items | items/s | seconds | load before → after |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        md.append(f"| {r['source']} | {r['mode']} | {r['items']} | {r['items_per_s']} | {r['seconds']} | "
                  f"{r['load_before'][0]} → {r['load_after'][0]} |")
    (OUT / "ingest.md").write_text("\n".join(md) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print((OUT / "ingest.md").read_text())


if __name__ == "__main__":
    main()
