"""Does the mRAG-gim linear map beat raw cosine for image → caption retrieval? (default bundled model)

Fit on all 1,000 Flickr8k val photos (OLS with ridge by CV, and Procrustes), retrieve the
5,000 test captions for each of the 1,000 test photos, nDCG@10 / R@k of raw, mapped and
centred-only scores (:func:`mindgap.caption.evaluate.gap_retrieval`).

Run: ``python docs/results/caption/map_vs_raw.py`` → ``map_vs_raw.json`` beside this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def main() -> None:
    from mindgap.caption.cache import encode_images, encode_texts
    from mindgap.caption.evaluate import gap_retrieval
    from mindgap.caption.map import fit_caption_model
    from mindgap.datasets import load_caption_set
    from mindgap.encoders import DEFAULT_OFFLINE_SPEC, load_encoder

    enc = load_encoder(DEFAULT_OFFLINE_SPEC)
    val = load_caption_set("flickr8k_224", split="val")
    test = load_caption_set("flickr8k_224", split="test")
    iv = encode_images(enc, [r.path for r in test])
    cv = encode_texts(enc, [c for r in test for c in r.captions])
    own = np.repeat(np.arange(len(test)), 5)
    out = {"encoder": DEFAULT_OFFLINE_SPEC, "fit": "flickr8k_224 val (1000 photos)", "test": "flickr8k_224 test",
           "maps": {}}
    for kind, kw in (("ols", {"ridge": "auto"}), ("procrustes", {"kind": "procrustes"})):
        g = gap_retrieval(fit_caption_model(val, enc, **kw), iv, cv, own)
        out["maps"][kind] = {k: {kk: round(float(vv), 4) for kk, vv in v.items()} for k, v in g.items() if isinstance(v, dict)}
    p = Path(__file__).with_name("map_vs_raw.json")
    p.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
