"""Retrieved hits → prompt sources; images → words for text-only generators.

A retrieved image reaches the generator in one of two ways, always stated in the prompt
and in ``--explain``:

* **attached** — the generator ``supports_images`` (e.g. ``openai:gpt-4o-mini``): the image
  itself goes into the message as an image part (base64 data URL on the wire);
* **as words** — text-only generators. In order of preference:

  1. its stored caption / title (``Item.text``) or a descriptive metadata field
     (``caption``, ``captions``, ``title``, ``description``, ``alt``);
  2. mRAG-gim style (METHODS §3): when the store has a ``linear`` gap corrector fitted, the
     image embedding is mapped across the gap and the ``k`` nearest *texts of the store* are
     its description (skipped, with a note, if there is no such map or it fails);
  3. otherwise ``an image (no description available)``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import MindgapError
from ..text import split_sentences
from ..types import Hit, Modality
from .generators.extractive import content_words

if TYPE_CHECKING:
    from .prompts import PromptTemplate

log = logging.getLogger(__name__)

NO_DESCRIPTION = "an image (no description available)"
_LABELS = {"caption": "its stored caption", "metadata": "its stored caption",
           "linear-map": "the texts nearest to it through the linear map",
           "nearest-texts": "the texts nearest to it (no gap map)"}
_META_KEYS = ("caption", "captions", "title", "description", "alt")


@dataclass
class Source:
    """One retrieved item as the generator sees it.

    Attributes:
        id / modality / score / cosine / rank: from the search hit.
        text: stored passage (text items) or caption (image items).
        uri: image path.
        words: what a text-only model reads for an image.
        words_origin: ``caption``, ``metadata:<key>``, ``linear-map``, ``nearest-texts:<gap>``
            or ``none``.
        attach_image: the image itself is sent (vision generator).
    """

    id: str
    modality: str
    score: float
    cosine: float
    rank: int
    text: str | None = None
    uri: str | None = None
    words: str | None = None
    words_origin: str = ""
    attach_image: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hit(cls, h: Hit) -> "Source":
        return cls(id=h.id, modality=h.modality.value, score=float(h.score), cosine=float(h.cosine), rank=h.rank,
                   text=h.text, uri=h.uri, metadata=dict(h.metadata or {}))

    @property
    def how(self) -> str:
        """How the generator receives this source (for ``--explain``)."""
        if self.modality == "text":
            return "text"
        if self.attach_image:
            return "image attached"
        if self.words_origin == "none" or not self.words:
            return "as words: no description available"
        return f"as words: {_LABELS.get(self.words_origin.split(':')[0], self.words_origin)}"

    def prompt_text(self, question: str, template: "PromptTemplate") -> str:
        """The source's content in the prompt (snippet / cut per the template)."""
        if self.modality == "image":
            if self.attach_image:
                cap = _caption(self)[0]
                return f"(image attached; caption: {cap})" if cap else "(image attached)"
            if self.words_origin == "none" or not self.words:
                return f"[{NO_DESCRIPTION}]"
            label = _LABELS.get(self.words_origin.split(":")[0], "?")
            return f"[an image, not shown; described by {label}:] {self.words}"
        body = self.text or ""
        if template.snippet_sentences:
            body = snippet(body, question, template.snippet_sentences)
        if template.max_source_chars and len(body) > template.max_source_chars:
            body = body[: template.max_source_chars].rsplit(" ", 1)[0] + " …"
        return body

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "modality": self.modality, "score": round(self.score, 4), "cosine": round(self.cosine, 4),
             "rank": self.rank, "how": self.how}
        if self.modality == "image":
            d.update(uri=self.uri, words=self.words, words_origin=self.words_origin)
        else:
            d["text"] = self.text
        return d


def snippet(text: str, question: str, n: int) -> str:
    """The ``n`` sentences of ``text`` sharing most content words with ``question``, in text order.

    The first sentence (often the title/topic) wins ties.
    """
    sents = split_sentences(text)
    if len(sents) <= n:
        return " ".join(sents)
    q = set(content_words(question))
    scored = sorted(range(len(sents)), key=lambda i: (-len(q & set(content_words(sents[i]))), i))[:n]
    return " ".join(sents[i] for i in sorted(scored))


def _caption(s: Source) -> tuple[str | None, str]:
    if s.text and s.text.strip():
        return s.text.strip(), "caption"
    for key in _META_KEYS:
        v = s.metadata.get(key)
        if isinstance(v, list):
            v = "; ".join(str(x) for x in v if str(x).strip())
        if isinstance(v, str) and v.strip():
            return v.strip(), f"metadata:{key}"
    return None, "none"


class ImageDescriber:
    """Turns image sources into words (caption → linear map → placeholder), with a cache.

    Args:
        retriever: the :class:`~mindgap.retriever.Retriever` (for the linear map); optional.
        map_gap: the fitted corrector to use; ``"auto"`` = a fitted ``linear`` one if the store
            has it, ``"naive"`` = nearest texts by raw cosine (no map: across the gap these are
            weak), ``None`` = never.
        k: texts per mapped image.
        max_chars: cut each mapped text to this many characters.
    """

    def __init__(self, retriever: Any = None, *, map_gap: str | None = "auto", k: int = 3,
                 max_chars: int = 160) -> None:
        self.retriever = retriever
        self.k = int(k)
        self.max_chars = int(max_chars)
        self.notes: list[str] = []
        self.map_gap = self._find_map(map_gap)
        self._cache: dict[str, tuple[str | None, str]] = {}

    def _find_map(self, map_gap: str | None) -> str | None:
        if map_gap is None or self.retriever is None:
            return None
        try:
            fitted = self.retriever.store.manifest.gap if self.retriever.store.manifest else {}
        except Exception:  # noqa: BLE001 - no manifest, no map
            return None
        if map_gap != "auto":  # an explicit choice: a fitted corrector, or plain cosine ("naive")
            if map_gap in fitted or map_gap == "naive":
                return map_gap
            self.notes.append(f"image map {map_gap!r} is not a fitted corrector of this store (fitted: "
                              f"{', '.join(sorted(fitted)) or 'none'}); uncaptioned images get no description")
            return None
        names = sorted(n for n, e in fitted.items() if str(e.get("name", n)) == "linear" or n.split(":")[0] == "linear")
        return names[0] if names else None

    def describe(self, s: Source) -> Source:
        """Fill ``s.words`` / ``s.words_origin`` (image sources only)."""
        if s.modality != "image":
            return s
        if s.id not in self._cache:
            words, origin = _caption(s)
            if words is None and self.map_gap:
                gap = self.map_gap
                words = self._mapped(s.id)
                origin = ("linear-map" if gap.split(":")[0].startswith("linear") else f"nearest-texts:{gap}") \
                    if words else "none"
            self._cache[s.id] = (words, origin)
        s.words, s.words_origin = self._cache[s.id]
        if s.words is None:
            s.words_origin = "none"
        return s

    def _mapped(self, image_id: str) -> str | None:
        try:
            ids, vec = self.retriever.store.vectors(Modality.IMAGE, [image_id])
            if not ids:
                return None
            hits = self.retriever.search_vectors(vec, Modality.IMAGE, k=self.k, gap=self.map_gap,
                                                 modality=Modality.TEXT)[0]
        except (MindgapError, ValueError, KeyError) as exc:
            note = f"linear map {self.map_gap!r} unusable for image descriptions ({exc}); skipped"
            if note not in self.notes:
                self.notes.append(note)
                log.warning(note)
            self.map_gap = None
            return None
        texts = []
        for h in hits:
            first = (split_sentences(h.text or "") or [""])[0]
            first = re.sub(r"\s+", " ", first).strip()
            if len(first) > self.max_chars:
                first = first[: self.max_chars].rsplit(" ", 1)[0] + " …"
            if first:
                texts.append(f'"{first}"')
        return "; ".join(texts) or None


def hits_to_sources(hits: list[Hit], describer: ImageDescriber | None = None, *,
                    attach_images: bool = False) -> list[Source]:
    """Sources in rank order; images described (text models) or flagged for attaching."""
    describer = describer or ImageDescriber()
    out = []
    for h in hits:
        s = describer.describe(Source.from_hit(h))
        if s.modality == "image" and attach_images and s.uri:
            s.attach_image = True
        out.append(s)
    return out
