"""A seeded synthetic image–caption generator: scenes of shapes with captions of tunable richness.

Each scene is a flat grey canvas with one to a few shapes. Every object has a **shape**
(circle, square, triangle, diamond, star, hexagon), a **colour** (red, green, blue, yellow,
purple, orange), a **size** (small / big), a **texture** (plain, striped, dotted) and a
position; within one scene no two objects share a shape or a colour, so a phrase such as
"the red triangle" (or just "the triangle") names exactly one object. The first object is
the *main object*: in lab scenes it is the largest, and its shape / colour are the labels
the lab's zero-shot probes predict (``label_object`` / ``label_attribute``).

Captions describe the *same* scene at increasing richness (METHODS §2, information
imbalance): :data:`RICHNESS_LEVELS` is ``object`` (shape names only) → ``colour``
(+ colour) → ``attributes`` (+ size, texture, position of the main object) →
``relations`` (+ where each other object is relative to the main one). Every caption is
generated from the scene's own fields, so captions always match their images, and the
scene depends only on ``(seed, split, index)`` — never on the level — so the lab compares
levels on identical pixels. (``mindgap train`` augments with horizontal flips, which makes
"left" / "right" in captions noisy for a trained model; "above" / "below" survive.)

Geometry is kept in relative units (0–1) and rendered at any size without antialiasing,
so a scene rendered twice is bit-identical. :meth:`SceneObject.box` gives each object's
pixel bounding box (the ground truth of the grounding benchmark in
:mod:`mindgap.prompting.benchmark`).

Example:
    >>> rng = np.random.default_rng(0)
    >>> scene = make_scene(rng, n_objects=3)
    >>> img = scene.render(64)
    >>> caption(scene, "colour").endswith(".")
    True
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "star", "hexagon")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
    "yellow": (240, 215, 30), "purple": (135, 50, 175), "orange": (245, 135, 20),
}
SIZES: tuple[str, ...] = ("small", "big")
TEXTURES: tuple[str, ...] = ("plain", "striped", "dotted")
#: Caption richness, poorest first.
RICHNESS_LEVELS: tuple[str, ...] = ("object", "colour", "attributes", "relations")
#: Radius ranges (relative to the canvas side) of big and small objects.
BIG_R = (0.22, 0.30)
SMALL_R = (0.09, 0.13)
_SPLIT_CODE = {"train": 1, "test": 2, "val": 3, "grounding": 4, "zeroshot": 5}


@dataclass(frozen=True)
class SceneObject:
    """One shape; geometry in relative units (centre ``cx, cy`` and radius ``r``, 0–1)."""

    shape: str
    colour: str
    size: str
    texture: str
    cx: float
    cy: float
    r: float

    def box(self, image_size: int) -> tuple[int, int, int, int]:
        """Pixel bounding box ``(x0, y0, x1, y1)``, ``x1``/``y1`` exclusive, inside the canvas."""
        s = image_size
        return (max(0, math.floor((self.cx - self.r) * s)), max(0, math.floor((self.cy - self.r) * s)),
                min(s, math.ceil((self.cx + self.r) * s)), min(s, math.ceil((self.cy + self.r) * s)))

    @property
    def position(self) -> str:
        """Coarse position word of the centre: left / right / top / bottom / middle."""
        dx, dy = self.cx - 0.5, self.cy - 0.5
        if max(abs(dx), abs(dy)) < 0.12:
            return "middle"
        if abs(dx) >= abs(dy):
            return "left" if dx < 0 else "right"
        return "top" if dy < 0 else "bottom"

    def phrase(self, kind: str = "full") -> str:
        """A referring expression: ``full`` "the red triangle", ``shape`` "the triangle",
        ``colour`` "the red shape"."""
        if kind == "full":
            return f"the {self.colour} {self.shape}"
        if kind == "shape":
            return f"the {self.shape}"
        if kind == "colour":
            return f"the {self.colour} shape"
        raise InputError(f"unknown phrase kind {kind!r}; use full, shape or colour", item="kind")


@dataclass(frozen=True)
class Scene:
    """A canvas (grey ``background`` level) with objects; ``objects[0]`` is the main object."""

    objects: tuple[SceneObject, ...]
    background: int = 128
    scene_id: str = ""

    @property
    def main(self) -> SceneObject:
        return self.objects[0]

    def render(self, image_size: int = 64):  # noqa: ANN201 - PIL.Image
        """Draw the scene as an RGB ``PIL.Image`` of ``image_size``² pixels (no antialiasing)."""
        from PIL import Image

        if image_size < 8:
            raise InputError("image_size must be at least 8 pixels", item="image_size")
        canvas = np.full((image_size, image_size, 3), self.background, dtype=np.uint8)
        for obj in self.objects:
            mask = _shape_mask(obj, image_size)
            canvas[mask] = _texture(obj, image_size)[mask]
        return Image.fromarray(canvas, "RGB")

    def to_dict(self, image_size: int | None = None) -> dict[str, Any]:
        objs = []
        for o in self.objects:
            d = asdict(o)
            d["position"] = o.position
            if image_size:
                d["box"] = list(o.box(image_size))
            objs.append(d)
        return {"scene_id": self.scene_id, "background": self.background, "objects": objs}


# -- drawing -------------------------------------------------------------------------------
def _polygon(obj: SceneObject, s: int) -> list[tuple[float, float]] | None:
    cx, cy, r = obj.cx * s, obj.cy * s, obj.r * s
    if obj.shape == "triangle":
        ang = [-90, 30, 150]
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in ang]
    if obj.shape == "diamond":
        return [(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)]
    if obj.shape == "hexagon":
        return [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a))) for a in range(0, 360, 60)]
    if obj.shape == "star":
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else 0.45 * r
            a = math.radians(-90 + 36 * i)
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    return None


def _shape_mask(obj: SceneObject, s: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    m = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(m)
    cx, cy, r = obj.cx * s, obj.cy * s, obj.r * s
    if obj.shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r - 1, cy + r - 1], fill=255)
    elif obj.shape == "square":
        h = 0.82 * r
        d.rectangle([cx - h, cy - h, cx + h - 1, cy + h - 1], fill=255)
    else:
        poly = _polygon(obj, s)
        if poly is None:
            raise InputError(f"unknown shape {obj.shape!r}; known: {', '.join(SHAPES)}", item="shape")
        d.polygon(poly, fill=255)
    return np.asarray(m) > 0


def _texture(obj: SceneObject, s: int) -> np.ndarray:
    """The object's fill as an ``(s, s, 3)`` array: its colour, with stripes or dots."""
    if obj.colour not in COLOURS:
        raise InputError(f"unknown colour {obj.colour!r}; known: {', '.join(COLOURS)}", item="colour")
    base = np.array(COLOURS[obj.colour], dtype=np.float32)
    fill = np.broadcast_to(base, (s, s, 3)).copy()
    yy, xx = np.mgrid[0:s, 0:s]
    period = max(4, s // 12)
    if obj.texture == "striped":
        band = ((xx + yy) // (period // 2)) % 2 == 1  # diagonal stripes
        fill[band] = base * 0.45
    elif obj.texture == "dotted":
        c = (period - 1) / 2
        dot = ((xx % period) - c) ** 2 + ((yy % period) - c) ** 2 <= (period / 3.2) ** 2
        fill[dot] = base * 0.4 + 255 * 0.6
    elif obj.texture != "plain":
        raise InputError(f"unknown texture {obj.texture!r}; known: {', '.join(TEXTURES)}", item="texture")
    return fill.astype(np.uint8)


# -- scenes --------------------------------------------------------------------------------
def make_scene(rng: np.random.Generator, *, n_objects: int | tuple[int, int] = (1, 3), main_big: bool = True,
               radius: tuple[float, float] | None = None, scene_id: str = "") -> Scene:
    """Sample one scene.

    Args:
        rng: the random generator (the only source of randomness).
        n_objects: a count or an inclusive ``(min, max)`` range (at most 6).
        main_big: lab scenes — the main object is big, the others small (so the main object
            dominates the picture and whole-image labels are meaningful); ``False`` draws every
            object with ``radius`` (grounding scenes).
        radius: relative radius range when ``main_big`` is false (default: small objects).
        scene_id: stored on the scene.
    """
    lo, hi = (n_objects, n_objects) if isinstance(n_objects, int) else n_objects
    if not 1 <= lo <= hi <= len(SHAPES):
        raise InputError(f"n_objects must lie in 1..{len(SHAPES)}", item="n_objects")
    n = int(rng.integers(lo, hi + 1))
    shapes = rng.choice(len(SHAPES), size=n, replace=False)
    colours = rng.choice(len(COLOURS), size=n, replace=False)
    cnames = list(COLOURS)
    placed: list[SceneObject] = []
    for i in range(n):
        if main_big:
            big = i == 0 and (n > 1 or rng.random() < 0.6)
            r_lo, r_hi = BIG_R if big else SMALL_R
        else:
            r_lo, r_hi = radius or (0.10, 0.15)
        for _attempt in range(200):
            r = float(rng.uniform(r_lo, r_hi))
            m = r + 0.02
            cx, cy = float(rng.uniform(m, 1 - m)), float(rng.uniform(m, 1 - m))
            if all(math.hypot(cx - o.cx, cy - o.cy) > r + o.r + 0.03 for o in placed):
                break
        else:  # pragma: no cover - practically unreachable with ≤ 6 objects at these sizes
            raise RuntimeError("could not place the objects without overlap")
        size = "big" if r >= 0.18 else "small"
        tex = TEXTURES[int(rng.integers(len(TEXTURES)))]
        placed.append(SceneObject(SHAPES[int(shapes[i])], cnames[int(colours[i])], size, tex, cx, cy, r))
    return Scene(tuple(placed), background=int(rng.integers(80, 190)), scene_id=scene_id)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of ``split`` — independent of level, count and order."""
    return np.random.default_rng([int(seed), _SPLIT_CODE.get(split, 9), int(index)])


def generate_scenes(n: int, *, seed: int = 0, split: str = "test", **kwargs: Any) -> list[Scene]:
    """``n`` scenes of one split (``kwargs`` go to :func:`make_scene`)."""
    return [make_scene(scene_rng(seed, split, i), scene_id=f"{split}_{i:05d}", **kwargs) for i in range(n)]


# -- captions ------------------------------------------------------------------------------
def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def _describe(o: SceneObject, level: str, with_position: bool) -> str:
    if level == "object":
        return _article(o.shape)
    if level == "colour":
        return _article(f"{o.colour} {o.shape}")
    words = [o.size, o.colour, "" if o.texture == "plain" else o.texture, o.shape]
    text = _article(" ".join(w for w in words if w))
    if with_position:
        text += {"middle": " in the middle", "left": " on the left", "right": " on the right",
                 "top": " at the top", "bottom": " at the bottom"}[o.position]
    return text


def _relation(o: SceneObject, main: SceneObject) -> str:
    dx, dy = o.cx - main.cx, o.cy - main.cy
    if abs(dx) >= abs(dy):
        where = "to the left of" if dx < 0 else "to the right of"
    else:
        where = "above" if dy < 0 else "below"
    return f"{_describe(o, 'attributes', False)} {where} the {main.shape}"


def _join(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def caption(scene: Scene, level: str, variant: int = 0) -> str:
    """One caption of ``scene`` at ``level``; ``variant`` 0/1 picks the phrasing and order.

    Every word comes from the scene's fields, so the caption always matches the image.
    """
    if level not in RICHNESS_LEVELS:
        raise InputError(f"unknown caption richness {level!r}; choose from {', '.join(RICHNESS_LEVELS)}",
                         item="level")
    main, others = scene.main, list(scene.objects[1:])
    if variant % 2 == 1:
        others = others[::-1]
    if level == "relations":
        head = _describe(main, level, True)
        text = head + ("" if not others else (", with " if variant % 2 == 0 else "; there is ")
                       + _join([_relation(o, main) for o in others]))
    else:
        text = _join([_describe(o, level, level == "attributes" and o is main) for o in [main] + others])
    if variant % 2 == 1:
        text = "a picture of " + text
    return text + "."


def captions_for(scene: Scene, level: str, n: int = 2) -> list[str]:
    """``n`` captions (alternating phrasings) — the trainer and the gap measures want ≥ 2."""
    return [caption(scene, level, v) for v in range(n)]


# -- data sets -----------------------------------------------------------------------------
def write_lab_dataset(data_dir: str | Path, *, level: str = "relations", n_train: int = 1500, n_test: int = 300,
                      image_size: int = 64, seed: int = 0, captions_per_image: int = 2) -> dict[str, Any]:
    """Write a ``captions.jsonl`` + ``images/`` folder (shared layout, splits train / test).

    Each record carries ``label_object`` (main object's shape), ``label_attribute`` (its
    colour), ``level`` and ``objects`` (every object's fields and pixel ``box``).

    Returns:
        ``{"vocab": {"objects", "attributes"}, "example_caption", "mean_caption_words",
        "level", "n_train", "n_test", "image_size", "seed", "path"}``.
    """
    if level not in RICHNESS_LEVELS:
        raise InputError(f"unknown caption richness {level!r}; choose from {', '.join(RICHNESS_LEVELS)}",
                         item="level")
    if n_train < 1 or n_test < 2:
        raise InputError("need n_train >= 1 and n_test >= 2 scenes", item="n_train/n_test")
    if captions_per_image < 1:
        raise InputError("captions_per_image must be >= 1", item="captions_per_image")
    root = Path(data_dir)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    words: list[int] = []
    example = None
    for split, n in (("train", n_train), ("test", n_test)):
        for i, scene in enumerate(generate_scenes(n, seed=seed, split=split)):
            rel = f"images/{scene.scene_id}.png"
            scene.render(image_size).save(root / rel, format="PNG", optimize=False)
            caps = captions_for(scene, level, captions_per_image)
            example = example or caps[0]
            words.extend(len(c.split()) for c in caps)
            rec = {"image": rel, "captions": caps, "split": split, "image_id": scene.scene_id,
                   "label_object": scene.main.shape, "label_attribute": scene.main.colour, "level": level,
                   "background": scene.background, "objects": scene.to_dict(image_size)["objects"]}
            lines.append(json.dumps(rec, ensure_ascii=False))
    tmp = root / "captions.jsonl.tmp"
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, root / "captions.jsonl")  # never a half-written caption file
    meta = {"vocab": vocab(), "example_caption": example, "mean_caption_words": round(float(np.mean(words)), 2),
            "level": level, "n_train": n_train, "n_test": n_test, "image_size": image_size, "seed": seed,
            "path": str(root)}
    (root / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def vocab() -> dict[str, list[str]]:
    """The closed vocabularies: ``objects`` (shapes), ``attributes`` (colours), sizes, textures."""
    return {"objects": list(SHAPES), "attributes": list(COLOURS), "sizes": list(SIZES), "textures": list(TEXTURES)}


@dataclass
class GroundingCase:
    """One grounding query on a synthetic scene: candidate boxes and the gold index."""

    scene: Scene
    phrase: str
    kind: str
    gold: int
    boxes: list[tuple[int, int, int, int]] = field(default_factory=list)


def grounding_cases(n_scenes: int, *, n_objects: int = 3, image_size: int = 224, seed: int = 0,
                    kinds: Sequence[str] = ("full", "shape", "colour")) -> list[GroundingCase]:
    """Grounding queries with known answers: every object of every scene, each phrase kind.

    Scenes have ``n_objects`` similar-sized objects with distinct shapes and colours, so
    each phrase names exactly one of the candidate boxes (the objects' own boxes).
    """
    out = []
    for i in range(n_scenes):
        scene = make_scene(scene_rng(seed, "grounding", i), n_objects=n_objects, main_big=False,
                           scene_id=f"ground_{i:05d}")
        boxes = [o.box(image_size) for o in scene.objects]
        for j, o in enumerate(scene.objects):
            out.extend(GroundingCase(scene, o.phrase(k), k, j, boxes) for k in kinds)
    return out


__all__ = ["SHAPES", "COLOURS", "SIZES", "TEXTURES", "RICHNESS_LEVELS", "SceneObject", "Scene", "make_scene",
           "scene_rng", "generate_scenes", "caption", "captions_for", "write_lab_dataset", "vocab",
           "GroundingCase", "grounding_cases"]
