"""README.md of the candidate next model: its harness numbers beside the shipped model's committed ones.

Every number comes from a file: ``training.json`` / ``../compare.json`` (test recall),
``fusion/results.json`` / ``../../fusion/results.json`` (issue 14 targets), ``headtohead.json`` /
``../../fusion/headtohead.json`` (per-query intervals), ``hybrid/results.json`` /
``../../hybrid/results.json`` (issue 15 targets). Run from the repo root (reproduce.sh does).
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
RES = HERE.parent.parent


def load(p: Path) -> dict:
    return json.loads(p.read_text())


def f3(x: float) -> str:
    return f"{x:.3f}".replace("0.", ".", 1) if abs(x) < 1 else f"{x:.3f}"


def main() -> None:
    tr = load(HERE / "training.json")
    shipped = load(HERE.parent / "compare.json")["models"]["flickr8k-effnet"]
    fus_s, fus_n = load(RES / "fusion" / "results.json"), load(HERE / "fusion" / "results.json")
    h2h_s, h2h_n = load(RES / "fusion" / "headtohead.json"), load(HERE / "headtohead.json")
    hyb_s, hyb_n = load(RES / "hybrid" / "results.json"), load(HERE / "hybrid" / "results.json")
    tm = tr["test_metrics"]
    L = ["# The candidate next bundled model, measured before it ships", "",
         "The recipe ablation's best calib row (`text-top1-ema`: the top MiniLM layer unfrozen + EMA 0.995, "
         "[../ablation.md](../ablation.md)) trained once more here and run through the issue-14 (calibrated fusion) "
         "and issue-15 (hybrid) harnesses, beside the shipped `mindgap:flickr8k-effnet`'s committed results. "
         "Nothing else in docs/results uses it: making it the default means regenerating every result (the RAG and "
         "captioning reproductions alone were measured at ~35 + ~60 min and ~1 h on this 2-core machine: "
         "../../rag/reproduce.sh, ../../caption/reproduce.sh), which did not fit the session that measured this. "
         "`reproduce.sh` here retrains and re-measures; `summary.py` writes this file.", "",
         f"Training: `{tr['command']}`, {tr['train_seconds'] / 60:.0f} min on {tr['machine']} "
         f"({tr['steps']} steps). Model card of this run: [card.md](card.md).", "",
         "| Flickr8k test (1,000 photos, 5,000 captions) | shipped | candidate |", "|---|---|---|"]
    for d, name in (("text_to_image", "text → image"), ("image_to_text", "image → text")):
        for k in ("R@1", "R@10"):
            L.append(f"| {name} {k} | {f3(shipped[d][k])} | {f3(tm[d][k])} |")
    L += [f"| matched text–image cosine | {f3(shipped['matched_text_image_cos'])} | {f3(tm['matched_text_image_cos'])} |",
          "", "## Issue 14 targets (`run_fusion`, fits on fit/calib splits only)", "",
          "| method | target | shipped | candidate |", "|---|---|---|---|"]
    for a, b in zip(fus_s["targets"], fus_n["targets"]):
        assert a["target"] == b["target"] and a.get("method") == b.get("method")
        if a.get("method") is None or a["method"].startswith("any fixed"):
            continue
        mark = lambda t: ("met" if t["met"] else "**miss**") + f": {t['value'][:60]}"
        L.append(f"| `{a['method']}` | {a['target']} | {mark(a)} | {mark(b)} |")
    L += ["", "Per query against min-max, the strongest peer (2,000 test queries, paired bootstrap, 95 % interval of "
          "recommended − min-max; [headtohead.md](headtohead.md), shipped: "
          "[../../fusion/headtohead.md](../../fusion/headtohead.md)):", "",
          "| recommended | metric | shipped diff [CI] | candidate diff [CI] |", "|---|---|---|---|"]
    pick = lambda h, r, m: next(p for p in h["pairs"] if p["recommended"] == r and p["peer"] == "minmax" and p["metric"] == m)
    for r in ("calibrated", "calibrated@corpus"):
        for m in ("nDCG@10", "both@10"):
            cells = []
            for h in (h2h_s, h2h_n):
                p = pick(h, r, m)
                lo, hi = p["ci95"]
                v = "better" if lo > 0 else ("worse" if hi < 0 else "tie")
                cells.append(f"{p['diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] {v}")
            L.append(f"| `{r}` | {m} | {cells[0]} | {cells[1]} |")
    L += ["", "## Issue 15 targets (`run_hybrid`)", "", "| target | shipped | candidate |", "|---|---|---|"]
    for a, b in zip(hyb_s["targets"], hyb_n["targets"]):
        assert a["target"] == b["target"]
        L.append(f"| {a['target']} | {'met' if a['met'] else '**miss**'}: {a['value']} | "
                 f"{'met' if b['met'] else '**miss**'}: {b['value']} |")
    H = "hybrid calibrated (missing ≠ zero)"
    ms, mn = hyb_s["mmqa"]["methods"][H], hyb_n["mmqa"]["methods"][H]
    L += ["", f"MMQA hybrid overall: MRR {f3(ms['overall']['MRR'])} → {f3(mn['overall']['MRR'])}, nDCG@10 "
          f"{f3(ms['overall']['nDCG@10'])} → {f3(mn['overall']['nDCG@10'])}.", "",
          "## Reading", "",
          "On Flickr8k the candidate lifts recall, nDCG@10 and both@10 for every method above, and the label-free `auto` is no longer behind "
          "min-max on nDCG@10 (a tie now). It does not close issue 14's open gaps on its own: fitted `calibrated` "
          "still ties min-max on nDCG@10 (it now beats it on both@10), `auto` ties min-max on both metrics, and "
          "MMQA TextQ (16 questions, one question = .0625) stays below naive − .05 — for fitted `calibrated` it "
          "drops a question. Issue 15's targets hold with it; MMQA hybrid ImageQ rises, MRR dips.", ""]
    (HERE / "README.md").write_text("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
