"""Which per-item evidence could lift a photo above the others? A probe on the Flickr8k test store.

For the 2,000 test caption queries, R@10 of the query's photo among the 1,000 test photos alone
(and of its sibling passage among the 1,000 passages alone), ranked by:

* the cosine;
* cross-modal pseudo-relevance feedback: ``cos(q, x) + α · Σ_j w_j cos(t_j, x)`` over the query's
  3 best items of the other modality ``t_j`` (softmax weights at temperature 0.05);
* the same with the *gold* item of the other modality as the only feedback (an oracle: the best
  any feedback from that item could do);
* the hub discount ``cos(q, x) − b · r(x)``, ``r(x)`` = the mean cosine of ``x`` to its 10 nearest
  items of the other modality in the store (``calibrated:hub`` uses a 500-item sample of them, with
  b = 0.5 chosen on calib).

This is a measurement on test, not a selection: the shipped weight was chosen on calib
(select_hub_on_calib.md). Run from the repo root: ``python docs/results/fusion/feedback_probe.py``
→ feedback_probe.{json,md} (the store of run_fusion, runs/fusion/, is built if missing).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mindgap.encoders import DEFAULT_OFFLINE_SPEC
from mindgap.eval.benchmarks import build_caption_benchmark
from mindgap.eval.reports import md_table
from mindgap.eval.runner import _embed_queries, benchmark_retriever, relevant_sets
from mindgap.types import Modality

OUT = Path(__file__).resolve().parent


def r10(s: np.ndarray, gold: np.ndarray) -> float:
    """Share of rows whose gold column has fewer than 10 strictly higher scores."""
    g = s[np.arange(len(gold)), gold][:, None]
    return round(float(np.mean((s > g).sum(1) < 10)), 4)


def feedback(s_other: np.ndarray, cross: np.ndarray, m: int = 3, tau: float = 0.05) -> np.ndarray:
    """Σ_j w_j cross[t_j] over each row's m best items of the other modality (softmax weights)."""
    top = np.argsort(-s_other, 1)[:, :m]
    w = np.exp((np.take_along_axis(s_other, top, 1) - s_other.max(1, keepdims=True)) / tau)
    w /= w.sum(1, keepdims=True)
    return np.einsum("qm,qmn->qn", w, cross[top])


def main() -> None:
    enc = DEFAULT_OFFLINE_SPEC
    tag = enc.replace(":", "_").replace("/", "_")
    bench = build_caption_benchmark("flickr8k_224", encoder=enc)
    retr, _ = benchmark_retriever(bench, f"exact:runs/fusion/flickr8k-{tag}.store", encoder=enc)
    test = _embed_queries(retr, bench, bench.split("test"), False)
    rel = relevant_sets(bench, test.queries)
    tid, T = retr.store.vectors(Modality.TEXT)
    iid, I = retr.store.vectors(Modality.IMAGE)
    retr.close()
    ti, ii = {x: j for j, x in enumerate(tid)}, {x: j for j, x in enumerate(iid)}
    gi = np.array([next(ii[x] for x in r if x in ii) for r in rel])
    gt = np.array([next(ti[x] for x in r if x in ti) for r in rel])
    Q = test.vecs
    sI, sT, TI = Q @ I.T, Q @ T.T, T @ I.T
    rows = [["cosine", "–", r10(sI, gi), r10(sT, gt)]]
    fI, fT = feedback(sT, TI), feedback(sI, TI.T)
    for a in (0.25, 0.5, 1.0):
        rows.append(["feedback from the 3 best of the other modality", f"α = {a:g}", r10(sI + a * fI, gi),
                     r10(sT + a * fT, gt)])
    for a in (0.5, 1.0):
        rows.append(["oracle: the gold item of the other modality as feedback", f"α = {a:g}",
                     r10(sI + a * TI[gt], gi), r10(sT + a * TI[:, gi].T, gt)])
    rI = np.sort(TI, 0)[-10:].mean(0)  # a photo's mean cosine to its 10 nearest passages
    rT = np.sort(TI, 1)[:, -10:].mean(1)
    for b in (0.25, 0.5, 0.75, 1.0):
        rows.append(["hub discount (calibrated:hub)", f"b = {b:g}", r10(sI - b * rI, gi), r10(sT - b * rT, gt)])
    res = {"encoder": enc, "queries": len(Q), "rows": [dict(zip(["method", "setting", "photo_R@10", "passage_R@10"], r))
                                                      for r in rows]}
    (OUT / "feedback_probe.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    md = ["# Per-item evidence beyond the cosine: feedback vs. the hub discount (probe, Flickr8k test)", "",
          __doc__.split("\n\n")[1].replace("\n", " "), "", __doc__.split("\n\n")[2].replace("\n  ", " "), "",
          f"Encoder `{enc}`, {len(Q)} test caption queries.", "",
          md_table(["method", "setting", "photo R@10 (among photos)", "passage R@10 (among passages)"], rows), ""]
    (OUT / "feedback_probe.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
