"""Report of ``mindgap prompt-bench``: ``report.md``, ``results.json`` and PNGs (matplotlib Agg).

Figures: ``grounding_accuracy.png`` (accuracy per prompt variant on both grounding sets,
with and without the prior, chance marked), ``prompt_gallery.png`` (every prompt kind on
one synthetic scene) and ``example_overlays.png`` (winners of the default red ellipse on
a few synthetic queries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..eval.plots import plt, save_figure
from ..eval.reports import md_table, write_json
from .markers import COLORS, MARKERS


def _label(row: dict[str, Any]) -> str:
    return f"{row['prompt']} ({row['color']})" if row.get("color") else row["prompt"]


def plot_grounding(res: dict[str, Any], path: Path) -> None:
    """Horizontal bars: accuracy (all query kinds) per variant, prior vs. no prior, per data set."""
    pyplot = plt()
    sets = [(k, t) for k, t in (("synthetic_grounding", "synthetic shapes (object boxes)"),
                                ("mosaic_grounding", "Flickr8k 2×2 mosaics (weak labels)")) if k in res]
    if not sets:
        return
    n = len(res[sets[0][0]]["rows"])
    fig, axes = pyplot.subplots(1, len(sets), figsize=(5.4 * len(sets), 0.26 * n + 1.6), squeeze=False)
    for ax, (key, title) in zip(axes[0], sets):
        rows = res[key]["rows"]
        y = np.arange(len(rows))[::-1]
        pri = [r["prior"]["all"] for r in rows]
        nop = [r["no_prior"]["all"] for r in rows]
        cols = [np.array(COLORS.get(r.get("color") or "", (120, 120, 120))) / 255 for r in rows]
        ax.barh(y + 0.2, pri, height=0.4, color=cols, edgecolor="black", linewidth=0.4, label="minus empty-phrase prior")
        ax.barh(y - 0.2, nop, height=0.4, color=cols, alpha=0.35, edgecolor="black", linewidth=0.4, hatch="//",
                label="raw cosine")
        ax.axvline(res[key]["chance"], color="black", ls=":", lw=1, label=f"chance {res[key]['chance']:.2f}")
        ax.set_yticks(y, [_label(r) for r in rows], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("tie-aware top-1 accuracy")
        ax.set_title(f"{title}\n{res[key]['queries']} queries", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(f"grounding with visual prompts — {res['encoder']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def write_gallery(cfg: Any, path: Path) -> None:
    """Every prompt kind applied to the first object of the first grounding scene."""
    from PIL import Image

    from ..eval.synthetic import grounding_cases
    from .markers import apply_prompt

    case = grounding_cases(1, n_objects=cfg.n_objects, image_size=cfg.scene_size, seed=cfg.seed)[0]
    im = case.scene.render(cfg.scene_size)
    kinds = ["none", "ellipse", "rectangle", "arrow", "cross", "crop", "blur", "grey", "grey+ellipse"]
    s = cfg.scene_size
    canvas = Image.new("RGB", (len(kinds) * (s + 4), s + 4), "white")
    for i, k in enumerate(kinds):
        out = apply_prompt(im, case.boxes[0], k, color="red")
        # a crop is smaller than the scene: centre it in its cell
        canvas.paste(out, (i * (s + 4) + 2 + (s - out.width) // 2, 2 + (s - out.height) // 2))
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(1.4 * len(kinds), 1.9))
    ax.imshow(np.asarray(canvas))
    ax.set_xticks([i * (s + 4) + s / 2 for i in range(len(kinds))], kinds, fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"prompts for {case.phrase!r}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def write_examples(encoder: Any, cfg: Any, path: Path, n: int = 6) -> list[dict[str, Any]]:
    """Ground a few synthetic ``full`` queries with the red ellipse; save the overlays in a grid."""
    from ..eval.synthetic import grounding_cases
    from .ground import ground

    per_scene = cfg.n_objects
    allc = grounding_cases(n, n_objects=cfg.n_objects, image_size=cfg.scene_size, seed=cfg.seed + 1, kinds=("full",))
    cases = [allc[i * per_scene + i % per_scene] for i in range(n)]  # one query per scene, varied objects
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(cases), figsize=(2.2 * len(cases), 2.5), squeeze=False)
    out = []
    for ax, c in zip(axes[0], cases):
        r = ground(encoder, c.scene.render(cfg.scene_size), c.phrase, regions=[list(b) for b in c.boxes])
        ok = r.best == c.gold
        out.append({"phrase": c.phrase, "gold": c.gold, "best": r.best, "correct": ok})
        ax.imshow(np.asarray(r.overlay()))
        ax.set_title(f"{c.phrase}\n{'correct' if ok else 'wrong'}", fontsize=7, color="green" if ok else "red")
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)
    return out


def _grounding_md(g: dict[str, Any], kinds: list[str], title: str, note: str) -> list[str]:
    heads = ["prompt", "colour"] + [f"{k} (prior)" for k in kinds] + ["all (prior) ± 95% CI", "all (raw cosine)"]
    rows = [[r["prompt"], r.get("color") or "–"] + [r["prior"][k] for k in kinds]
            + [f"{r['prior']['all']:.3f} ± {r['prior']['ci95_all']:.3f}", r["no_prior"]["all"]] for r in g["rows"]]
    return [f"## {title}", "", note, "", md_table(heads, rows), ""]


def _matrix_md(g: dict[str, Any]) -> list[str]:
    pure = [r for r in g["rows"] if r["prompt"] in MARKERS and r.get("color")]  # not "grey+ellipse"
    markers = list(dict.fromkeys(r["prompt"] for r in pure))
    colors = list(dict.fromkeys(r["color"] for r in pure))
    acc = {(r["prompt"], r["color"]): r["prior"]["all"] for r in pure}
    if not markers or len(acc) != len(markers) * len(colors):
        return []
    rows = [[m] + [acc.get((m, c)) for c in colors] + [float(np.mean([acc[(m, c)] for c in colors]))] for m in markers]
    rows.append(["mean"] + [float(np.mean([acc[(m, c)] for m in markers])) for c in colors] + [None])
    return ["Marker × colour (all query kinds, minus prior):", "", md_table(["marker"] + colors + ["mean"], rows), ""]


def bench_markdown(res: dict[str, Any], cfg: Any, notes: str | None = None) -> str:
    """The human-readable report (``notes``: hand-written interpretation placed after the header)."""
    lines = [f"# Visual prompting, zero-shot classification and moderation: `{res['encoder']}`", "",
             f"Produced by `mindgap prompt-bench` (seed {cfg.seed}) in {res['seconds']} s. Accuracy in grounding is "
             "tie-aware top-1 (a k-way tie at the top that includes the gold region earns 1/k, so `none` — identical "
             "copies — measures chance). `prior` = cosine with the phrase minus cosine with the empty phrase.", ""]
    if notes:
        lines += [notes.strip(), ""]
    if "synthetic_grounding" in res:
        g = res["synthetic_grounding"]
        lines += _grounding_md(g, ["full", "shape", "colour"], "Grounding on synthetic scenes",
                               f"{g['scenes']} scenes ({cfg.scene_size} px) with {cfg.n_objects} shapes of distinct "
                               f"shape and colour; candidates = the objects' boxes; {g['queries']} queries: `full` "
                               "\"the red triangle\", `shape` \"the triangle\", `colour` \"the red shape\". "
                               f"Chance {g['chance']:.3f}.")
        lines += _matrix_md(g)
        if g.get("padding_ablation"):
            from .markers import default_thickness

            t = cfg.thickness or default_thickness((cfg.scene_size, cfg.scene_size))
            base = {r["prompt"]: r for r in g["rows"] if r.get("color") == "red"}
            rows = [[p, t, base[p]["prior"]["all"], base[p]["no_prior"]["all"]] for p in ("ellipse", "rectangle")
                    if p in base]
            rows += [[r["prompt"], r["padding"], r["prior"]["all"], r["no_prior"]["all"]] for r in g["padding_ablation"]]
            lines += ["Padding ablation (red markers; the default padding is the line thickness, so the marker hugs "
                      "the object and its ring can touch the tips of stars and triangles):", "",
                      md_table(["marker", "padding px", "all (prior)", "all (raw cosine)"], rows), ""]
    if "mosaic_grounding" in res:
        g = res["mosaic_grounding"]
        lines += _grounding_md(g, ["caption"], "Grounding on Flickr8k mosaics (weakly labelled real images)",
                               f"Flickr8k has no boxes. {g['mosaics']} mosaics of four `{cfg.flickr_split}` images "
                               f"(each squashed to {cfg.mosaic_size // 2} px) in a 2×2 grid; query = the first human "
                               f"caption of one tile, gold = that quadrant; {g['queries']} queries, chance 0.25. "
                               "`crop` here is plain image–caption retrieval among the four tiles.")
        lines += _matrix_md(g)
    if "zeroshot_synthetic" in res:
        z = res["zeroshot_synthetic"]
        rows = [[k, z[k]["classes"], z[k]["single"], z[k]["single_template"], z[k]["ensemble"], z[k]["chance"]]
                for k in ("shape", "colour")]
        lines += ["## Zero-shot classification", "",
                  f"Synthetic: the main (largest) object of {z['n']} lab-style scenes; logit scale "
                  f"{z['logit_scale']:.1f}. Ensemble = {len(z['shape']['templates'])} shape templates / "
                  f"{len(z['colour']['templates'])} colour templates.", "",
                  md_table(["task", "classes", "single template", "single", "ensemble", "chance"], rows), ""]
    zf = res.get("zeroshot_flickr") or {}
    if zf.get("n"):
        cls = ", ".join(f"{k} {v}" for k, v in zf["classes"].items())
        rows = [[k, zf[k]["accuracy"], zf[k]["balanced_accuracy"]] for k in ("single_template", "ensemble")]
        lines += [f"Flickr8k `{cfg.flickr_split}` with labels from captions: an image gets class *c* when ≥ 3 of its "
                  "5 captions mention a keyword of *c* and no caption mentions another class's keyword (keywords in "
                  "`mindgap.prompting.benchmark.FLICKR_CLASSES`); classes with < 3 images dropped. "
                  f"{zf['n']} images: {cls}. Chance {zf['chance']:.3f}; always-majority accuracy "
                  f"{zf['majority_rate']:.3f} (hence the class-balanced column).", "",
                  md_table(["templates", "accuracy", "balanced accuracy"], rows), "",
                  "Per-class recall (ensemble): " + ", ".join(
                      f"{k} {v:.2f}" for k, v in zf["ensemble"]["per_class_recall"].items()), ""]
    if "moderation_benign" in res:
        m = res["moderation_benign"]
        lines += ["## Moderation: false alarms on benign photos", "",
                  f"Default category lists, threshold {m['threshold']}, on {m['n']} Flickr8k `{cfg.flickr_split}` "
                  f"images (everyday photos, none unsafe): flagged {m['flag_rate']:.3f}; mean unsafe probability "
                  f"{m['mean_unsafe_probability']:.3f}; flagged at 0.8: {m['flag_rate_at_0.8']:.3f}. Top category of "
                  f"flagged images: {m['top_category_of_flagged'] or 'none'}. No unsafe images exist in the offline "
                  "data, so recall is not measured. `mindgap moderate` is a screening aid, not a verdict: the "
                  "encoder's associations carry social bias (METHODS §5: circled people are matched to \"suspect\" / "
                  "\"missing person\" more often).", ""]
        bg = m.get("flag_rate_by_people_in_captions")
        if bg:
            lines += ["False alarms by who the captions mention (exclusive groups; word lists in "
                      "`mindgap.prompting.benchmark.PEOPLE_WORDS`; the \"no gender word\" group mentions people "
                      "only with neutral words and no gendered ones):", "",
                      md_table(["captions mention", "images", "flag rate"],
                               [[g, v["n"], v["flag_rate"]] for g, v in bg.items()]), ""]
    figs = [(k, v) for k, v in (res.get("files") or {}).items() if v.endswith(".png") and (out_has(res, v))]
    if figs:
        lines += ["## Figures", ""] + [x for k, v in figs for x in (f"![{k}]({v})", "")]
    if res.get("examples"):
        ok = sum(e["correct"] for e in res["examples"])
        lines += [f"Example overlays: red ellipse + prior, {ok} of {len(res['examples'])} shown queries correct "
                  "(grey frames = other candidates).", ""]
    return "\n".join(lines)


def out_has(res: dict[str, Any], name: str) -> bool:
    """Whether a figure was written (plots are skipped when their data is absent)."""
    return name in (res.get("written") or [])


def write_bench_outputs(res: dict[str, Any], out: Path, cfg: Any, encoder: Any = None,
                        notes: str | None = None) -> dict[str, str]:
    """Write ``report.md``, ``results.json`` and the PNGs into ``out`` (examples only with an encoder)."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"report": "report.md", "results": "results.json", "grounding": "grounding_accuracy.png",
             "gallery": "prompt_gallery.png"}
    plot_grounding(res, out / files["grounding"])
    write_gallery(cfg, out / files["gallery"])
    if encoder is not None:
        files["examples"] = "example_overlays.png"
        res["examples"] = write_examples(encoder, cfg, out / files["examples"])
    elif res.get("examples") and (out / "example_overlays.png").is_file():  # re-rendering a saved run
        files["examples"] = "example_overlays.png"
    res["files"] = files
    res["written"] = sorted(v for v in files.values() if (out / v).exists() and v.endswith(".png"))
    write_json(out / files["results"], res)
    (out / files["report"]).write_text(bench_markdown(res, cfg, notes), encoding="utf-8")
    return files


__all__ = ["write_bench_outputs", "bench_markdown", "plot_grounding", "write_gallery", "write_examples"]
