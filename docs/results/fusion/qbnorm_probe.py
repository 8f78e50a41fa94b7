"""Probe: query-bank normalisation (QB-Norm / dynamic inverted softmax, METHODS §6) on the
Flickr8k test mixed store, against the uniform-shift frontier — the query-adaptive option
that was measured and *not* kept (it needs per-item state, and it lands below the frontier).

Bank = the benchmark's fit queries (calib captions; disjoint from the test queries). Per item
g: ``s'(q, g) = β s(q, g) − log Σ_{b∈B} exp(β s(b, g))`` (all items, "DIS"), or only for hubs
(items in the top-h of some bank query; others keep ``β s − median``). Then per-modality
ranking, merged. Writes ``qbnorm_probe.json`` to ``$OUT`` (default: beside this file).

Run after ``reproduce.sh`` (it reuses runs/fusion's store): ``python docs/results/fusion/qbnorm_probe.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mindgap.encoders import DEFAULT_OFFLINE_SPEC
from mindgap.eval.benchmarks import build_caption_benchmark
from mindgap.eval.runner import _embed_queries, relevant_sets
from mindgap.eval.tradeoff import shift_frontier
from mindgap.retriever import Retriever
from mindgap.types import Modality

enc = os.environ.get("ENCODER") or DEFAULT_OFFLINE_SPEC
tag = enc.replace(":", "_").replace("/", "_")
r = Retriever(f"exact:runs/fusion/flickr8k-{tag}.store", encoder=enc)
b = build_caption_benchmark("flickr8k_224", encoder=enc)
test = _embed_queries(r, b, b.split("test"), False)
bank = _embed_queries(r, b, b.split("fit"), False).vecs
ids, mats = {}, {}
for m in (Modality.IMAGE, Modality.TEXT):
    i, x = r.store.vectors(m)
    ids[m], mats[m] = list(i), np.asarray(x, np.float32)
rel = relevant_sets(b, test.queries)
kinds = np.array([q.kind for q in test.queries])
pos = {m: {x: j for j, x in enumerate(ids[m])} for m in ids}
gold = {m: np.array([next((pos[m][g] for g in rr if g in pos[m]), -1) for rr in rel]) for m in ids}
fr = shift_frontier(mats, {x: (m, j) for m in ids for x, j in pos[m].items()}, test.vecs,
                    [q.gold_ids for q in test.queries], [q.gold_modality for q in test.queries], k=10)


def evaluate(scores: dict[Modality, np.ndarray], k: int = 10) -> dict[str, float]:
    allS = np.concatenate([scores[Modality.IMAGE], scores[Modality.TEXT]], 1)
    n_i = scores[Modality.IMAGE].shape[1]
    top = np.argsort(-allS, 1, kind="stable")[:, :k]
    img_hit = (top == gold[Modality.IMAGE][:, None]).any(1)
    txt_hit = (top == (n_i + gold[Modality.TEXT])[:, None]).any(1)
    disc = 1 / np.log2(np.arange(2, k + 2))
    dcg = (((top == gold[Modality.IMAGE][:, None]) | (top == (n_i + gold[Modality.TEXT])[:, None])) * disc).sum(1)
    out = {"nDCG@10": float((dcg / (disc[0] + disc[1])).mean()), "both@10": float((img_hit & txt_hit).mean()),
           "ImageQ_R@10": float(img_hit[kinds == "ImageQ"].mean()), "TextQ_R@10": float(txt_hit[kinds == "TextQ"].mean()),
           "image_share@10": float((top < n_i).mean())}
    ft = fr.text_at(out["ImageQ_R@10"])
    out["delta_TextQ_vs_frontier"] = None if ft is None else out["TextQ_R@10"] - ft
    return {k_: (round(v, 4) if isinstance(v, float) else v) for k_, v in out.items()}


sims = {m: test.vecs @ mats[m].T for m in ids}
rows = {"naive": evaluate(sims)}
for beta in (5, 10, 20, 40):
    for hub in (None, 1, 5):
        sc = {}
        for m in ids:
            sb = bank @ mats[m].T
            lse = np.logaddexp.reduce(beta * sb, axis=0)
            s2 = beta * sims[m] - lse[None]
            if hub is not None:
                is_hub = np.zeros(len(ids[m]), bool)
                is_hub[np.unique(np.argsort(-sb, 1)[:, :hub])] = True
                s2 = np.where(is_hub[None], s2, beta * sims[m] - np.median(lse))
            sc[m] = s2
        rows[f"{'DIS (all items)' if hub is None else f'QB-Norm (hubs: top-{hub} of a bank query)'}, beta={beta}"] = evaluate(sc)
out = Path(os.environ.get("OUT") or Path(__file__).parent) / "qbnorm_probe.json"  # reproduce.sh's OUT
out.write_text(json.dumps({"encoder": enc, "bank": f"{len(bank)} fit (calib) queries", "results": rows}, indent=1) + "\n")
for k, v in rows.items():
    print(f"{k:55s} {v}")
