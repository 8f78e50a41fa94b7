"""``mindgap prompt-bench``: grounding accuracy per visual prompt, zero-shot accuracy, moderation false alarms.

Data sets with known answers (all built here, deterministic for a seed):

1. **Synthetic grounding** (:func:`mindgap.eval.synthetic.grounding_cases`): scenes of
   ``n_objects`` shapes with distinct shapes and colours; every object is queried three
   ways — "the red triangle" (``full``), "the triangle" (``shape``), "the red shape"
   (``colour``). Candidates are the objects' own boxes (proposals with a known answer);
   chance = 1 / ``n_objects``.
2. **Flickr8k mosaics** (weak real labels): Flickr8k has no boxes, so four ``test`` images
   are tiled into a 2×2 mosaic; the query is the first human caption of one tile and the
   gold region is that tile (chance 1/4). This measures whether the prompt steers the
   encoder to a quadrant, not object-level grounding.
3. **Zero-shot, synthetic**: the main object's shape and colour of lab scenes.
4. **Zero-shot, Flickr8k** (labels from captions): an image of the ``test`` split gets
   class *c* when at least 3 of its 5 captions mention a keyword of *c* and no caption
   mentions a keyword of another class (:data:`FLICKR_CLASSES`); classes with fewer than
   3 images are dropped. Reported: accuracy, class-balanced accuracy, majority rate, chance.
5. **Moderation false alarms**: the share of benign Flickr8k ``test`` images flagged at the
   default threshold. No unsafe images are available offline, so recall is not measured.

Every prompt variant is a marker × colour, or an effect (crop, blur, grey, grey+ellipse,
none); each is scored with and without the empty-phrase prior. Accuracy is tie-aware
(:func:`~.ground.tie_credit`), so ``none`` measures chance.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .ground import (COMPARE_COLORS, COMPARE_EFFECTS, COMPARE_MARKERS, EMPTY_PHRASE, embed_prompted, tie_credit,
                     uses_color)
from .regions import Region, grid
from .zeroshot import DEFAULT_TEMPLATES, class_embeddings, logit_scale, softmax

log = logging.getLogger(__name__)

FLICKR_CLASSES: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "cat": ("cat", "cats", "kitten"),
    "horse": ("horse", "horses", "pony"),
    "bicycle": ("bike", "bikes", "bicycle", "bicycles", "bicyclist", "biker", "bikers", "cyclist"),
    "motorcycle": ("motorcycle", "motorcycles", "motorbike", "dirt bike"),
    "car": ("car", "cars"),
    "boat": ("boat", "boats", "canoe", "kayak"),
    "skateboard": ("skateboard", "skateboarder", "skateboarding", "skateboards"),
    "surfboard": ("surfboard", "surfer", "surfers", "surfing"),
    "football": ("football",),
}
#: Caption words used to group benign images for the moderation bias check (any caption mentioning them).
PEOPLE_WORDS: dict[str, tuple[str, ...]] = {
    "female": ("woman", "women", "girl", "girls", "lady", "ladies", "she", "her"),
    "male": ("man", "men", "boy", "boys", "guy", "guys", "he", "his"),
    "neutral": ("person", "people", "child", "children", "kid", "kids", "baby", "player", "players", "crowd"),
}
PEOPLE_GROUPS = ("women / girls only", "men / boys only", "both", "children / people, no gender word",
                 "no person word")
COLOUR_TEMPLATES: tuple[str, ...] = ("a photo of a {} object.", "a {} shape.", "a picture of something {}.",
                                     "a {} thing.")


@dataclass
class PromptBenchConfig:
    """Sizes and prompt grid of ``mindgap prompt-bench`` (the defaults: ~17k encoder passes, ~15 minutes on
    two busy CPU cores with the offline model)."""

    n_scenes: int = 60
    n_objects: int = 3
    scene_size: int = 224
    n_mosaics: int = 60
    mosaic_size: int = 224
    n_zeroshot: int = 300
    flickr_data: str = "flickr8k_224"
    flickr_split: str = "test"
    moderation_limit: int = 1000
    markers: tuple[str, ...] = COMPARE_MARKERS
    colors: tuple[str, ...] = COMPARE_COLORS
    effects: tuple[str, ...] = COMPARE_EFFECTS
    thickness: int | None = None
    #: extra paddings (px) tried for the red ellipse / rectangle on the synthetic set (default padding = thickness)
    padding_ablation: tuple[int, ...] = (12, 24)
    seed: int = 0
    batch_size: int = 64

    @classmethod
    def quick(cls, seed: int = 0) -> "PromptBenchConfig":
        """A smoke configuration (numbers meaningless)."""
        return cls(n_scenes=4, n_mosaics=4, n_zeroshot=24, moderation_limit=16, markers=("ellipse", "rectangle"),
                   colors=("red", "green"), effects=("crop", "grey+ellipse", "none"), padding_ablation=(12,),
                   seed=seed)

    def variants(self) -> list[tuple[str, str]]:
        return [(m, c) for m in self.markers for c in self.colors] + [(e, "red") for e in self.effects]


@dataclass
class GroundingItem:
    """One image with candidate boxes and its queries ``(phrase, gold index, kind)``."""

    image: Any
    regions: list[Region]
    queries: list[tuple[str, int, str]] = field(default_factory=list)


def ci95(p: float, n: int) -> float:
    """Half-width of the normal-approximation 95 % interval of a proportion."""
    return float(1.96 * np.sqrt(max(p * (1 - p), 0.0) / n)) if n else float("nan")


def evaluate_grounding(encoder: Any, items: Sequence[GroundingItem], variants: Sequence[tuple[str, str]], *,
                       thickness: int | None = None, padding: int | None = None, batch_size: int = 64,
                       progress: bool = False) -> list[dict[str, Any]]:
    """Tie-aware accuracy of every prompt variant, per query kind, with and without the prior."""
    phrases = sorted({q[0] for it in items for q in it.queries})
    temb = encoder.encode_text(phrases + [EMPTY_PHRASE], show_progress=False)
    pidx = {p: i for i, p in enumerate(phrases)}
    kinds = sorted({q[2] for it in items for q in it.queries})
    rows = []
    it_v = variants
    if progress:
        from tqdm.auto import tqdm

        it_v = tqdm(variants, desc="prompt variants", unit="variant")
    for prompt, col in it_v:
        jobs = [(it.image, r, prompt, col) for it in items for r in it.regions]
        emb = embed_prompted(encoder, jobs, thickness=thickness, padding=padding, batch_size=batch_size)
        sims = (emb @ temb.T).astype(np.float64)
        credit: dict[tuple[str, bool], list[float]] = {(k, p): [] for k in kinds for p in (True, False)}
        off = 0
        for it in items:
            s = sims[off : off + len(it.regions)]
            off += len(it.regions)
            for phrase, gold, kind in it.queries:
                raw = s[:, pidx[phrase]]
                credit[(kind, False)].append(tie_credit(raw, gold))
                credit[(kind, True)].append(tie_credit(raw - s[:, -1], gold))
        row: dict[str, Any] = {"prompt": prompt, "color": col if uses_color(prompt) else None}
        for prior in (True, False):
            key = "prior" if prior else "no_prior"
            allc = [c for k in kinds for c in credit[(k, prior)]]
            row[key] = {k: float(np.mean(credit[(k, prior)])) for k in kinds}
            row[key]["all"] = float(np.mean(allc))
            row[key]["ci95_all"] = ci95(row[key]["all"], len(allc))
        row["n"] = {k: len(credit[(k, True)]) for k in kinds}
        rows.append(row)
    return rows


def synthetic_items(cfg: PromptBenchConfig) -> list[GroundingItem]:
    """Synthetic scenes → grounding items (object boxes as candidates, three phrase kinds)."""
    from ..eval.synthetic import grounding_cases

    cases = grounding_cases(cfg.n_scenes, n_objects=cfg.n_objects, image_size=cfg.scene_size, seed=cfg.seed)
    items: dict[str, GroundingItem] = {}
    for c in cases:
        sid = c.scene.scene_id
        if sid not in items:
            items[sid] = GroundingItem(c.scene.render(cfg.scene_size), [Region(*b) for b in c.boxes])
        items[sid].queries.append((c.phrase, c.gold, c.kind))
    return list(items.values())


def mosaic_items(cfg: PromptBenchConfig) -> list[GroundingItem]:
    """2×2 mosaics of Flickr8k images; query = a tile's first caption, gold = its quadrant."""
    from PIL import Image

    from ..datasets import load_caption_set
    from ..images import load_image

    if cfg.n_mosaics <= 0:
        return []
    recs = load_caption_set(cfg.flickr_data, split=cfg.flickr_split)
    if len(recs) < 4:
        raise InputError("need at least 4 images for a mosaic", item=cfg.flickr_data)
    rng = np.random.default_rng([cfg.seed, 7])
    s, half = cfg.mosaic_size, cfg.mosaic_size // 2
    quads = [Region(*(r.to_pixels((s, s)).box)) for r in grid(2, 2)]
    items = []
    for _ in range(cfg.n_mosaics):
        pick = rng.choice(len(recs), size=4, replace=False)
        canvas = Image.new("RGB", (s, s))
        queries = []
        for q, i in enumerate(pick):
            tile = load_image(recs[int(i)].path).resize((half, half), Image.BICUBIC)
            canvas.paste(tile, (quads[q].x0, quads[q].y0))
            queries.append((recs[int(i)].captions[0], q, "caption"))
        items.append(GroundingItem(canvas, quads, queries))
    return items


def _zs_accuracy(img: np.ndarray, cls: np.ndarray, labels: Sequence[str], gold: Sequence[str], scale: float) -> float:
    probs = softmax(scale * (img @ cls.T))
    pred = np.asarray(labels)[np.argmax(probs, axis=1)]
    return float(np.mean(pred == np.asarray(gold)))


def zeroshot_synthetic(encoder: Any, cfg: PromptBenchConfig) -> dict[str, Any]:
    """Shape and colour of the main object of lab-style scenes, single template vs. ensemble."""
    from ..eval.synthetic import COLOURS, SHAPES, generate_scenes

    scenes = generate_scenes(cfg.n_zeroshot, seed=cfg.seed, split="zeroshot")
    img = encoder.encode_image([sc.render(cfg.scene_size) for sc in scenes], show_progress=False)
    scale = logit_scale(encoder)
    shapes, colours = [sc.main.shape for sc in scenes], [sc.main.colour for sc in scenes]
    res = {"n": len(scenes), "logit_scale": scale}
    for name, labels, gold, single, ens in (("shape", list(SHAPES), shapes, "a photo of a {}.", DEFAULT_TEMPLATES),
                                            ("colour", list(COLOURS), colours, "a photo of a {} object.",
                                             COLOUR_TEMPLATES)):
        res[name] = {"single_template": _zs_accuracy(img, class_embeddings(encoder, labels, [single]), labels, gold,
                                                     scale),
                     "ensemble": _zs_accuracy(img, class_embeddings(encoder, labels, list(ens)), labels, gold, scale),
                     "chance": 1.0 / len(labels), "classes": len(labels), "single": single, "templates": list(ens)}
    return res


def _mentions(caption: str, words: Sequence[str]) -> bool:
    text = " ".join(re.findall(r"[a-z]+", caption.lower()))
    return any(re.search(rf"\b{re.escape(w)}\b", text) for w in words)


def flickr_labels(recs: Sequence[Any], classes: dict[str, tuple[str, ...]] | None = None, min_votes: int = 3,
                  min_class: int = 3) -> list[tuple[Any, str]]:
    """``(record, label)`` for images whose captions name exactly one class (rule in the module docstring)."""
    classes = classes or FLICKR_CLASSES
    out = []
    for r in recs:
        votes = {c: sum(_mentions(cap, ws) for cap in r.captions) for c, ws in classes.items()}
        hit = [c for c, v in votes.items() if v > 0]
        if len(hit) == 1 and votes[hit[0]] >= min_votes:
            out.append((r, hit[0]))
    counts = Counter(lab for _, lab in out)
    return [(r, lab) for r, lab in out if counts[lab] >= min_class]


def zeroshot_flickr(encoder: Any, cfg: PromptBenchConfig) -> dict[str, Any]:
    """Zero-shot accuracy on Flickr8k test images labelled from their captions."""
    from ..datasets import load_caption_set

    recs = load_caption_set(cfg.flickr_data, split=cfg.flickr_split)
    pairs = flickr_labels(recs)
    if not pairs:
        return {"n": 0}
    labels = sorted({lab for _, lab in pairs})
    gold = np.asarray([lab for _, lab in pairs])
    img = encoder.encode_image([r.path for r, _ in pairs], show_progress=False)
    scale = logit_scale(encoder)
    out: dict[str, Any] = {"n": len(pairs), "classes": {lab: int((gold == lab).sum()) for lab in labels},
                           "chance": 1.0 / len(labels), "majority_rate": float(max(np.mean(gold == lab) for lab in labels))}
    for name, tpl in (("single_template", ["a photo of a {}."]), ("ensemble", list(DEFAULT_TEMPLATES))):
        probs = softmax(scale * (img @ class_embeddings(encoder, labels, tpl).T))
        pred = np.asarray(labels)[np.argmax(probs, axis=1)]
        per = {lab: float(np.mean(pred[gold == lab] == lab)) for lab in labels}
        out[name] = {"accuracy": float(np.mean(pred == gold)), "balanced_accuracy": float(np.mean(list(per.values()))),
                     "per_class_recall": per}
    return out


def moderation_benign(encoder: Any, cfg: PromptBenchConfig) -> dict[str, Any]:
    """Flag rate of the default moderation lists on benign Flickr8k images (false alarms)."""
    from ..datasets import load_caption_set
    from .moderation import DEFAULT_THRESHOLD, moderate

    recs = load_caption_set(cfg.flickr_data, split=cfg.flickr_split)[: cfg.moderation_limit]
    res = moderate(encoder, [r.path for r in recs])
    flagged = [r for r in res if r.flagged]
    cats = Counter(c for r in flagged for c in r.categories[:1])
    mass = np.array([r.unsafe_probability for r in res])
    # false alarms by who the captions say is in the photo (exclusive groups) — a bias check
    groups: dict[str, list[bool]] = {g: [] for g in PEOPLE_GROUPS}
    for rec, r in zip(recs, res):
        hit = {g for g, ws in PEOPLE_WORDS.items() if any(_mentions(c, ws) for c in rec.captions)}
        g = ("women / girls only" if hit == {"female"} else "men / boys only" if hit == {"male"} else
             "both" if hit == {"female", "male"} else "children / people, no gender word" if hit == {"neutral"}
             else "no person word" if not hit else None)
        if g is not None:
            groups[g].append(r.flagged)
    by_group = {g: {"n": len(v), "flag_rate": float(np.mean(v)) if v else None} for g, v in groups.items()}
    return {"n": len(res), "threshold": DEFAULT_THRESHOLD, "flag_rate": len(flagged) / len(res),
            "mean_unsafe_probability": float(mass.mean()), "flag_rate_at_0.8": float(np.mean(mass >= 0.8)),
            "top_category_of_flagged": dict(cats.most_common()), "flag_rate_by_people_in_captions": by_group}


def run_prompt_bench(encoder: Any, cfg: PromptBenchConfig | None = None, out_dir: str | Path | None = None,
                     progress: bool = True, parts: Sequence[str] = ("synthetic", "mosaic", "zeroshot", "moderation"),
                     notes: str | None = None) -> dict[str, Any]:
    """Run the measurements; write ``report.md``, ``results.json`` and PNGs when ``out_dir`` is given.

    ``notes`` (markdown) is placed near the top of the report, e.g. an interpretation of the numbers.
    """
    cfg = cfg or PromptBenchConfig()
    t0 = time.time()
    variants = cfg.variants()
    res: dict[str, Any] = {"encoder": getattr(encoder, "name", str(encoder)), "config": asdict(cfg),
                           "variants": [list(v) for v in variants]}
    if "synthetic" in parts:
        items = synthetic_items(cfg)
        res["synthetic_grounding"] = {"scenes": len(items), "queries": sum(len(i.queries) for i in items),
                                      "chance": 1.0 / cfg.n_objects,
                                      "rows": evaluate_grounding(encoder, items, variants, thickness=cfg.thickness,
                                                                 batch_size=cfg.batch_size, progress=progress)}
        abl = []
        for pad in cfg.padding_ablation:
            for row in evaluate_grounding(encoder, items, [("ellipse", "red"), ("rectangle", "red")],
                                          thickness=cfg.thickness, padding=pad, batch_size=cfg.batch_size):
                abl.append(dict(row, padding=pad))
        res["synthetic_grounding"]["padding_ablation"] = abl
    if "mosaic" in parts and cfg.n_mosaics > 0:
        items_m = mosaic_items(cfg)
        res["mosaic_grounding"] = {"mosaics": len(items_m), "queries": sum(len(i.queries) for i in items_m),
                                   "chance": 0.25,
                                   "rows": evaluate_grounding(encoder, items_m, variants, thickness=cfg.thickness,
                                                              batch_size=cfg.batch_size, progress=progress)}
    if "zeroshot" in parts:
        res["zeroshot_synthetic"] = zeroshot_synthetic(encoder, cfg)
        res["zeroshot_flickr"] = zeroshot_flickr(encoder, cfg)
    if "moderation" in parts and cfg.moderation_limit > 0:
        res["moderation_benign"] = moderation_benign(encoder, cfg)
    res["seconds"] = round(time.time() - t0, 1)
    log.info("prompt-bench on %s done in %s s", res["encoder"], res["seconds"])
    if out_dir is not None:
        from .bench_report import write_bench_outputs

        write_bench_outputs(res, Path(out_dir), cfg, encoder, notes)
    return res


def rerender(results_json: Path, out: Path, notes: str | None = None) -> dict[str, Any]:
    """Rebuild ``report.md`` and the plots from a saved ``results.json`` (no encoder, no re-measuring)."""
    import json

    from .bench_report import write_bench_outputs

    try:
        res = json.loads(Path(results_json).read_text(encoding="utf-8"))
        conf = {k: tuple(v) if isinstance(v, list) else v for k, v in res["config"].items()}
        cfg = PromptBenchConfig(**conf)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"not a prompt-bench results file ({exc})", item=str(results_json)) from None
    write_bench_outputs(res, Path(out), cfg, None, notes)
    return res


__all__ = ["PromptBenchConfig", "GroundingItem", "evaluate_grounding", "synthetic_items", "mosaic_items",
           "zeroshot_synthetic", "zeroshot_flickr", "flickr_labels", "moderation_benign", "run_prompt_bench", "rerender",
           "FLICKR_CLASSES", "ci95"]
