"""Report writers shared by ``mindgap eval``, ``diagnose`` and ``lab``: markdown tables, JSON, report text.

The PNG plots live in :mod:`.plots` (re-exported here); ``diagnose``'s files are written by
:func:`mindgap.eval.diagnose.write_diagnose_outputs`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plots import (plot_bars, plot_lines, plot_overlaid_hist, plot_panels, plot_pca,  # noqa: F401 - re-exported
                    plot_recall_curves, plot_score_histograms, plot_tradeoff, plt)

SPLITS = ("TextQ", "ImageQ", "overall")


def fmt(v: Any, digits: int = 3) -> str:
    """Format a table cell: floats with ``digits`` decimals, ``None`` as an en dash."""
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "–"
        return f"{v:.{digits}f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub-flavoured markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(c, digits) for c in r) + " |" for r in rows]
    return "\n".join(out)


def write_json(path: Path, obj: Any) -> None:
    """Pretty JSON, keys in insertion order, floats as they are."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_default) + "\n", encoding="utf-8")


def _default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


# -- eval report ---------------------------------------------------------------------------
def write_eval_outputs(results: dict[str, Any], curves: dict[str, dict[str, np.ndarray]],
                       hists: dict[str, dict[str, np.ndarray]], out: Path, frontier: Any = None) -> dict[str, str]:
    """Write ``report.md``, ``results.json``, ``cosine_hist.png``, ``recall_curves.png`` and,
    when the benchmark has both TextQ and ImageQ, ``tradeoff.png``."""
    out.mkdir(parents=True, exist_ok=True)
    name = results["benchmark"].get("name", "benchmark")
    files = {"report": "report.md", "results": "results.json", "cosine_hist": "cosine_hist.png",
             "recall_curves": "recall_curves.png"}
    plot_score_histograms(hists, out / files["cosine_hist"], title=f"{name}: (query, gold) score by gold modality")
    plot_recall_curves(curves, out / files["recall_curves"], title=f"{name}: Recall@k")
    if frontier is not None and results.get("tradeoff"):
        files["tradeoff"] = "tradeoff.png"
        plot_tradeoff(frontier, results["tradeoff"], out / files["tradeoff"], title=name)
    results = dict(results, files=files)
    write_json(out / files["results"], results)
    (out / files["report"]).write_text(eval_markdown(results), encoding="utf-8")
    return files


def eval_markdown(res: dict[str, Any]) -> str:
    """The human-readable eval report."""
    b = res["benchmark"]
    ks = res["config"]["ks"]
    lines = [f"# Retrieval evaluation: {b.get('name')}", "", b.get("description", ""), "",
             f"- encoder: `{res['encoder']}`; store: `{res['store']['uri']}` "
             f"({res['store']['counts']['text']} texts, {res['store']['counts']['image']} images)",
             f"- test queries: TextQ {res['queries']['TextQ']}, ImageQ {res['queries']['ImageQ']}; fit pairs: "
             + "; ".join(f"{f['pairs']} {kind} ({', '.join(f'{v} → {m}' for m, v in f['by_gold_modality'].items())})"
                         for kind, f in res["fit"].items()),
             f"- fit split: `{json.dumps(b.get('fit_split'), ensure_ascii=False)}`",
             f"- test split: `{json.dumps(b.get('test_split'), ensure_ascii=False)}`",
             f"- Recall@k = {res['config']['recall']}; {res['config']['mrr']}; seed {res['config']['seed']}; "
             f"benchmark digest `{b.get('digest')}`",
             "- correctors are fitted on the fit split's labelled (query, gold) pairs unless marked `@pseudo` "
             "(each fit query's top-1 text and top-1 image stand in for its gold; no labels)", ""]
    if res["skipped"]:
        lines += ["Skipped correctors: " + "; ".join(f"`{k}` ({v})" for k, v in res["skipped"].items()), ""]
    heads = ["corrector"] + [f"R@{k}" for k in ks] + ["MRR", "nDCG@10"]
    for split in SPLITS:
        rows = []
        for spec, g in res["gaps"].items():
            m = g["metrics"][split]
            rows.append([spec] + [m.get(f"R@{k}") for k in ks] + [m.get("MRR"), m.get("nDCG@10")])
        n = res["queries"][split]
        lines += [f"## {split} (n = {n})", "", md_table(heads, rows), ""]
    lines += tradeoff_markdown(res)
    mg = {spec: g["multi_gold"] for spec, g in res["gaps"].items() if g.get("multi_gold")}
    if mg:
        lines += ["## Multi-gold relevance (every corpus item from the query's source is relevant)", "",
                  "Flickr8k: a caption query's relevant items are its photo *and* its sibling caption passage. "
                  "nDCG@10 over all relevant items; both@10 = share of queries with every relevant item in the "
                  "top 10; image / text R@10 = the query's relevant item of that modality is in the top 10.", ""]
        rows = [[spec, v.get("nDCG@10"), v.get("both@10"), v.get("image_R@10"), v.get("text_R@10"),
                 v.get("image_share@10")] for spec, v in mg.items()]
        lines += [md_table(["corrector", "nDCG@10", "both@10", "image R@10", "text R@10", "image share@10"], rows), ""]
    lines += ["## Gold scores and image share", "",
              "Mean ± std of the gold item's raw cosine and corrected score, by gold modality; "
              "share of images among the top-10 results.", ""]
    rows = []
    for spec, g in res["gaps"].items():
        st = g["gold_scores"]
        cell = lambda m, k: (f"{st[m][k + '_mean']:.3f} ± {st[m][k + '_std']:.3f}" if m in st and st[m].get(k + '_mean') is not None else "–")  # noqa: E731
        rows.append([spec, cell("text", "cos"), cell("image", "cos"), cell("text", "score"), cell("image", "score"),
                     g.get("image_share_top10")])
    lines += [md_table(["corrector", "cos (gold text)", "cos (gold image)", "score (gold text)", "score (gold image)",
                        "image share top-10"], rows), ""]
    lines += ["## Error analysis: gold rank within its modality vs. in the merged list", "",
              "Median over test queries (best-ranked gold); `in-modality top-10, merged > 10` counts queries the "
              "merge loses although the gold is top-10 among its own modality.", ""]
    rows = []
    for spec, g in res["gaps"].items():
        for split, a in g["rank_analysis"].items():
            rows.append([spec, split, a["n"], a["median_modality_rank"], a["median_merged_rank"],
                         a["mean_modality_rank"], a["mean_merged_rank"], a["modality_top10_but_merged_gt10"],
                         a["routed_away"]])
    lines += [md_table(["corrector", "split", "n", "median rank in modality", "median merged rank",
                        "mean rank in modality", "mean merged rank", "in-modality top-10, merged > 10", "routed away"],
                       rows, digits=1), ""]
    for spec, g in res["gaps"].items():
        rows = [[w["qid"], w["kind"], w["query"], w["modality_rank"], w["merged_rank"], w.get("naive_merged_rank")]
                for w in g["worst"]]
        lines += [f"### Worst test queries under `{spec}`", "",
                  md_table(["qid", "kind", "query", "rank in modality", "merged rank", "naive merged rank"], rows), ""]
    lines += ["## Figures", "", "![score histograms](cosine_hist.png)", "", "![recall curves](recall_curves.png)", ""]
    return "\n".join(lines)


def tradeoff_markdown(res: dict[str, Any]) -> list[str]:
    """The ImageQ-vs-TextQ trade-off section (empty without both query kinds)."""
    t = res.get("tradeoff")
    if not t:
        return []
    k = t["k"]
    best = t["best_overall_oracle"]
    lines = [f"## ImageQ vs. TextQ trade-off (Recall@{k})", "",
             f"Adding one constant `b` to every image cosine before the merge (`b > 0` favours images) trades "
             f"ImageQ against TextQ recall; the sweep below is exact (every reachable pair is on the curve in "
             f"`tradeoff.png`). Ceilings (the other modality out of the way): ImageQ {t['ceilings']['ImageQ']:.3f}, "
             f"TextQ {t['ceilings']['TextQ']:.3f}. Best overall R@{k} of any shift (an oracle, chosen on the test "
             f"queries): {best['overall']:.3f} at b = {best['b']:.3f} (ImageQ {best['ImageQ']:.3f}, "
             f"TextQ {best['TextQ']:.3f}).", "",
             md_table(["shift b", f"ImageQ R@{k}", f"TextQ R@{k}", f"overall R@{k}"],
                      [[f"{r['b']:+.3f}", r["ImageQ"], r["TextQ"], r["overall"]] for r in t["table"]]), "",
             f"Where each corrector sits: `Δ TextQ` is its TextQ R@{k} minus the best TextQ R@{k} a uniform shift "
             f"reaches at the same ImageQ R@{k} (> 0: above the frontier; – when no shift reaches its ImageQ "
             "recall).", "",
             md_table(["corrector", f"ImageQ R@{k}", f"TextQ R@{k}", f"overall R@{k}", "frontier TextQ at same ImageQ",
                       "Δ TextQ"],
                      [[name, c["ImageQ"], c["TextQ"], c["overall"], c["frontier_TextQ_at_same_ImageQ"],
                        None if c["delta_TextQ_vs_frontier"] is None else f"{c['delta_TextQ_vs_frontier']:+.3f}"]
                       for name, c in t["correctors"].items()]), "",
             "![trade-off](tradeoff.png)", ""]
    return lines


# -- diagnose report -----------------------------------------------------------------------
def diagnose_markdown(res: dict[str, Any]) -> str:
    """The human-readable diagnose report (from the public results)."""
    v = res["variants"]
    names = list(v)
    rows = [
        ["centroid gap ‖μ_img − μ_txt‖"] + [v[n]["centroid"]["gap_norm"] for n in names],
        ["cosine(μ_img, μ_txt)"] + [v[n]["centroid"]["centroid_cosine"] for n in names],
        ["dims carrying 50 % of ‖gap‖²"] + [v[n]["centroid"]["dims_50"] for n in names],
        ["dims carrying 90 % of ‖gap‖²"] + [v[n]["centroid"]["dims_90"] for n in names],
        ["… a random direction needs (50 % / 90 %)"] + [f"{v[n]['centroid']['dims_50_random']} / "
                                                         f"{v[n]['centroid']['dims_90_random']}" for n in names],
        ["share of the top-5 dims"] + [v[n]["centroid"]["top5_share"] for n in names],
        ["linear probe accuracy (held out)"] + [v[n]["separability"]["probe_accuracy"] for n in names],
        ["matched cos (mean)"] + [v[n]["cosines"]["matched_mean"] for n in names],
        ["unmatched cos (mean)"] + [v[n]["cosines"]["unmatched_mean"] for n in names],
        ["matched − unmatched"] + [v[n]["cosines"]["margin"] for n in names],
        ["AUC matched > unmatched"] + [v[n]["cosines"]["auc"] for n in names],
        ["two captions of one image (cos)"] + [v[n]["cosines"]["text_text_same_image_mean"] for n in names],
        ["image→text logit entropy (nats)"] + [v[n]["logit_entropy"]["entropy_mean"] for n in names],
        ["… normalised by log n"] + [v[n]["logit_entropy"]["entropy_normalised"] for n in names],
        ["image→text top-1 accuracy"] + [v[n]["logit_entropy"]["top1_accuracy"] for n in names],
    ]
    d = v["raw"]["centroid"]["dims"]
    le = v["raw"]["logit_entropy"]
    lines = [f"# Modality-gap diagnostics: `{res['encoder']}`", "",
             f"- data: `{res['data']}` split `{res['split']}`: {res['images']} images, {res['captions']} captions"
             f" (limit {res['limit']}, seed {res['seed']})",
             f"- fixes fitted on: {res['fit']['how']} ({res['fit']['images']} images, {res['fit']['captions']} captions)",
             f"- embedding dims: {d}; a random isotropic direction in {d} dims has 50 % / 90 % of its energy in "
             f"its top {v['raw']['centroid']['dims_50_random']} / {v['raw']['centroid']['dims_90_random']} "
             "components — the baseline for \"the gap is carried by few dimensions\"",
             f"- logit entropy: {le['classes']}-way image → caption classification at logit scale {le['logit_scale']:.1f}",
             "", md_table(["measure"] + names, rows), "",
             "How each variant was produced: " + "; ".join(f"**{n}**: {v[n]['how']}" for n in names), "",
             "![matched vs unmatched](matched_unmatched.png)", "", "![gap dimensions](gap_dims.png)", "",
             "![PCA](embedding_pca.png)", ""]
    return "\n".join(lines)


__all__ = ["md_table", "fmt", "write_json", "plot_score_histograms", "plot_recall_curves", "plot_overlaid_hist",
           "plot_panels", "plot_bars", "plot_lines", "plot_pca", "write_eval_outputs", "eval_markdown", "tradeoff_markdown",
           "diagnose_markdown"]
