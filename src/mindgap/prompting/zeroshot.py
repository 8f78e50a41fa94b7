"""Zero-shot classification with prompt-template ensembles (METHODS §4, the CLIP recipe).

Each label is written into every template ("a photo of a {}."), the template embeddings
are averaged and renormalised into one class embedding, and an image's probabilities are
the softmax of ``logit_scale × cos(image, class)`` over the labels. The logit scale is the
encoder's own (``1 / temperature`` for mindgap models, CLIP's learned scale for
transformers CLIP models, else 100 — CLIP's clamp value).

Example:
    >>> res = classify(encoder, ["dog.jpg"], ["dog", "cat", "car"])  # doctest: +SKIP
    >>> res[0].top[0]  # doctest: +SKIP
    {'label': 'dog', 'prob': 0.91}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import InputError
from ..images import describe, load_image

#: A small ensemble in the spirit of CLIP's ImageNet templates.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a photo of the {}.",
    "a close-up photo of a {}.", "a photo of a small {}.", "a photo of a big {}.", "a good photo of a {}.",
)
MAX_LABELS = 1000


def logit_scale(encoder: Any) -> float:
    """The encoder's logit scale: ``1 / temperature``, CLIP's ``exp(logit_scale)`` (≤ 100), else 100."""
    t = getattr(encoder, "temperature", None)
    if isinstance(t, (int, float)) and t > 0:
        return float(1.0 / t)
    ls = getattr(getattr(encoder, "model", None), "logit_scale", None)
    if ls is not None:
        try:
            return float(min(100.0, float(np.exp(float(ls.detach().float().cpu().item())))))
        except (AttributeError, TypeError, ValueError):
            pass
    return 100.0


def parse_labels(labels: Any) -> list[str]:
    """``"a,b,c"`` or a list of labels → a list of ≥ 2 distinct, non-empty labels."""
    if isinstance(labels, str):
        labels = labels.split(",")
    if not isinstance(labels, Sequence):
        raise InputError("labels must be a list or a comma-separated string", item="labels")
    out = [str(x).strip() for x in labels]
    if any(not x for x in out):
        raise InputError("empty label in the list", item="labels")
    if len(out) < 2:
        raise InputError("need at least two labels to classify between", item="labels")
    dup = sorted({x for x in out if out.count(x) > 1})
    if dup:
        raise InputError(f"duplicate labels: {', '.join(dup)}", item="labels")
    if len(out) > MAX_LABELS:
        raise InputError(f"{len(out)} labels is over the limit of {MAX_LABELS}", item="labels")
    return out


def check_templates(templates: Any) -> list[str]:
    """Templates each containing exactly one ``{}``; ``None`` → :data:`DEFAULT_TEMPLATES`."""
    if templates is None:
        return list(DEFAULT_TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]
    out = [str(t).strip() for t in templates if str(t).strip()]
    if not out:
        raise InputError("no templates given", item="templates")
    for i, t in enumerate(out):
        if t.count("{}") != 1:
            raise InputError(f"template {t!r} must contain exactly one '{{}}' where the label goes",
                             item=f"templates[{i}]")
    return out


def load_templates(path: str | Path) -> list[str]:
    """Read templates, one per line (blank lines and ``#`` comments skipped)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("templates file does not exist", item=str(p))
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read templates file ({exc})", item=str(p)) from None
    lines = [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise InputError("templates file has no templates", item=str(p))
    try:
        return check_templates(lines)
    except InputError as exc:
        raise InputError(exc.message, item=f"{p}: {exc.item}") from None


def class_embeddings(encoder: Any, labels: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
    """One L2-normalised embedding per label: the mean of its template embeddings, renormalised."""
    tpl = check_templates(templates)
    texts = [t.format(lab) for lab in labels for t in tpl]
    emb = encoder.encode_text(texts, show_progress=False).reshape(len(labels), len(tpl), -1)
    return l2_normalize(emb.mean(axis=1))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (rows sum to one)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class Classification:
    """Zero-shot result for one image: ``probs`` aligned with ``labels``, ``top`` the best ``k``."""

    image: str
    labels: list[str]
    probs: np.ndarray
    k: int = 5

    @property
    def top(self) -> list[dict[str, Any]]:
        order = np.argsort(-self.probs, kind="stable")[: self.k]
        return [{"label": self.labels[i], "prob": float(self.probs[i])} for i in order]

    @property
    def label(self) -> str:
        return self.labels[int(np.argmax(self.probs))]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "labels": list(self.labels), "probs": [float(p) for p in self.probs],
                "top": self.top}


def classify(encoder: Any, images: Any, labels: Any, *, templates: Sequence[str] | None = None, k: int = 5,
             scale: float | None = None) -> list[Classification]:
    """Zero-shot classify images among ``labels``.

    Args:
        encoder: any :class:`~mindgap.encoders.Encoder`.
        images: one or a list of paths, bytes or PIL images (each checked by
            :func:`~mindgap.images.load_image` before any encoding; a bad one is named).
        labels: list or ``"a,b,c"``.
        templates: prompt templates with ``{}``; default :data:`DEFAULT_TEMPLATES`.
        k: how many top labels each result lists (capped at the number of labels).
        scale: logit scale (default :func:`logit_scale` of the encoder).
    """
    labs = parse_labels(labels)
    if k < 1:
        raise InputError("k must be >= 1", item="k")
    items = [images] if isinstance(images, (str, bytes, Path)) or not isinstance(images, Sequence) else list(images)
    if not items:
        raise InputError("no images given", item="images")
    names = [describe(x, i) for i, x in enumerate(items)]
    pil = [load_image(x, name=n) for x, n in zip(items, names)]
    cls = class_embeddings(encoder, labs, templates)
    img = encoder.encode_image(pil, show_progress=len(pil) > 64 or None)
    probs = softmax((scale or logit_scale(encoder)) * (img @ cls.T))
    return [Classification(n, labs, p, min(k, len(labs))) for n, p in zip(names, probs)]


__all__ = ["classify", "Classification", "class_embeddings", "DEFAULT_TEMPLATES", "logit_scale", "parse_labels",
           "check_templates", "load_templates", "softmax"]
