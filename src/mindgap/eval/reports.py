"""Report writers shared by ``mindgap eval``, ``diagnose`` and ``lab``: markdown tables, JSON, PNG plots.

Plots use matplotlib's non-interactive Agg backend (``pip install 'mindgap[ml]'``) and
carry no timestamps, so reruns with the same inputs write the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import require

SPLITS = ("TextQ", "ImageQ", "overall")
_PNG_META = {"Software": None}


def plt():  # noqa: ANN201 - returns the pyplot module
    """matplotlib.pyplot with the Agg backend (a clear error if matplotlib is missing)."""
    mpl = require("matplotlib", "ml")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    return pyplot


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


# -- plots ---------------------------------------------------------------------------------
def plot_score_histograms(hists: dict[str, dict[str, np.ndarray]], path: Path, *, title: str = "") -> None:
    """Histograms of the (query, gold) score per gold modality: raw cosine, then each corrector.

    The paper's Figure 2: two separated bumps before correction, overlapping after.
    """
    pyplot = plt()
    names = ["raw"] + [k for k in hists if k not in {"raw", "naive"}]
    names = [n for n in names if n in hists]
    ncol = min(4, len(names))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = pyplot.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        vals = {m: np.asarray(hists[name].get(m, []), float) for m in ("text", "image")}
        vals = {m: v[np.isfinite(v)] for m, v in vals.items()}
        both = np.concatenate(list(vals.values()))
        bins = np.linspace(both.min(), both.max(), 41) if len(both) and np.ptp(both) > 0 else 40
        for m, color in (("text", "tab:blue"), ("image", "tab:orange")):
            v = vals[m]
            if len(v):
                ax.hist(v, bins=bins, alpha=0.55, color=color, density=True,
                        label=f"gold {m}: μ {v.mean():.2f}, σ {v.std():.2f} (n={len(v)})")
                ax.axvline(v.mean(), color=color, lw=1, ls="--")
        ax.set_title("raw cosine (naive)" if name == "raw" else f"after {name}", fontsize=9)
        ax.set_xlabel("cosine" if name == "raw" else "corrected score", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_recall_curves(curves: dict[str, dict[str, np.ndarray]], path: Path, *, title: str = "") -> None:
    """Recall@k (k = 1..depth, log x) per corrector, one panel per split."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(13.5, 3.8), squeeze=False)
    cmap = pyplot.get_cmap("tab10")
    for ax, split in zip(axes[0], SPLITS):
        for i, (name, c) in enumerate(curves.items()):
            y = np.asarray(c.get(split, []))
            if len(y):
                ax.plot(np.arange(1, len(y) + 1), y, label=name, lw=1.5, color="black" if name == "naive" else
                        cmap(i % 10), ls="--" if name == "naive" else ("-", "-.", ":")[(i // 10) % 3])
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k")
        ax.set_ylabel("Recall@k")
        ax.set_title(split, fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(0.865, 0.5), title="corrector",
               title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    _save(fig, path)


def plot_overlaid_hist(series: dict[str, np.ndarray], path: Path, *, title: str, xlabel: str) -> None:
    """One panel, several overlaid density histograms."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5.2, 3.4))
    for name, v in series.items():
        v = np.asarray(v, float)
        if len(v):
            ax.hist(v, bins=50, alpha=0.5, density=True, label=f"{name} (n={len(v)})")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_panels(panels: dict[str, dict[str, np.ndarray]], path: Path, *, title: str, xlabel: str) -> None:
    """Several panels of overlaid histograms (e.g. matched vs. unmatched before/after a fix)."""
    pyplot = plt()
    n = len(panels)
    fig, axes = pyplot.subplots(1, n, figsize=(4.2 * n, 3.3), squeeze=False)
    for ax, (pname, series) in zip(axes[0], panels.items()):
        for name, v in series.items():
            v = np.asarray(v, float)
            if len(v):
                ax.hist(v, bins=50, alpha=0.5, density=True, label=name)
        ax.set_title(pname, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_bars(values: dict[str, np.ndarray], path: Path, *, title: str, xlabel: str, ylabel: str,
              reference: tuple[str, np.ndarray] | None = None) -> None:
    """Sorted profile(s), e.g. cumulative share of the gap over dimensions; ``reference`` is a
    dashed baseline curve (e.g. a gap spread evenly over all dimensions)."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6.0, 3.8))
    for name, v in values.items():
        v = np.asarray(v, float)
        line, = ax.plot(np.arange(1, len(v) + 1), v, label=name)
        for level in (0.5, 0.9):  # mark where each curve crosses 50 % / 90 %
            n = int(np.searchsorted(v, level) + 1)
            if n <= len(v):
                ax.plot(n, v[n - 1], "o", ms=4, color=line.get_color())
    if reference is not None:
        rname, rv = reference
        ax.plot(np.arange(1, len(rv) + 1), rv, ls="--", color="0.5", lw=1, label=rname)
    for level in (0.5, 0.9):
        ax.axhline(level, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_lines(x: Sequence[Any], series: dict[str, Sequence[float]], path: Path, *, title: str, xlabel: str,
               ylabel: str, right: dict[str, Sequence[float]] | None = None, right_label: str = "") -> None:
    """Line plot over a categorical or numeric x, with optional series on a right axis."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5.6, 3.6))
    xs = np.arange(len(x))
    for name, v in series.items():
        ax.plot(xs, v, marker="o", label=name)
    ax.set_xticks(xs, [str(v) for v in x])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        for name, v in right.items():
            ax2.plot(xs, v, marker="s", ls="--", color="tab:red", label=name)
        ax2.set_ylabel(right_label)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=7, loc="best")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=_PNG_META)
    plt().close(fig)


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
        from .tradeoff import plot_tradeoff

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
def write_diagnose_outputs(res: dict[str, Any], emb: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> dict[str, str]:
    """Write ``report.md``, ``diagnose.json`` and the PNGs of ``mindgap diagnose``."""
    from .diagnose import public

    out.mkdir(parents=True, exist_ok=True)
    files = {"report": "report.md", "results": "diagnose.json", "cosines": "matched_unmatched.png",
             "gap_dims": "gap_dims.png", "pca": "embedding_pca.png"}
    v = res["variants"]
    plot_panels({f"{k} (AUC {x['cosines']['auc']:.3f})": {"matched": x["cosines"]["_matched"],
                                                          "unmatched": x["cosines"]["_unmatched"]}
                 for k, x in v.items()}, out / files["cosines"],
                title="cos(caption, image): matched vs. unmatched", xlabel="cosine")
    from .diagnose import random_cumulative_share

    d = len(next(iter(v.values()))["centroid"]["_cumulative_share"])
    plot_bars({f"{k} (50 %: {x['centroid']['dims_50']} dims, 90 %: {x['centroid']['dims_90']})":
               x["centroid"]["_cumulative_share"] for k, x in v.items()}, out / files["gap_dims"],
              title="share of ‖μ_img − μ_txt‖² carried by the top-n dimensions",
              xlabel="dimensions, largest gap component first", ylabel="cumulative share of ‖gap‖²",
              reference=("a random isotropic direction (baseline)", random_cumulative_share(d)))
    plot_pca(emb, out / files["pca"], {k: x["separability"]["probe_accuracy"] for k, x in v.items()})
    pub = public(dict(res, files=files))
    write_json(out / files["results"], pub)
    (out / files["report"]).write_text(diagnose_markdown(pub), encoding="utf-8")
    return files


def plot_pca(emb: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, probe: dict[str, float] | None = None,
             max_points: int = 600) -> None:
    """The classic gap picture per variant: x = projection on the gap direction
    (μ_img − μ_txt, unit length), y = the top principal component orthogonal to it."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(emb), figsize=(4.2 * len(emb), 3.9), squeeze=False)
    for ax, (name, (img, txt)) in zip(axes[0], emb.items()):
        x = np.concatenate([img, txt]).astype(np.float64)
        g = img.mean(0) - txt.mean(0)
        g = g / (np.linalg.norm(g) + 1e-12)
        px = x @ g
        resid = x - np.outer(px, g)
        resid -= resid.mean(0)
        _, vecs = np.linalg.eigh(resid.T @ resid)  # d×d: far cheaper than an SVD of the n×d matrix
        py = resid @ vecs[:, -1]
        ni = len(img)
        si, st = max(1, ni // max_points), max(1, len(txt) // max_points)
        ax.scatter(px[:ni:si], py[:ni:si], s=5, alpha=0.5, color="tab:orange", label="image")
        ax.scatter(px[ni::st], py[ni::st], s=5, alpha=0.5, color="tab:blue", label="text")
        for v, c in ((px[:ni].mean(), "tab:orange"), (px[ni:].mean(), "tab:blue")):
            ax.axvline(v, color=c, lw=1.2, ls="--")
        extra = f" — probe acc {probe[name]:.3f}" if probe and name in probe else ""
        ax.set_title(f"{name}{extra}", fontsize=9)
        ax.set_xlabel("projection on the gap direction μ_img − μ_txt", fontsize=8)
        ax.set_ylabel("top orthogonal principal component", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, markerscale=3, loc="upper right")
    fig.suptitle("image vs. text embeddings along the gap (dashed: modality means)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


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
           "write_diagnose_outputs", "diagnose_markdown"]
