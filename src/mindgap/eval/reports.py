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
        for m, color in (("text", "tab:blue"), ("image", "tab:orange")):
            v = np.asarray(hists[name].get(m, []), float)
            v = v[np.isfinite(v)]
            if len(v):
                ax.hist(v, bins=40, alpha=0.55, color=color, density=True, label=f"gold {m} (n={len(v)})")
        ax.set_title("raw cosine (naive)" if name == "raw" else f"after {name}", fontsize=9)
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
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 3.6), squeeze=False)
    for ax, split in zip(axes[0], SPLITS):
        for name, c in curves.items():
            y = np.asarray(c.get(split, []))
            if len(y):
                ax.plot(np.arange(1, len(y) + 1), y, label=name, lw=1.4,
                        ls="--" if name == "naive" else "-")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("k")
        ax.set_ylabel("Recall@k")
        ax.set_title(split, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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


def plot_bars(values: dict[str, np.ndarray], path: Path, *, title: str, xlabel: str, ylabel: str) -> None:
    """Sorted bar profile(s), e.g. cumulative share of the gap over dimensions."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5.2, 3.4))
    for name, v in values.items():
        v = np.asarray(v, float)
        ax.plot(np.arange(1, len(v) + 1), v, label=name)
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
                       hists: dict[str, dict[str, np.ndarray]], out: Path) -> dict[str, str]:
    """Write ``report.md``, ``results.json``, ``cosine_hist.png``, ``recall_curves.png``."""
    out.mkdir(parents=True, exist_ok=True)
    name = results["benchmark"].get("name", "benchmark")
    files = {"report": "report.md", "results": "results.json", "cosine_hist": "cosine_hist.png",
             "recall_curves": "recall_curves.png"}
    plot_score_histograms(hists, out / files["cosine_hist"], title=f"{name}: (query, gold) score by gold modality")
    plot_recall_curves(curves, out / files["recall_curves"], title=f"{name}: Recall@k")
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
             f"- test queries: TextQ {res['queries']['TextQ']}, ImageQ {res['queries']['ImageQ']}; "
             f"fit pairs: {res['fit']['pairs']} ({res['fit']['kind']}, {res['fit']['by_gold_modality']})",
             f"- fit split: `{json.dumps(b.get('fit_split'), ensure_ascii=False)}`",
             f"- test split: `{json.dumps(b.get('test_split'), ensure_ascii=False)}`",
             f"- Recall@k = {res['config']['recall']}; {res['config']['mrr']}; seed {res['config']['seed']}", ""]
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
    lines += ["## Gold scores and image share", "",
              "Mean ± std of the gold item's raw cosine and corrected score, by gold modality; "
              "share of images among the top-10 results.", ""]
    rows = []
    for spec, g in res["gaps"].items():
        st = g["gold_scores"]
        cell = lambda m, k: (f"{st[m][k + '_mean']:.3f} ± {st[m][k + '_std']:.3f}" if m in st else "–")  # noqa: E731
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
    plot_bars({k: x["centroid"]["_cumulative_share"] for k, x in v.items()}, out / files["gap_dims"],
              title="share of ||gap||² carried by the top-n dimensions", xlabel="dimensions (sorted)",
              ylabel="cumulative share")
    plot_pca(emb, out / files["pca"])
    pub = public(dict(res, files=files))
    write_json(out / files["results"], pub)
    (out / files["report"]).write_text(diagnose_markdown(pub), encoding="utf-8")
    return files


def plot_pca(emb: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, max_points: int = 600) -> None:
    """2-D PCA scatter of image vs. text embeddings per variant (the classic gap picture)."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(emb), figsize=(3.6 * len(emb), 3.4), squeeze=False)
    for ax, (name, (img, txt)) in zip(axes[0], emb.items()):
        x = np.concatenate([img, txt]).astype(np.float64)
        x -= x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        p = x @ vt[:2].T
        ni = len(img)
        step_i = max(1, ni // max_points)
        step_t = max(1, len(txt) // max_points)
        ax.scatter(p[:ni:step_i, 0], p[:ni:step_i, 1], s=4, alpha=0.5, label="image")
        ax.scatter(p[ni::step_t, 0], p[ni::step_t, 1], s=4, alpha=0.5, label="text")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, markerscale=3)
    fig.suptitle("embeddings, first two principal components", fontsize=10)
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
             f"- embedding dims: {d} (a uniform gap would need {d // 2} / {int(0.9 * d)} dims for 50 % / 90 %)",
             f"- logit entropy: {le['classes']}-way image → caption classification at logit scale {le['logit_scale']:.1f}",
             "", md_table(["measure"] + names, rows), "",
             "How each variant was produced: " + "; ".join(f"**{n}**: {v[n]['how']}" for n in names), "",
             "![matched vs unmatched](matched_unmatched.png)", "", "![gap dimensions](gap_dims.png)", "",
             "![PCA](embedding_pca.png)", ""]
    return "\n".join(lines)


__all__ = ["md_table", "fmt", "write_json", "plot_score_histograms", "plot_recall_curves", "plot_overlaid_hist",
           "plot_panels", "plot_bars", "plot_lines", "plot_pca", "write_eval_outputs", "eval_markdown",
           "write_diagnose_outputs", "diagnose_markdown"]
