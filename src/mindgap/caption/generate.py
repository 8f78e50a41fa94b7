"""Describe images: map → retrieve top-k training captions → prompt a generator → clean up.

The prompt is written for small instruction models (SmolLM2-135M runs on a laptop CPU):
a one-line system role, the retrieved captions as a plain bullet list, and one short
instruction placed *after* the list (small models weigh the end of the prompt most). The
order of the list is ``s2d`` (most similar first — what the paper found best) or ``d2s``
(most similar last, right before the instruction). Output is cut to its first line and
first sentence, list markers and quotes are stripped; an empty or degenerate answer falls
back to the top retrieved caption and is flagged (``fallback=True``) so evaluation can
count how often the generator actually contributed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ImageError, InputError
from ..images import load_image
from .map import CaptionModel

Order = Literal["s2d", "d2s"]
ORDERS = ("s2d", "d2s")

SYSTEM_PROMPT = "You write short, literal photo captions."
INSTRUCTION = ("Write one short caption for my photo. Keep only what most of these captions agree on. "
               "Reply with the caption only.")


#: A made-up demonstration (not from any data set) showing the format and the length.
EXAMPLE = (["A brown dog runs through the tall grass .", "Two dogs play in a grassy field .",
            "A dog with a ball in its mouth runs across a lawn ."], "A dog runs through the grass.")


def _user(captions: Sequence[str]) -> str:
    lines = "\n".join(f"- {c.strip().rstrip(' .')}." for c in captions)
    return f"Captions of photos similar to my photo:\n{lines}\n\n{INSTRUCTION}"


def build_messages(captions: Sequence[str], order: Order = "s2d", *, shots: int = 1) -> list[dict[str, Any]]:
    """Chat messages asking for one caption, given retrieved captions best-first.

    Args:
        captions: retrieved captions, most similar first.
        order: ``s2d`` keeps that order; ``d2s`` reverses it (most similar last).
        shots: 1 = prepend one made-up demonstration turn (format + length), 0 = none.

    Example:
        >>> build_messages(["a dog runs", "a dog plays"], "d2s", shots=0)[1]["content"].splitlines()[1]
        '- a dog plays.'
    """
    if order not in ORDERS:
        raise InputError(f"unknown order {order!r}; expected s2d or d2s", item="order")
    caps = list(captions) if order == "s2d" else list(captions)[::-1]
    msgs: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
    if shots:
        ex = EXAMPLE[0] if order == "s2d" else EXAMPLE[0][::-1]
        msgs += [{"role": "user", "content": _user(ex)}, {"role": "assistant", "content": EXAMPLE[1]}]
    # chat backends read "content"; the extractive (no-LM) baseline reads "context": it picks
    # the retrieved caption that best matches the words of all of them (a consensus pick)
    msgs.append({"role": "user", "content": _user(caps),
                 "context": {"question": " ".join(caps), "passages": caps}})
    return msgs


_PREFIX = re.compile(r"^\s*(?:[-*•]|\d+[.)]|caption\s*:|my photo\s*:|photo caption\s*:|answer\s*:)\s*", re.I)
_TRAILING = {"a", "an", "the", "and", "with", "of", "in", "on", "at", "while", "to", "is", "are", "his", "her", "their"}
_CHATTY = re.compile(r"\b(i|i'm|i am|sorry|you|your|caption|photo)\b", re.I)
MAX_WORDS = 20


def _trim(words: list[str]) -> list[str]:
    while words and words[-1].lower().strip(",;:") in _TRAILING:
        words = words[:-1]
    if words:
        words[-1] = words[-1].rstrip(",;:")
    return words


def clean_caption(text: str) -> str:
    """First sentence of a generation, without list markers, quotes, loops or run-ons.

    A phrase the model starts repeating is cut at its second occurrence; more than
    ``MAX_WORDS`` words are cut at the last comma before the limit (or at the limit).

    Example:
        >>> clean_caption('1. "A dog runs on grass ." It is sunny.')
        'A dog runs on grass.'
        >>> clean_caption("A boy in the sea, a big dog, a big dog, a big dog, a")
        'A boy in the sea, a big dog.'
    """
    s = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    for _ in range(3):
        s = _PREFIX.sub("", s).strip().strip("\"'“”‘’`").strip()
    m = re.search(r"[.!?][\"'”’]*(\s|$)", s)
    if m:
        s = s[: m.start()]
    words = re.sub(r"\s+", " ", s).strip(" .,;:\"'“”‘’").split()
    low = [w.lower().strip(",;:") for w in words]
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(low) - 2):
        tri = tuple(low[i:i + 3])
        if tri in seen and i >= seen[tri] + 1:
            words = words[:i]
            break
        seen.setdefault(tri, i)
    if len(words) > MAX_WORDS:
        cut = max((i for i, w in enumerate(words[:MAX_WORDS]) if w.endswith(",")), default=MAX_WORDS - 1)
        words = words[: cut + 1]
    words = _trim(words)
    s = " ".join(words).strip(" .,;:")
    return f"{s[0].upper()}{s[1:]}." if s else ""


def _degenerate(caption: str) -> bool:
    words = caption.rstrip(".").split()
    if len(words) < 3 or len(set(w.lower() for w in words)) < 0.5 * len(words):
        return True
    return bool(_CHATTY.search(caption))


@dataclass
class CaptionResult:
    """The description of one image.

    Attributes:
        image: the input (path or name).
        caption: the new description (``None`` when the image failed).
        retrieved: the top-k captions used, best first: ``{"text", "score", "image_id", "source"}``.
        generator: generator spec (``None`` = retrieval only: the top caption is the answer).
        fallback: the generator gave nothing usable; the top retrieved caption is returned.
        raw: the generator's raw output.
        seconds: wall-clock seconds for this image (map + retrieve + generate).
        error: why the image was skipped (corrupt / unreadable), else ``None``.
    """

    image: str
    caption: str | None
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    generator: str | None = None
    fallback: bool = False
    raw: str = ""
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Captioner:
    """mRAG-gim inference: a fitted :class:`CaptionModel` plus an optional generator.

    Args:
        model: the fitted map + caption store (+ its encoder, loaded lazily).
        generator: a :class:`~mindgap.rag.generators.Generator`; ``None`` = retrieval only.
        k: captions retrieved per image.
        order: ``s2d`` / ``d2s`` (see :func:`build_messages`).
        max_tokens: generation budget (captions are short).
        shots: demonstration turns in the prompt (see :func:`build_messages`).
    """

    def __init__(self, model: CaptionModel, generator: Any = None, *, k: int = 5, order: Order = "s2d",
                 max_tokens: int = 32, shots: int = 1) -> None:
        if k < 1:
            raise InputError("k must be >= 1", item="k")
        if order not in ORDERS:
            raise InputError(f"unknown order {order!r}; expected s2d or d2s", item="order")
        self.model, self.generator, self.k, self.order, self.max_tokens = model, generator, k, order, max_tokens
        self.shots = shots

    def retrieve(self, image_vectors: np.ndarray, *, exclude_image_ids: Sequence[str | None] | None = None,
                 space: str = "mapped") -> list[list[dict[str, Any]]]:
        """Top-k training captions per raw image embedding (mapped, or ``space="raw"``)."""
        q = self.model.map_images(image_vectors) if space == "mapped" else image_vectors
        hits = self.model.store.search(q, self.k, space=space, exclude_image_ids=exclude_image_ids)
        ents = self.model.store.entries
        return [[{"text": ents[j].text, "score": round(s, 6), "image_id": ents[j].image_id,
                  "source": ents[j].source} for j, s in row] for row in hits]

    def write(self, retrieved: list[dict[str, Any]]) -> tuple[str, bool, str]:
        """Caption from retrieved captions: ``(caption, fallback, raw generator output)``."""
        if not retrieved:
            return "", True, ""
        top = retrieved[0]["text"]
        if self.generator is None:
            return top, False, ""
        msgs = build_messages([r["text"] for r in retrieved], self.order, shots=self.shots)
        raw = self.generator.generate(msgs, max_tokens=self.max_tokens, temperature=0.0, stop=["\n"]).text
        cap = clean_caption(raw)
        if not cap or _degenerate(cap):
            return top, True, raw
        return cap, False, raw

    def describe_vectors(self, image_vectors: np.ndarray, names: Sequence[str], *,
                         exclude_image_ids: Sequence[str | None] | None = None) -> list[CaptionResult]:
        """Describe images given their raw (L2-normalised) embeddings."""
        t0 = time.perf_counter()
        retrieved = self.retrieve(image_vectors, exclude_image_ids=exclude_image_ids)
        t_ret = (time.perf_counter() - t0) / max(1, len(names))
        out = []
        gname = getattr(self.generator, "name", None) if self.generator is not None else None
        for name, ret in zip(names, retrieved):
            t1 = time.perf_counter()
            cap, fb, raw = self.write(ret)
            out.append(CaptionResult(str(name), cap, ret, gname, fb, raw, t_ret + time.perf_counter() - t1))
        return out

    def describe(self, images: Sequence[Any]) -> list[CaptionResult]:
        """Describe image files; an unreadable or corrupt one is reported and skipped.

        Returns:
            one :class:`CaptionResult` per input, in order (``error`` set for skipped ones).
        """
        if not images:
            raise InputError("no images given", item="images")
        enc = self.model.encoder()
        results: list[CaptionResult | None] = [None] * len(images)
        good, pil = [], []
        for i, img in enumerate(images):
            name = str(img) if isinstance(img, (str, Path)) else f"<image {i}>"
            try:
                pil.append(load_image(img, name=name))
                good.append((i, name))
            except ImageError as exc:
                results[i] = CaptionResult(name, None, error=str(exc))
        if good:
            t0 = time.perf_counter()
            vecs = enc.encode_image(pil, show_progress=False)
            t_enc = (time.perf_counter() - t0) / len(good)
            for (i, _), r in zip(good, self.describe_vectors(vecs, [n for _, n in good])):
                r.seconds = round(r.seconds + t_enc, 4)
                results[i] = r
        return [r for r in results if r is not None]
