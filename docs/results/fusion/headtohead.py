"""Issue 14's head-to-head misses, measured per query: is the recommended corrector's gap to the best
peer on the Flickr8k test mixed store larger than chance?

For the recommended correctors (``calibrated`` fitted on gold calib pairs; ``calibrated@corpus``,
the label-free ``auto`` that ``mindgap index`` fits) and every method they must beat (quota, RRF,
min-max, DBSF, zscore, zscore@pseudo) — and each against itself without the hubness term
(``hub=0``, the default before it) — the same fits and searches as ``run_fusion``'s harness
(``run_eval``: fit split only, 2,000 held-out test queries, k = 10), kept per query: nDCG@10 with
both relevant items (the photo and its sibling caption) and both@10. Then the paired difference
recommended − peer with a 95 % paired-bootstrap interval (10,000 resamples of the queries, seed 0)
and the number of queries on which the two differ at all.

Run from the repo root: ``python docs/results/fusion/headtohead.py`` → headtohead.json / .md here
(``ENCODER=spec``, ``OUT=dir`` and ``RUNS=dir`` — where its stores live — measure another encoder elsewhere).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mindgap.encoders import DEFAULT_OFFLINE_SPEC
from mindgap.eval.benchmarks import build_caption_benchmark
from mindgap.eval.metrics import ndcg_at_k
from mindgap.eval.reports import md_table
from mindgap.eval.runner import (EvalConfig, _embed_queries, _fresh, _parse_entry, benchmark_retriever, build_fit_data,
                                  relevant_sets)

OUT = Path(os.environ.get("OUT") or Path(__file__).parent)
RECOMMENDED = ["calibrated", "calibrated@corpus"]
PEERS = ["quota", "rrf", "minmax", "dbsf", "zscore", "zscore@pseudo"]
#: each recommended corrector against itself without the hubness term (the default before ``hub``)
ABLATIONS = {"calibrated": "calibrated:hub=0", "calibrated@corpus": "calibrated:hub=0@corpus"}
K, B = 10, 10_000


def main() -> None:
    enc = os.environ.get("ENCODER") or DEFAULT_OFFLINE_SPEC
    tag = enc.replace(":", "_").replace("/", "_")
    bench = build_caption_benchmark("flickr8k_224", encoder=enc)
    runs = os.environ.get("RUNS") or "runs/fusion"
    retr, _ = benchmark_retriever(bench, f"exact:{runs}/flickr8k-{tag}.store", encoder=enc)
    cfg = EvalConfig()
    test = _embed_queries(retr, bench, bench.split("test"), False)
    fit = _embed_queries(retr, bench, bench.split("fit"), False)
    rel = relevant_sets(bench, test.queries)
    fit_data: dict[str, object] = {}
    per: dict[str, dict[str, np.ndarray]] = {}
    for g in RECOMMENDED + PEERS + list(ABLATIONS.values()):
        label, spec, kind = _parse_entry(g, cfg.fit_pairs)
        if kind not in fit_data:
            fit_data[kind] = build_fit_data(retr, bench, fit, cfg, pairs=kind)
        retr.fit_gap(spec, data=_fresh(fit_data[kind]), save=False, name=f"h2h:{label}")
        nd, both = np.zeros(len(rel)), np.zeros(len(rel))
        for qm in ("text", "image"):
            rows = [i for i in range(len(test.queries)) if test.mods[i] == qm]
            if not rows:
                continue
            hits = retr.search_vectors(test.vecs[rows], qm, k=K, gap=f"h2h:{label}", fetch=False)
            for i, hs in zip(rows, hits):
                rank = {h.id: j + 1 for j, h in enumerate(hs[:K])}
                nd[i] = ndcg_at_k([rank.get(x) for x in rel[i]], K)
                both[i] = float(all(x in rank for x in rel[i]))
        per[g] = {"nDCG@10": nd, "both@10": both}
        print(g, round(float(nd.mean()), 4), round(float(both.mean()), 4), flush=True)
    retr.close()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(rel), (B, len(rel)))
    rows, res = [], {"encoder": enc, "queries": len(rel), "resamples": B, "means": {}, "pairs": []}
    for g, d in per.items():
        res["means"][g] = {m: round(float(v.mean()), 4) for m, v in d.items()}
    for r in RECOMMENDED:
        for p in PEERS + [ABLATIONS[r]]:
            for m in ("nDCG@10", "both@10"):
                diff = per[r][m] - per[p][m]
                boot = diff[idx].mean(axis=1)
                lo, hi = np.percentile(boot, [2.5, 97.5])
                row = {"recommended": r, "peer": p, "metric": m, "diff": round(float(diff.mean()), 4),
                       "ci95": [round(float(lo), 4), round(float(hi), 4)],
                       "queries_differ": int((diff != 0).sum()), "rec_better": int((diff > 0).sum()),
                       "peer_better": int((diff < 0).sum())}
                res["pairs"].append(row)
                verdict = "better" if lo > 0 else ("worse" if hi < 0 else "tie (CI spans 0)")
                rows.append([r, p, m, per[r][m].mean().round(4), per[p][m].mean().round(4), row["diff"],
                             f"[{row['ci95'][0]:+.4f}, {row['ci95'][1]:+.4f}]",
                             f"{row['rec_better']} / {row['peer_better']}", verdict])
    (OUT / "headtohead.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ["# Head-to-head per query: the recommended correctors vs. every peer (Flickr8k test mixed store)", "",
          f"`docs/results/fusion/headtohead.py`, `{enc}`, {len(rel)} test queries, k = {K}; fits on the fit split "
          "only (as in report.md). diff = recommended − peer (mean over queries); 95 % paired-bootstrap interval "
          f"({B:,} resamples of the queries); queries better / worse = on how many queries the recommended one "
          "scores higher / lower.", "",
          md_table(["recommended", "peer", "metric", "recommended", "peer", "diff", "95 % CI", "queries better / worse",
                    "verdict"], rows), ""]
    (OUT / "headtohead.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
