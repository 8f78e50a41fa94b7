"""Paired bootstrap of nDCG@10 (image → its own 5 reference captions), mapped − raw, on Flickr8k test.

Usage: python docs/results/caption/gap_ci.py runs/caption/val-ols runs/caption/calib-ols ...
Prints one JSON line per model: mean nDCG@10 raw / mapped, the difference, its 95 % bootstrap
interval over the 1000 test images (2000 resamples, seed 0) and the share of images whose
nDCG@10 went up / down. Embeddings come from the caption cache (same ones `caption eval` used).

Also, for the model's own *fitting* images: raw-cosine nDCG@10 of each image's captions among
all fitted captions, and the mean matched cosine — how well the encoder already aligns those
pairs (high when the encoder was trained on them). Compare models with the same number of
fitting images (the pool size changes nDCG).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from mindgap.caption import metrics as M
from mindgap.caption.cache import encode_images, encode_texts
from mindgap.caption.map import CaptionModel
from mindgap.datasets import load_caption_set
from mindgap.encoders.base import l2_normalize


def per_image_ndcg(q: np.ndarray, c: np.ndarray, owner: np.ndarray, k: int = 10) -> np.ndarray:
    top = np.argsort(-(q @ c.T), axis=1, kind="stable")[:, :k]
    rel = owner[top] == np.arange(q.shape[0])[:, None]
    return M.ndcg_at_k(rel, np.bincount(owner, minlength=q.shape[0]), k)


def main(dirs: list[str]) -> None:
    recs = load_caption_set("flickr8k_224", split="test")
    owner = np.repeat(np.arange(len(recs)), 5)
    rng = np.random.default_rng(0)
    boot = rng.integers(0, len(recs), size=(2000, len(recs)))
    for d in dirs:
        m = CaptionModel.load(d)
        enc = m.encoder()
        iv = encode_images(enc, [r.path for r in recs], show_progress=False)
        cv = encode_texts(enc, [c for r in recs for c in r.captions], show_progress=False)
        raw = per_image_ndcg(l2_normalize(iv), l2_normalize(cv), owner)
        mapped = per_image_ndcg(m.map_images(iv), m.store.mapped_vectors(cv), owner)
        row = {iid: i for i, iid in enumerate(m.image_ids)}
        fit_owner = np.array([row[e.image_id] for e in m.store.entries])
        fit_ndcg = per_image_ndcg(m.image_vectors, m.store.vectors, fit_owner)
        fit_cos = (m.image_vectors[fit_owner] * m.store.vectors).sum(1)
        diff = mapped - raw
        means = diff[boot].mean(axis=1)
        lo, hi = np.percentile(means, [2.5, 97.5])
        print(json.dumps({"model": d, "images": len(recs), "ndcg10_raw": round(float(raw.mean()), 4),
                          "ndcg10_mapped": round(float(mapped.mean()), 4), "diff": round(float(diff.mean()), 4),
                          "ci95": [round(float(lo), 4), round(float(hi), 4)],
                          "images_up": int((diff > 0).sum()), "images_down": int((diff < 0).sum()),
                          "fit_images": len(m.image_ids), "fit_images_raw_ndcg10": round(float(fit_ndcg.mean()), 4),
                          "fit_pairs_mean_cos": round(float(fit_cos.mean()), 4)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
