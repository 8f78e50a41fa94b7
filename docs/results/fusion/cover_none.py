"""`calibrated`'s coverage gain with and without the "the store holds none" term (``cover_none``).

The gain as first shipped, ``λ · log((S_j + ε)/(S_{j−1} + ε))``, gives the first candidate of
every modality ``λ · log(1 + P_1/ε)`` however unlikely it is: on the MMQA slice that put an image
above the gold passage of a text question (issue 14's MMQA target allows no lost TextQ question).
``cover_none`` (the default since) adds N, the list posterior's probability that the store holds
no relevant item of the modality (the prior π's share of its "none" mass), to both S: a modality
that probably has nothing for the query counts as covered and takes no place from the other. It
has no parameter to tune. This compares the two on data the defaults may be chosen on — the calib
photos (two folds, as select_on_calib.py) and the MMQA fit half (in-sample for the fit) — and then
on the held-out test sets (Flickr8k test and the MMQA test half, from run_fusion's results.json).

Run from the repo root after run_fusion: ``python docs/results/fusion/cover_none.py`` →
cover_none.{json,md} (stores in runs/fusion-select/ and runs/fusion/).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mindgap.encoders import DEFAULT_OFFLINE_SPEC
from mindgap.eval.benchmarks import build_caption_benchmark, calib_image_ids
from mindgap.eval.reports import md_table
from mindgap.eval.runner import EvalConfig, build_fit_data, run_eval

OUT = Path(__file__).resolve().parent
PAIRS = [("calibrated", "calibrated:cover_none=false"), ("calibrated@corpus", "calibrated:cover_none=false@corpus")]
SPECS = [s for p in PAIRS for s in p]


def calib_folds(enc: str) -> dict:
    ids = sorted(calib_image_ids(enc))
    rng = np.random.default_rng(0)  # the folds of select_on_calib.py
    perm = [ids[i] for i in rng.permutation(len(ids))]
    halves = {"A": sorted(perm[: len(ids) // 2]), "B": sorted(perm[len(ids) // 2:])}
    folds = {}
    for name, (fit_ids, test_ids) in {"A": (halves["A"], halves["B"]), "B": (halves["B"], halves["A"])}.items():
        bench = build_caption_benchmark("flickr8k_224", test_split="val", fit_split="val", fit_images=fit_ids,
                                        test_images=test_ids, encoder=enc, name=f"calib-fold-{name}")
        res = run_eval(bench, f"exact:runs/fusion-select/fold-{name}.store", encoder=enc,
                       cfg=EvalConfig(gaps=["minmax"] + SPECS, allow_training_overlap=False), progress=False)
        folds[name] = {s: {"nDCG@10": (g.get("multi_gold") or {}).get("nDCG@10"),
                           "both@10": (g.get("multi_gold") or {}).get("both@10"),
                           "ImageQ_R@10": g["metrics"]["ImageQ"].get("R@10"),
                           "TextQ_R@10": g["metrics"]["TextQ"].get("R@10")} for s, g in res["gaps"].items()}
    return {s: {k: float(np.mean([folds[f][s][k] for f in folds])) for k in folds["A"][s]} for s in folds["A"]}


def mmqa_halves(enc: str) -> dict:
    from mmqa_textq_probe import mmqa_slice  # (this folder: the script's own)

    retr, bench, cfg, fit, test = mmqa_slice(enc)
    for s in SPECS:
        base, _, pairs = s.partition("@")
        retr.fit_gap(base, build_fit_data(retr, bench, fit, cfg, pairs=pairs or "gold"), save=False, name=f"cn:{s}")
    out = {}
    for split, emb in (("fit (in-sample)", fit), ("test", test)):
        found = {}
        for s in ["naive"] + SPECS:
            gap = "naive" if s == "naive" else f"cn:{s}"
            found[s] = {"text": {}, "image": {}}
            for i, q in enumerate(emb.queries):
                if q.gold_modality not in found[s]:
                    continue
                hits = retr.search_vectors(emb.vecs[i : i + 1], "text", k=10, gap=gap, fetch=False)[0]
                found[s][q.gold_modality][q.query or q.qid] = any(h.id in q.gold_ids for h in hits)
        out[split] = {s: {"TextQ_R@10": round(float(np.mean(list(f["text"].values()))), 4),
                          "ImageQ_R@10": round(float(np.mean(list(f["image"].values()))), 4),
                          "TextQ_lost_vs_naive": [t for t, ok in found["naive"]["text"].items() if ok and not f["text"][t]],
                          "n": {m: len(v) for m, v in f.items()}} for s, f in found.items()}
    retr.close()
    return out


def main() -> None:
    enc = DEFAULT_OFFLINE_SPEC
    calib = calib_folds(enc)
    mmqa = mmqa_halves(enc)
    fus = json.loads((OUT / "results.json").read_text())
    test = {}
    for s in SPECS:
        f, m = fus["flickr8k"]["methods"][s], fus["mmqa"]["methods"][s]
        test[s] = {"nDCG@10": (f["multi_gold"] or {}).get("nDCG@10"), "both@10": (f["multi_gold"] or {}).get("both@10"),
                   "ImageQ_R@10": f["ImageQ_R@10"], "TextQ_R@10": f["TextQ_R@10"],
                   "delta_TextQ_vs_frontier": f["delta_TextQ_vs_frontier"],
                   "mmqa_TextQ_R@10": m["TextQ_R@10"], "mmqa_ImageQ_R@10": m["ImageQ_R@10"]}
    res = {"encoder": enc, "calib_two_folds": calib, "mmqa": mmqa, "test": test}
    (OUT / "cover_none.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    r4 = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    md = ["# `calibrated`'s coverage gain: with the \"store holds none\" term (`cover_none`, default) and without", "",
          __doc__.split("\n\n")[1].replace("\n", " "), "", f"Encoder `{enc}`.", "",
          "## Calib photos (Flickr8k val, held out from training; two folds of 100, as select_on_calib.py)", "",
          md_table(["method (mean of 2 folds)", "nDCG@10", "both@10", "ImageQ R@10", "TextQ R@10"],
                   [[s, r4(v["nDCG@10"]), r4(v["both@10"]), r4(v["ImageQ_R@10"]), r4(v["TextQ_R@10"])]
                    for s, v in calib.items()]), "",
          "## MMQA slice, per half (fitted on the fit half; 16 TextQ questions per half: one is .0625)", "",
          md_table(["half", "method", "TextQ R@10", "ImageQ R@10", "TextQ questions lost vs. naive"],
                   [[h, s, r4(v["TextQ_R@10"]), r4(v["ImageQ_R@10"]),
                     "; ".join(t[:60] for t in v["TextQ_lost_vs_naive"]) or "–"]
                    for h, d in mmqa.items() for s, v in d.items()]), "",
          "## Held-out test sets (run_fusion: Flickr8k test mixed store, MMQA test half)", "",
          md_table(["method", "nDCG@10", "both@10", "ImageQ R@10", "TextQ R@10", "Δ TextQ vs. frontier",
                    "MMQA TextQ R@10", "MMQA ImageQ R@10"],
                   [[s, r4(v["nDCG@10"]), r4(v["both@10"]), r4(v["ImageQ_R@10"]), r4(v["TextQ_R@10"]),
                     r4(v["delta_TextQ_vs_frontier"]), r4(v["mmqa_TextQ_R@10"]), r4(v["mmqa_ImageQ_R@10"])]
                    for s, v in test.items()]), ""]
    (OUT / "cover_none.md").write_text("\n".join(md), encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()
