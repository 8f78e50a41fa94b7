"""Referring-expression grounding with visual prompts (METHODS §5).

For each candidate region (a grid or given boxes) draw the prompt — by default a red
ellipse — on a copy of the image, embed every copy, and score it against the phrase by
cosine. Optionally subtract a *prior*: the same copy's cosine with the empty phrase
``""``, which removes what the marker alone contributes (a marker near the centre, or a
big one, scores high for any phrase). The region with the highest score wins.

Ties: when every copy is identical (prompt ``none``) all scores tie; :func:`tie_credit`
then gives ``1 / (number tied)`` credit, so such a baseline measures at chance, not at
"always region 0".

Very large inputs are first downscaled so the longer side is at most ``max_side``
(default 1024) — the encoder sees ~224 px anyway — and boxes are reported in the original
image's pixels.

Example:
    >>> res = ground(encoder, "street.jpg", "the red car", regions="grid:3x3")  # doctest: +SKIP
    >>> res.best, res.ranking[0]["box"]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..images import describe, load_image
from .markers import COLORS, MARKERS, apply_prompt, canonical_marker, marker_mask, parse_color
from .regions import Region, parse_regions

DEFAULT_MAX_SIDE = 1024
#: The phrase whose score is subtracted as the prior.
EMPTY_PHRASE = ""
#: The comparison grid of ``--compare`` (the paper's markers and colours) and the extra prompts.
COMPARE_MARKERS: tuple[str, ...] = MARKERS
COMPARE_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple")
COMPARE_EFFECTS: tuple[str, ...] = ("crop", "blur", "grey", "grey+ellipse", "none")
TIE_TOL = 1e-6


def check_phrase(phrase: Any) -> str:
    """A non-empty phrase (str); anything else is an InputError."""
    if not isinstance(phrase, str) or not phrase.strip():
        raise InputError("the phrase must be a non-empty string", item="phrase")
    return phrase.strip()


def tie_credit(scores: np.ndarray, gold: int, tol: float = TIE_TOL) -> float:
    """1 if ``gold`` is the unique best, ``1/k`` if it ties with ``k - 1`` others at the top, else 0."""
    s = np.asarray(scores, dtype=np.float64)
    top = np.flatnonzero(s >= s.max() - tol)
    return 1.0 / len(top) if gold in top else 0.0


def working_image(image: Any, max_side: int = DEFAULT_MAX_SIDE, name: str | None = None) -> tuple[Any, Any, float]:
    """``(original, working copy, scale)``: the image loaded safely and downscaled to ``max_side``."""
    from PIL import Image

    im = load_image(image, name=name or describe(image))
    if max_side < 32:
        raise InputError("max_side must be at least 32 pixels", item="max_side")
    scale = min(1.0, max_side / max(im.size))
    if scale >= 1.0:
        return im, im, 1.0
    work = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BICUBIC)
    return im, work, scale


def _to_work(regs: Sequence[Region], work_size: tuple[int, int], scale: float) -> list[Region]:
    if scale == 1.0:
        return list(regs)
    w, h = work_size
    out = []
    for r in regs:
        s = r.scaled(scale, scale)
        out.append(Region(max(0, min(s.x0, w - 1)), max(0, min(s.y0, h - 1)), min(w, max(s.x1, s.x0 + 1)),
                          min(h, max(s.y1, s.y0 + 1)), "px", r.label, r.gold))
    return out


def embed_prompted(encoder: Any, jobs: Sequence[tuple[Any, Region, str, Any]], *, thickness: int | None = None,
                   padding: int | None = None, blur_radius: float | None = None, batch_size: int = 64,
                   progress: bool = False) -> np.ndarray:
    """Embed prompted copies for ``(image, region, prompt, colour)`` jobs → float32 ``(len(jobs), dim)``.

    Copies are made and encoded in chunks of ``batch_size`` so memory stays bounded while the
    encoder still sees full batches (much faster than one call per region on a CPU).
    """
    out = []
    starts = range(0, len(jobs), batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="prompted copies", unit="img", leave=False)
    for s in starts:
        copies = [apply_prompt(im, r, prompt, color=col, thickness=thickness, padding=padding, blur_radius=blur_radius)
                  for im, r, prompt, col in jobs[s : s + batch_size]]
        out.append(encoder.encode_image(copies, batch_size=batch_size, show_progress=False))
        if bar is not None:
            bar.update(len(copies))
    if bar is not None:
        bar.close()
    return np.concatenate(out, axis=0)


def region_embeddings(encoder: Any, image: Any, regions: Sequence[Region], prompt: str = "ellipse", *,
                      color: Any = "red", thickness: int | None = None, padding: int | None = None,
                      blur_radius: float | None = None, batch_size: int = 64) -> np.ndarray:
    """Embed one prompted copy of ``image`` per region → float32 ``(len(regions), dim)``."""
    return embed_prompted(encoder, [(image, r, prompt, color) for r in regions], thickness=thickness,
                          padding=padding, blur_radius=blur_radius, batch_size=batch_size)


@dataclass
class GroundingResult:
    """Scores of every region for one phrase.

    Attributes:
        phrase: the query.
        regions: candidate regions in the original image's pixels.
        scores: final scores (``raw - prior`` when the prior is used).
        raw: cosine of each prompted copy with the phrase.
        prior: cosine with the empty phrase (``None`` when not used).
        prompt, color: how the regions were marked.
        image: the working image (downscaled when the input was large); ``scale`` = working / original.
    """

    phrase: str
    regions: list[Region]
    scores: np.ndarray
    raw: np.ndarray
    prior: np.ndarray | None
    prompt: str
    color: tuple[int, int, int]
    image: Any = field(repr=False, default=None)
    scale: float = 1.0
    work_regions: list[Region] = field(repr=False, default_factory=list)

    @property
    def best(self) -> int:
        """Index of the winning region (ties → the lowest index)."""
        return int(np.argmax(self.scores))

    @property
    def ranking(self) -> list[dict[str, Any]]:
        """Regions best first: ``{"index", "box", "score", "raw", "prior", "label"}``."""
        order = np.argsort(-self.scores, kind="stable")
        out = []
        for i in order:
            r = self.regions[int(i)]
            out.append({"index": int(i), "box": [int(v) for v in r.box], "score": float(self.scores[i]),
                        "raw": float(self.raw[i]), "prior": None if self.prior is None else float(self.prior[i]),
                        "label": r.label})
        return out

    @property
    def margin(self) -> float:
        """Best score minus the runner-up (0 for a single region)."""
        s = np.sort(self.scores)[::-1]
        return float(s[0] - s[1]) if len(s) > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"phrase": self.phrase, "prompt": self.prompt, "color": list(self.color),
                "prior": self.prior is not None, "best": self.best, "margin": self.margin,
                "ranking": self.ranking}

    def overlay(self, color: Any = None, thickness: int | None = None):  # noqa: ANN201 - PIL.Image
        """The working image with every candidate framed thinly in grey and the winner marked.

        The winner gets the grounding marker (a rectangle when the prompt was an effect
        such as ``crop``) in ``color`` (default: the prompt colour).
        """
        from PIL import Image

        im = self.image
        arr = np.array(im, dtype=np.uint8)
        regs = self.work_regions or self.regions
        for i, r in enumerate(regs):
            if i != self.best:
                arr[marker_mask(im.size, r, "rectangle", thickness=1, padding=0)] = (160, 160, 160)
        kind = next((p for p in self.prompt.split("+") if p.strip().lower() not in ("crop", "blur", "grey", "gray",
                                                                                    "none")), "rectangle")
        rgb = parse_color(color) if color is not None else self.color
        arr[marker_mask(im.size, regs[self.best], canonical_marker(kind), thickness=thickness)] = rgb
        return Image.fromarray(arr, "RGB")


def ground(encoder: Any, image: Any, phrase: str, *, regions: Any = "grid:3x3", marker: str = "circle",
           color: Any = "red", prior: bool = True, thickness: int | None = None, padding: int | None = None,
           blur_radius: float | None = None, max_side: int = DEFAULT_MAX_SIDE) -> GroundingResult:
    """Rank candidate regions of ``image`` by how well the prompted copy matches ``phrase``.

    Args:
        encoder: any :class:`~mindgap.encoders.Encoder`.
        image: path, bytes or PIL image (pixel limit and corrupt files → ImageError).
        phrase: the referring expression ("the red triangle").
        regions: ``"grid:RxC"``, a boxes JSON file, ``;``-separated boxes or a list of region specs,
            in the original image's pixels (or ``rel:`` units).
        marker: a marker, an effect (``crop``, ``blur``, ``grey``, ``none``) or ``"grey+ellipse"``.
        color: marker colour.
        prior: subtract each copy's cosine with the empty phrase.
        thickness, padding, blur_radius: prompt options (see :func:`~.markers.apply_prompt`).
        max_side: downscale larger inputs to this longer side first.
    """
    phrase = check_phrase(phrase)
    rgb = parse_color(color)
    orig, work, scale = working_image(image, max_side)
    regs = parse_regions(regions, orig.size)
    wregs = _to_work(regs, work.size, scale)
    emb = region_embeddings(encoder, work, wregs, marker, color=rgb, thickness=thickness, padding=padding,
                            blur_radius=blur_radius)
    texts = [phrase, EMPTY_PHRASE] if prior else [phrase]
    t = encoder.encode_text(texts, show_progress=False)
    sims = (emb @ t.T).astype(np.float64)
    raw = sims[:, 0]
    pri = sims[:, 1] if prior else None
    scores = raw - pri if pri is not None else raw.copy()
    return GroundingResult(phrase, regs, scores, raw, pri, str(marker), rgb, work, scale, wregs)


def compare_variants(markers: Sequence[str] = COMPARE_MARKERS, colors: Sequence[str] = COMPARE_COLORS,
                     effects: Sequence[str] = COMPARE_EFFECTS) -> list[tuple[str, str]]:
    """``(prompt, colour)`` pairs: every marker × colour, then the effects (in red where it matters)."""
    return [(m, c) for m in markers for c in colors] + [(e, "red") for e in effects]


def compare(encoder: Any, image: Any, phrase: str, *, regions: Any = "grid:3x3", gold: int | None = None,
            variants: Sequence[tuple[str, str]] | None = None, prior: bool = True, thickness: int | None = None,
            padding: int | None = None, max_side: int = DEFAULT_MAX_SIDE) -> list[dict[str, Any]]:
    """Ground ``phrase`` with every prompt variant; one row per variant.

    Each row: ``prompt``, ``color``, ``best`` (index), ``label``, ``score``, ``margin`` and,
    when ``gold`` (a region index) is known, ``gold_rank`` (1 = best; ties count in the gold's
    favour) and ``credit`` (:func:`tie_credit`). With ``gold=None`` a region marked
    ``"gold": true`` in a boxes file is used.
    """
    phrase = check_phrase(phrase)
    orig, work, scale = working_image(image, max_side)
    regs = parse_regions(regions, orig.size)
    if gold is None:
        golds = [i for i, r in enumerate(regs) if r.gold]
        gold = golds[0] if len(golds) == 1 else None
    if gold is not None and not 0 <= gold < len(regs):
        raise InputError(f"gold index {gold} is out of range for {len(regs)} regions", item="gold")
    wregs = _to_work(regs, work.size, scale)
    t = encoder.encode_text([phrase, EMPTY_PHRASE], show_progress=False)
    variants = list(variants or compare_variants())
    jobs = [(work, r, prompt, col) for prompt, col in variants for r in wregs]
    emb = embed_prompted(encoder, jobs, thickness=thickness, padding=padding).reshape(len(variants), len(wregs), -1)
    rows = []
    for (prompt, col), e in zip(variants, emb):
        sims = (e @ t.T).astype(np.float64)
        s = sims[:, 0] - sims[:, 1] if prior else sims[:, 0]
        order = np.argsort(-s, kind="stable")
        best = int(order[0])
        row: dict[str, Any] = {"prompt": prompt, "color": col if uses_color(prompt) else "–", "best": best,
                               "label": regs[best].label, "score": float(s[best]),
                               "margin": float(s[order[0]] - s[order[1]]) if len(s) > 1 else 0.0}
        if gold is not None:
            row["gold_rank"] = int(np.sum(s > s[gold] + TIE_TOL)) + 1
            row["credit"] = tie_credit(s, gold)
        rows.append(row)
    return rows


def uses_color(prompt: str) -> bool:
    """Whether a prompt kind draws in a colour (markers do; crop, blur, grey, none do not)."""
    return any(p.strip().lower() not in ("crop", "blur", "grey", "gray", "none") for p in prompt.split("+"))


__all__ = ["ground", "compare", "compare_variants", "GroundingResult", "region_embeddings", "embed_prompted",
           "tie_credit", "working_image", "check_phrase", "uses_color", "EMPTY_PHRASE", "COMPARE_MARKERS",
           "COMPARE_COLORS", "COMPARE_EFFECTS", "COLORS"]
