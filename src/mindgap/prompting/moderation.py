"""Content screening against category prompts (METHODS §4) — a screening aid, not a verdict.

Every category (unsafe and safe) becomes a class of the zero-shot classifier in
:mod:`.zeroshot` (templates "a photo of {}." …). An image is **flagged** when the total
probability of the unsafe categories reaches ``threshold`` (default 0.5); the flagged
categories are the unsafe ones within half of the top unsafe probability, and the
confidence is the unsafe mass when flagged, one minus it otherwise.

Caveats (read before relying on it):

* It is a screening aid for routing images to a human, never a decision about a person
  or an image. Scores depend entirely on the encoder's learned associations and on how
  the category lists are worded; the safe list matters as much as the unsafe one.
* Those associations carry social bias. The visual-prompting study (METHODS §5) found
  that CLIP matches *circled people* more often to "suspect" / "missing person"; similar
  prompt-based judgements about people (criminality, morality, attractiveness) must not
  be built on this. Do not add such categories.
* The bundled offline model (``mindgap:flickr8k-effnet``) was trained on 6,047 everyday
  Flickr8k photos (on top of an ImageNet backbone) and has never been taught unsafe content: with it this command only
  demonstrates the mechanics. Use a real CLIP and measure precision / recall on your own
  labelled data before trusting any threshold.

Example:
    >>> res = moderate(encoder, ["upload.jpg"])  # doctest: +SKIP
    >>> res[0].to_dict()["flagged"]  # doctest: +SKIP
    False
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .zeroshot import classify

DEFAULT_UNSAFE: tuple[str, ...] = (
    "graphic violence", "a weapon pointed at someone", "blood and gore", "nudity", "sexual content",
    "illegal drugs", "self-harm", "a hateful symbol",
)
DEFAULT_SAFE: tuple[str, ...] = (
    "an everyday scene", "people outdoors", "people indoors", "an animal", "a landscape", "food",
    "a sports activity", "a city street", "children playing", "a document or text",
)
MODERATION_TEMPLATES: tuple[str, ...] = ("a photo of {}.", "an image showing {}.", "a picture of {}.")
DEFAULT_THRESHOLD = 0.5
CAVEAT = ("screening aid, not a verdict: scores reflect the encoder's learned (and biased) associations; "
          "route flagged images to a human reviewer")


def _categories(values: Any, default: Sequence[str], what: str) -> list[str]:
    if values is None:
        return list(default)
    if isinstance(values, str):
        values = values.split(",")
    out = [str(v).strip() for v in values if str(v).strip()]
    if not out:
        raise InputError(f"no {what} categories given", item=what)
    return out


def load_categories(path: str | Path) -> tuple[list[str], list[str]]:
    """Read ``{"unsafe": [...], "safe": [...]}`` from a JSON file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("categories file does not exist", item=str(p)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read categories JSON ({exc})", item=str(p)) from None
    if not isinstance(data, dict) or not isinstance(data.get("unsafe"), list) or not isinstance(data.get("safe"), list):
        raise InputError('expected {"unsafe": [...], "safe": [...]}', item=str(p))
    return _categories(data["unsafe"], (), "unsafe"), _categories(data["safe"], (), "safe")


def check_threshold(threshold: float | None) -> float:
    """The threshold in force: ``None`` → :data:`DEFAULT_THRESHOLD`; outside (0, 1] → InputError."""
    thr = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not np.isfinite(thr) or not 0.0 < thr <= 1.0:
        raise InputError(f"threshold must lie in (0, 1], got {threshold}", item="threshold")
    return thr


@dataclass
class ModerationResult:
    """Screening result for one image."""

    image: str
    flagged: bool
    categories: list[str]
    confidence: float
    unsafe_probability: float
    threshold: float
    scores: dict[str, float] = field(default_factory=dict)
    unsafe: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "flagged": self.flagged, "categories": list(self.categories),
                "confidence": self.confidence, "unsafe_probability": self.unsafe_probability,
                "threshold": self.threshold, "scores": dict(self.scores), "note": CAVEAT}


def moderate(encoder: Any, images: Any, *, unsafe: Any = None, safe: Any = None, threshold: float | None = None,
             templates: Sequence[str] | None = None) -> list[ModerationResult]:
    """Screen images against unsafe / safe category prompts.

    Args:
        encoder: any :class:`~mindgap.encoders.Encoder`.
        images: one or a list of paths, bytes or PIL images.
        unsafe, safe: category lists (or ``"a,b"`` strings); defaults :data:`DEFAULT_UNSAFE` /
            :data:`DEFAULT_SAFE`. A category may not be in both.
        threshold: unsafe probability at which an image is flagged (0 < t ≤ 1; default 0.5).
        templates: prompt templates with ``{}`` (default :data:`MODERATION_TEMPLATES`).
    """
    uns = _categories(unsafe, DEFAULT_UNSAFE, "unsafe")
    saf = _categories(safe, DEFAULT_SAFE, "safe")
    both = sorted(set(uns) & set(saf))
    if both:
        raise InputError(f"categories listed as both unsafe and safe: {', '.join(both)}", item="categories")
    thr = check_threshold(threshold)
    res = classify(encoder, images, uns + saf, templates=list(templates or MODERATION_TEMPLATES), k=len(uns) + len(saf))
    out = []
    n_u = len(uns)
    for r in res:
        pu = r.probs[:n_u]
        mass = float(pu.sum())
        flagged = mass >= thr
        cats = [uns[i] for i in np.argsort(-pu, kind="stable") if pu[i] >= 0.5 * pu.max()] if flagged else []
        out.append(ModerationResult(r.image, flagged, cats, mass if flagged else 1.0 - mass, mass, thr,
                                    {lab: float(p) for lab, p in zip(r.labels, r.probs)}, uns))
    return out


__all__ = ["moderate", "ModerationResult", "DEFAULT_UNSAFE", "DEFAULT_SAFE", "DEFAULT_THRESHOLD", "CAVEAT",
           "load_categories", "check_threshold", "MODERATION_TEMPLATES"]
