"""Old vs new bundled offline model, side by side, measured in one run on Flickr8k test.

For each model: Recall@1/5/10 both ways (1,000 photos, 5,000 captions), matched vs unmatched
text–image cosine, caption–caption cosine, and the mixed-index experiment (test images +
caption #0 passages; queries captions #1–#4; naive vs per-modality z-scores fitted on the
model's own calib hold-out) — :func:`mindgap.encoders.evaluate.evaluate_encoder`.

Run: ``python docs/results/model/compare.py [MODEL ...]`` (default: flickr8k-small and the
current default) → ``compare.json`` and ``compare.md`` beside this file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> None:
    from mindgap.datasets import load_caption_set
    from mindgap.encoders.dual import DEFAULT_OFFLINE_MODEL, DualTorchEncoder, resolve_model_dir
    from mindgap.encoders.dual_model import DualEncoderModel
    from mindgap.encoders.evaluate import evaluate_encoder

    names = argv or ["flickr8k-small", DEFAULT_OFFLINE_MODEL]
    out = {"date": time.strftime("%Y-%m-%d %H:%M"), "models": {}}
    val = load_caption_set("flickr8k_224", split="val")
    for name in names:
        d = resolve_model_dir(name)
        cfg = DualEncoderModel.read_config(d)
        ids = set(cfg["training"]["data"]["calib_images"])
        calib = [r for r in val if r.image_id in ids]
        t = time.time()
        m = evaluate_encoder(DualTorchEncoder(d, name=f"mindgap:{name}"), "flickr8k_224", split="test", calib=calib)
        m["seconds"] = round(time.time() - t, 1)
        m["train_images"] = len(cfg["training"]["data"]["train_images"])
        out["models"][name] = m
        print(name, m["text_to_image"], m["image_to_text"], file=sys.stderr, flush=True)
    (HERE / "compare.json").write_text(json.dumps(out, indent=2))
    (HERE / "compare.md").write_text(render(out))
    print(render(out))


def render(out: dict) -> str:
    ms = out["models"]
    names = list(ms)
    rows = [
        ("training photos", lambda m: m["train_images"]),
        ("text → image R@1 / R@5 / R@10", lambda m: " / ".join(str(m["text_to_image"][k]) for k in ("R@1", "R@5", "R@10"))),
        ("image → text R@1 / R@5 / R@10", lambda m: " / ".join(str(m["image_to_text"][k]) for k in ("R@1", "R@5", "R@10"))),
        ("matched text–image cosine", lambda m: m["matched_text_image_cos"]),
        ("unmatched text–image cosine", lambda m: m["unmatched_text_image_cos"]),
        ("two captions of one image (cosine)", lambda m: m["same_image_text_text_cos"]),
        ("calib matched text–image cosine", lambda m: m.get("calib_matched_text_image_cos")),
        ("mixed index, naive: image share of top 10", lambda m: m["mixed_index"]["naive_image_share_top10"]),
        ("mixed index, naive: image R@10", lambda m: m["mixed_index"]["naive_image_R@10"]),
        ("mixed index, zscore (calib): image share of top 10", lambda m: m["mixed_index"].get("zscore_image_share_top10")),
        ("mixed index, zscore (calib): image R@10", lambda m: m["mixed_index"].get("zscore_image_R@10")),
        ("mixed index, image-only search R@10 (ceiling)", lambda m: m["mixed_index"]["image_only_R@10"]),
    ]
    lines = ["# Bundled offline model: old vs new (Flickr8k test, one run)", "",
             f"Measured {out['date']} by `docs/results/model/compare.py`.", "",
             "| measure | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for label, f in rows:
        lines.append(f"| {label} | " + " | ".join(str(f(ms[n])) for n in names) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
