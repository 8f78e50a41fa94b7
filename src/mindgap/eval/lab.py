"""``mindgap lab``: the information-imbalance experiment on synthetic scenes (METHODS §2).

Claim under test: contrastive dual encoders trained on *poor* captions (images carry more
information than their text) show a larger modality gap and object bias (objects encoded
better than attributes); richer captions shrink both.

Procedure, per caption-richness level of the seeded synthetic scene generator
(:mod:`mindgap.eval.synthetic`; the *same* scenes at every level, only the captions change):

1. write the scenes (train + test split) as a ``captions.jsonl`` folder;
2. train a small dual encoder on the train split with ``mindgap train``'s trainer
   (:func:`mindgap.encoders.train.train`: frozen MiniLM text base + projection, a small
   CNN image tower, symmetric InfoNCE) at a small image size and few epochs;
3. on the test split measure the gap (centroid distance, cosine of centroids, dims
   carrying 50 % of it, held-out linear-probe separability, matched − unmatched cosine,
   image → text logit entropy — :func:`mindgap.eval.diagnose.measure`) and **zero-shot
   accuracy** of the object (``"a photo of a {shape}."``) and of an attribute
   (``"a photo of a {colour} object."``) of each test scene's main object.

Outputs: ``report.md`` (with plain findings and their noise level), ``lab.json``,
``gap_vs_richness.png``, ``zeroshot_vs_richness.png``; :func:`replot` re-renders them from
``lab.json``.
The defaults took 18.7 CPU-minutes on the shared 2-core machine (1,500 train scenes at 48 px,
10 epochs, four levels); ``--quick`` trains tiny models on tiny data
(a smoke test, numbers meaningless).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)


@dataclass
class LabConfig:
    """Options of ``mindgap lab``.

    Attributes:
        levels: caption-richness levels (default: every level the generator offers).
        n_train / n_test: scenes per split (the same scenes at every level).
        image_size: scene and training resolution.
        epochs, batch_size, lr, widths, embed_dim, proj_hidden: trainer settings.
        seed: scenes, training and the probe split.
        threads: torch threads (``None`` = torch's default).
        keep_data: keep generated scenes and models under ``out/work`` (else a temp dir).
    """

    levels: list[Any] | None = None
    n_train: int = 1500
    n_test: int = 300
    image_size: int = 48
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    embed_dim: int = 128
    proj_hidden: int = 256
    seed: int = 0
    threads: int | None = None
    keep_data: bool = False

    @classmethod
    def quick(cls, seed: int = 0) -> "LabConfig":
        """A smoke configuration (≈ 45 CPU-s for all four levels): tiny data and models."""
        return cls(levels=None, n_train=96, n_test=40, image_size=32, epochs=2, batch_size=32,
                   widths=[8, 16, 32, 64], embed_dim=64, proj_hidden=64, seed=seed)


def zero_shot_accuracy(encoder: Any, img: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                       template: str) -> float:
    """Top-1 accuracy of prompt-based zero-shot classification (``template.format(class)``)."""
    prompts = [template.format(c) for c in classes]
    t = encoder.encode_text(prompts, show_progress=False)
    pred = np.asarray(classes)[np.argmax(img @ t.T, axis=1)]
    return float(np.mean(pred == np.asarray(labels)))


def _synthetic() -> Any:
    try:
        from . import synthetic
    except ImportError as exc:  # pragma: no cover - depends on the generator module being present
        raise InputError(f"the synthetic scene generator is not available ({exc})", item="mindgap.eval.synthetic") from None
    return synthetic


def _train_level(data_dir: Path, model_dir: Path, cfg: LabConfig, progress: bool) -> dict[str, Any]:
    from ..encoders.train import TrainConfig, train

    # the small CNN from scratch: a pretrained ImageNet backbone would bring its own biases into
    # a controlled experiment about caption richness
    tc = TrainConfig(data=[f"{data_dir}:train"], calib_size=0, arch="resnet-ish-cnn", epochs=cfg.epochs,
                     batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=0.05,
                     warmup_epochs=max(1, min(3, cfg.epochs // 4)), image_size=cfg.image_size,
                     widths=list(cfg.widths), embed_dim=cfg.embed_dim, proj_hidden=cfg.proj_hidden, seed=cfg.seed,
                     threads=cfg.threads, crop_scale=(0.6, 1.0), jitter=0.0)
    return train(tc, model_dir, progress=progress, evaluate=False)


def measure_level(model_dir: Path, data_dir: Path, vocab: dict[str, list[str]], seed: int = 0) -> dict[str, Any]:
    """Gap measures and object/attribute zero-shot accuracy of one trained model on the test split."""
    from ..datasets import load_caption_set
    from ..encoders.dual import DualTorchEncoder
    from ..encoders.evaluate import embed_caption_set
    from .diagnose import measure

    enc = DualTorchEncoder(model_dir, name=f"mindgap:{model_dir}", show_progress=False)
    recs = load_caption_set(data_dir, split="test")
    img, txt, owner = embed_caption_set(enc, recs)
    m = measure(img, txt, owner, 1.0 / enc.temperature, seed)
    obj = [r.extra["label_object"] for r in recs]
    att = [r.extra["label_attribute"] for r in recs]
    acc_o = zero_shot_accuracy(enc, img, obj, vocab["objects"], "a photo of a {}.")
    acc_a = zero_shot_accuracy(enc, img, att, vocab["attributes"], "a photo of a {} object.")
    c = m["centroid"]
    return {
        "gap_norm": c["gap_norm"], "centroid_cosine": c["centroid_cosine"], "dims_50": c["dims_50"],
        "dims_90": c["dims_90"], "probe_accuracy": m["separability"]["probe_accuracy"],
        "matched_cos": m["cosines"]["matched_mean"], "unmatched_cos": m["cosines"]["unmatched_mean"],
        "logit_entropy_normalised": m["logit_entropy"]["entropy_normalised"],
        "object_accuracy": acc_o, "attribute_accuracy": acc_a,
        "object_chance": 1.0 / len(vocab["objects"]), "attribute_chance": 1.0 / len(vocab["attributes"]),
        "temperature": enc.temperature, "test_images": len(recs), "test_captions": int(len(txt)),
    }


def run_lab(cfg: LabConfig | None = None, out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the experiment over all richness levels; write the report when ``out_dir`` is given."""
    cfg = cfg or LabConfig()
    syn = _synthetic()
    levels = list(cfg.levels) if cfg.levels else list(syn.RICHNESS_LEVELS)
    if not levels:
        raise InputError("no caption-richness levels to run", item="levels")
    out = Path(out_dir) if out_dir is not None else None
    tmp = None
    if cfg.keep_data and out is not None:
        work = out / "work"
    else:
        tmp = tempfile.TemporaryDirectory(prefix="mindgap-lab-")
        work = Path(tmp.name)
    rows: list[dict[str, Any]] = []
    vocab: dict[str, list[str]] = {}
    t0, c0 = time.time(), time.process_time()
    try:
        for level in levels:
            t1, c1 = time.time(), time.process_time()
            data_dir = work / f"data-{level}"
            meta = syn.write_lab_dataset(data_dir, level=level, n_train=cfg.n_train, n_test=cfg.n_test,
                                         image_size=cfg.image_size, seed=cfg.seed)
            vocab = meta["vocab"]
            rec = _train_level(data_dir, work / f"model-{level}", cfg, progress)
            row = {"level": str(level), "example_caption": meta.get("example_caption"),
                   "mean_caption_words": meta.get("mean_caption_words")}
            row.update(measure_level(work / f"model-{level}", data_dir, vocab, cfg.seed))
            row["final_train_loss"] = rec["epoch_loss"][-1] if rec.get("epoch_loss") else None
            row["seconds"] = round(time.time() - t1, 1)
            row["cpu_seconds"] = round(time.process_time() - c1, 1)  # all threads; wall time varies with load
            rows.append(row)
            log.info("lab level %s: %s", level, row)
    finally:
        if tmp is not None:
            tmp.cleanup()
    res = {"config": {k: v for k, v in asdict(cfg).items()}, "levels": rows, "vocab": vocab,
           "seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1),
           "generator": getattr(syn, "__name__", "synthetic")}
    res["config"]["levels"] = [str(x) for x in levels]
    if out is not None:
        write_lab_outputs(res, out)
    return res


def write_lab_outputs(res: dict[str, Any], out: Path) -> None:
    """``report.md``, ``lab.json``, ``gap_vs_richness.png`` and ``zeroshot_vs_richness.png``."""
    from .reports import md_table, write_json

    out.mkdir(parents=True, exist_ok=True)
    rows = res["levels"]
    plot_gap_panels(rows, out / "gap_vs_richness.png")
    plot_zero_shot(rows, out / "zeroshot_vs_richness.png")
    write_json(out / "lab.json", res)
    table = md_table(["richness", "example caption", "words", "gap norm", "cos(μ_img, μ_txt)", "dims 50 %",
                      "probe acc", "matched cos", "unmatched cos", "logit entropy (norm.)", "object zero-shot",
                      "attribute zero-shot"],
                     [[r["level"], r.get("example_caption"), r.get("mean_caption_words"), r["gap_norm"],
                       r["centroid_cosine"], r["dims_50"], r["probe_accuracy"], r["matched_cos"], r["unmatched_cos"],
                       r["logit_entropy_normalised"], r["object_accuracy"], r["attribute_accuracy"]] for r in rows])
    c = res["config"]
    chance = (f"chance: object {rows[0]['object_chance']:.3f}, attribute {rows[0]['attribute_chance']:.3f}"
              if rows else "")
    md = ["# Information imbalance: caption richness vs. modality gap and object bias", "",
          f"Synthetic scenes ({c['n_train']} train / {c['n_test']} test, {c['image_size']} px, seed {c['seed']}); "
          f"one dual encoder per richness level trained with `mindgap train`'s trainer for {c['epochs']} epochs "
          f"(CNN widths {c['widths']}, {c['embed_dim']}-d). Gap measured on the test split with each level's own "
          f"captions; zero-shot prompts `a photo of a {{shape}}.` / `a photo of a {{colour}} object.`; {chance}. "
          f"Total {res['seconds']} s wall, {res.get('cpu_seconds', '?')} s CPU.", "", table, "",
          "## Findings (computed from the table)", "", *findings(rows), "",
          "![gap](gap_vs_richness.png)", "", "![zero-shot](zeroshot_vs_richness.png)", ""]
    (out / "report.md").write_text("\n".join(md), encoding="utf-8")


def _ci(p: float, n: int) -> float:
    """95 % normal-approximation half-width of an accuracy ``p`` over ``n`` test images."""
    return 1.96 * float(np.sqrt(max(p * (1 - p), 1e-12) / max(1, n)))


def findings(rows: list[dict[str, Any]]) -> list[str]:
    """Plain statements of what the numbers show (whichever way they go), with the noise level."""
    if len(rows) < 2:
        return ["- one level only: nothing to compare."]
    first, last = rows[0], rows[-1]
    out = []
    g0, g1 = first["gap_norm"], last["gap_norm"]
    trend = np.diff([r["gap_norm"] for r in rows])
    mono = bool(np.all(trend <= 0)) if g1 < g0 else bool(np.all(trend >= 0))
    out.append(f"- centroid gap: {g0:.3f} ({first['level']}) → {g1:.3f} ({last['level']}), "
               f"{'shrank' if g1 < g0 else 'grew'} by {abs(g1 - g0) / max(g0, 1e-12):.0%}"
               f"{' monotonically' if mono else ' (not monotonically)'} as captions got richer; "
               f"image-vs-text probe accuracy {first['probe_accuracy']:.3f} → {last['probe_accuracy']:.3f}.")
    out.append(f"- alignment: matched − unmatched cosine {first['matched_cos'] - first['unmatched_cos']:.3f} → "
               f"{last['matched_cos'] - last['unmatched_cos']:.3f}; image → text logit entropy / log n "
               f"{first['logit_entropy_normalised']:.3f} → {last['logit_entropy_normalised']:.3f}.")
    n = int(first.get("test_images") or 0)
    for r in rows:
        o, a = r["object_accuracy"], r["attribute_accuracy"]
        ci = max(_ci(o, n), _ci(a, n))
        verdict = ("object > attribute" if o - a > ci else "attribute > object" if a - o > ci
                   else "no clear difference")
        out.append(f"- {r['level']}: object {o:.3f} vs. attribute {a:.3f} zero-shot (± {ci:.3f} at 95 %, "
                   f"n = {n}): {verdict}.")
    return out


def plot_gap_panels(rows: list[dict[str, Any]], path: Path) -> None:
    """Four gap measures against caption richness, one panel each."""
    from .plots import plt, save_figure

    pyplot = plt()
    x = np.arange(len(rows))
    labels = [f"{r['level']}\n({r.get('mean_caption_words', '?')} words)" for r in rows]
    panels = [("centroid gap ‖μ_img − μ_txt‖", [r["gap_norm"] for r in rows], None),
              ("image-vs-text linear probe accuracy (held out)", [r["probe_accuracy"] for r in rows], (0.45, 1.08)),
              ("matched − unmatched cosine (alignment)", [r["matched_cos"] - r["unmatched_cos"] for r in rows], None),
              ("image → text logit entropy / log n", [r["logit_entropy_normalised"] for r in rows], (0, 1.08))]
    fig, axes = pyplot.subplots(2, 2, figsize=(9.5, 6.4))
    for ax, (title, ys, lim) in zip(axes.flat, panels):
        ax.plot(x, ys, "o-", color="tab:blue")
        for xi, yi in zip(x, ys):
            ax.annotate(f"{yi:.3f}", (xi, yi), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7.5)
        ax.set_xticks(x, labels, fontsize=7.5)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if lim:
            ax.set_ylim(*lim)
        else:
            lo, hi = min(ys), max(ys)
            pad = 0.15 * (hi - lo) + 0.02 * max(abs(hi), 1e-3)
            ax.set_ylim(lo - pad, hi + 2 * pad)
    fig.suptitle("modality gap vs. caption richness (one model trained per level)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_zero_shot(rows: list[dict[str, Any]], path: Path) -> None:
    """Object vs. attribute zero-shot accuracy against caption richness, with chance and 95 % bars."""
    from .plots import plt, save_figure

    pyplot = plt()
    x = np.arange(len(rows))
    n = int(rows[0].get("test_images") or 0) if rows else 0
    fig, ax = pyplot.subplots(figsize=(7.0, 4.2))
    for key, name, color, dx in (("object_accuracy", "object (shape of the main object)", "tab:blue", -0.04),
                                 ("attribute_accuracy", "attribute (its colour)", "tab:orange", 0.04)):
        ys = np.array([r[key] for r in rows])
        err = [_ci(y, n) for y in ys]
        ax.errorbar(x + dx, ys, yerr=err, fmt="o-", color=color, capsize=3, label=name)
    chance = {r["object_chance"] for r in rows} | {r["attribute_chance"] for r in rows}
    for c in sorted(chance):
        ax.axhline(c, color="grey", ls="--", lw=1)
    ax.text(x[0] - 0.25, min(chance) + 0.01, "chance", fontsize=7.5, color="grey", va="bottom", ha="left")
    ax.set_xticks(x, [f"{r['level']}\n({r.get('mean_caption_words', '?')} words)" for r in rows], fontsize=8)
    ax.set_ylim(0, 1.14)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("zero-shot top-1 accuracy")
    ax.set_xlabel("caption richness of the training captions")
    ax.set_title(f"object vs. attribute zero-shot accuracy (n = {n} test scenes, 95 % bars)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", ncol=2, framealpha=0.95)
    fig.tight_layout()
    save_figure(fig, path)


def replot(out_dir: str | Path) -> dict[str, Any]:
    """Re-render ``report.md`` and the PNGs from an existing ``lab.json`` (no training)."""
    import json

    out = Path(out_dir)
    f = out / "lab.json"
    if not f.is_file():
        raise InputError("no lab.json to re-plot", item=str(f))
    res = json.loads(f.read_text(encoding="utf-8"))
    write_lab_outputs(res, out)
    return res


__all__ = ["LabConfig", "run_lab", "measure_level", "zero_shot_accuracy", "write_lab_outputs", "findings", "replot"]
