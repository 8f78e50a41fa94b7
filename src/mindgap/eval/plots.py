"""Plot helpers shared by the eval, diagnose, lab, fusion and prompt-bench reports (PNG files).

Plots use matplotlib's non-interactive Agg backend (``pip install 'mindgap[ml]'``) and
carry no timestamps, so reruns with the same inputs write the same files. This module
imports no other report module: reports, diagnose, tradeoff, lab and fusion import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import require

if TYPE_CHECKING:
    from .tradeoff import Frontier

SPLITS = ("TextQ", "ImageQ", "overall")
PNG_META = {"Software": None}


def plt():  # noqa: ANN201 - returns the pyplot module
    """matplotlib.pyplot with the Agg backend (a clear error if matplotlib is missing)."""
    mpl = require("matplotlib", "ml")
    mpl.use("Agg", force=True)
    import matplotlib.pyplot as pyplot

    return pyplot


def save_figure(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG (no timestamp metadata; parent folders created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt().close(fig)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


_MARKERS = "os^Dv<>pPXh*"


def plot_tradeoff(fr: Frontier, summary: dict[str, Any], path: Any, *, title: str = "") -> None:
    """ImageQ R@k (x) vs. TextQ R@k (y): the shift frontier and every corrector as a labelled point."""
    pyplot = plt()
    k = fr.k
    c = fr.curve()
    fig, ax = pyplot.subplots(figsize=(10.5, 5.4))
    ax.plot(c[:, 1], c[:, 2], color="0.25", lw=1.6, label="uniform image shift b (exact sweep)", zorder=2)
    ax.fill_between(c[:, 1], 0, c[:, 2], color="0.85", alpha=0.5, zorder=1, lw=0)
    rows = summary["table"]
    pts = summary["correctors"]
    xmax = min(1.0, max([fr.ceilings()["ImageQ"]] + [p["ImageQ"] for p in pts.values()]) * 1.12 + 0.01)
    ymax = min(1.02, max([fr.ceilings()["TextQ"]] + [p["TextQ"] for p in pts.values()]) * 1.08 + 0.01)
    zero_i = next((i for i, r in enumerate(rows) if r["b"] == 0), 0)
    order = [zero_i] + [i for i in range(len(rows)) if i != zero_i]
    shown: list[tuple[float, float]] = []
    for i in order:  # label b = 0 first, then every other b whose point is not crowded
        r = rows[i]
        ax.plot(r["ImageQ"], r["TextQ"], "o", ms=3.5, color="0.35", zorder=3)
        x, y = r["ImageQ"] / xmax, r["TextQ"] / ymax
        if (i - zero_i) % 2 == 0 and all(abs(x - a) > 0.09 or abs(y - b) > 0.04 for a, b in shown):
            ax.annotate(f"b={r['b']:+.2f}", (r["ImageQ"], r["TextQ"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, color="0.35")
            shown.append((x, y))
    best = summary["best_overall_oracle"]
    ni, nt = fr.n_image, fr.n_text
    xs = np.linspace(0, 1, 50)
    ys = (best["overall"] * (ni + nt) - ni * xs) / nt  # iso-overall line through the best shift
    ax.plot(xs, ys, ls=":", lw=1, color="tab:gray",
            label=f"overall R@{k} = {best['overall']:.3f} (best shift, oracle b={best['b']:+.2f})")
    cmap = pyplot.get_cmap("tab10")
    for i, (name, p) in enumerate(pts.items()):
        d = p["delta_TextQ_vs_frontier"]
        extra = "" if d is None else f", Δ {d:+.3f}"
        ax.plot(p["ImageQ"], p["TextQ"], _MARKERS[i % len(_MARKERS)], ms=8, color=cmap(i % 10), mec="black", mew=0.5,
                zorder=5, label=f"{name}: {p['ImageQ']:.3f} / {p['TextQ']:.3f}{extra}")
    placed: list[tuple[float, float]] = []
    for i, (name, p) in enumerate(pts.items()):  # name the points that are not in a crowd (the legend has all)
        x, y = p["ImageQ"] / xmax, p["TextQ"] / ymax
        if all(abs(x - a) > 0.06 or abs(y - b) > 0.035 for a, b in placed):
            ax.annotate(name, (p["ImageQ"], p["TextQ"]), xytext=(7, -3), textcoords="offset points", fontsize=7.5,
                        color=cmap(i % 10), zorder=6)
            placed.append((x, y))
    ax.set_xlim(-0.015 * xmax, xmax)  # a little room: points at recall 0 stay whole
    ax.set_ylim(-0.015 * ymax, ymax)
    ax.set_xlabel(f"ImageQ Recall@{k} (gold is an image; n={ni})")
    ax.set_ylabel(f"TextQ Recall@{k} (gold is a text; n={nt})")
    ax.set_title(f"{title}: ImageQ vs. TextQ trade-off" if title else "ImageQ vs. TextQ trade-off", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              title=f"corrector: ImageQ / TextQ R@{k},\nΔ TextQ vs. the shift frontier", title_fontsize=7.5)
    fig.tight_layout()
    save_figure(fig, Path(path))


__all__ = ["plt", "save_figure", "plot_score_histograms", "plot_recall_curves", "plot_overlaid_hist", "plot_panels",
           "plot_bars", "plot_lines", "plot_pca", "plot_tradeoff", "PNG_META"]
