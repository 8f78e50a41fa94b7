"""Retrieve → build the prompt within the window → generate: :class:`RagPipeline`.

Example:
    >>> from mindgap import Retriever
    >>> from mindgap.rag import RagPipeline
    >>> rag = RagPipeline(Retriever("exact:/tmp/kb"), "local:smollm2", template="short")  # doctest: +SKIP
    >>> ans = rag.ask("Who sang My Heart Will Go On?", gap="zscore", k=10)              # doctest: +SKIP
    >>> print(ans.answer, [s.id for s in ans.sources])                                  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..types import Hit
from .context import ImageDescriber, Source, hits_to_sources
from .generators import DEFAULT_GENERATOR, Generation, Generator, load_generator
from .generators.base import content_text
from .generators.streaming import generate_streaming
from .prompts import PromptTemplate, build_messages, load_template


@dataclass
class RagAnswer:
    """The answer with everything needed to explain it.

    Attributes:
        question / answer: the question and the generated text.
        sources: sources in the prompt, numbered 1.. in this order.
        dropped: retrieved sources left out because the context window was full.
        capped: retrieved sources beyond the template's ``max_sources``.
        generation: the generator's raw result (tokens, seconds, ...).
        messages: the prompt sent (image parts by path).
        prompt_tokens / budget / context_window: the window accounting.
        notes: anything the user should know (dropped sources, missing image words, ...).
    """

    question: str
    answer: str
    sources: list[Source]
    dropped: list[Source]
    generation: Generation
    messages: list[dict[str, Any]]
    prompt_tokens: int
    budget: int
    context_window: int
    gap: str | None
    k: int
    template: str
    generator: str
    no_rag: bool = False
    retrieval_seconds: float = 0.0
    capped: list[Source] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """Whether sources were dropped to fit the context window."""
        return bool(self.dropped)

    def to_dict(self, *, with_prompt: bool = False) -> dict[str, Any]:
        d = {"question": self.question, "answer": self.answer, "generator": self.generator,
             "template": self.template, "gap": None if self.no_rag else self.gap, "k": self.k, "no_rag": self.no_rag,
             "sources": [dict(s.to_dict(), index=i) for i, s in enumerate(self.sources, 1)],
             "dropped": [s.to_dict() for s in self.dropped], "truncated": self.truncated,
             "capped": [s.to_dict() for s in self.capped],
             "prompt_tokens": self.prompt_tokens, "budget": self.budget, "context_window": self.context_window,
             "retrieval_seconds": round(self.retrieval_seconds, 4), "generation": self.generation.to_dict(),
             "notes": list(self.notes)}
        if with_prompt:
            d["messages"] = [{"role": m["role"], "content": m["content"]} for m in self.messages]
        return d

    def explain(self) -> str:
        """A human-readable account: retrieval, how each source reached the model, the window."""
        g = self.generation
        mode = "mode: w/o RAG (question only)" if self.no_rag else f"gap: {self.gap or 'store default'}  k: {self.k}"
        lines = [f"generator: {self.generator}  template: {self.template}  {mode}"]
        if not self.no_rag:
            lines.append(f"retrieved {len(self.sources) + len(self.dropped) + len(self.capped)} in "
                         f"{self.retrieval_seconds * 1000:.0f} ms; {len(self.sources)} in the prompt")
            for i, s in enumerate(self.sources, 1):
                lines.append(f"  [{i}] {s.id} ({s.modality}, score {s.score:.3f}, cos {s.cosine:.3f}) — {s.how}")
            for s in self.dropped:
                lines.append(f"  [dropped] {s.id} ({s.modality}, rank {s.rank}) — context window full")
            for s in self.capped:
                lines.append(f"  [not used] {s.id} ({s.modality}, rank {s.rank}) — over the template's max_sources")
        lines.append(f"prompt: {self.prompt_tokens} tokens of a {self.budget}-token budget "
                     f"(window {self.context_window} − answer reserve − margin)")
        lines.append(f"generation: {g.tokens} tokens in {g.seconds:.2f} s ({g.tokens_per_s:.1f} tok/s), "
                     f"finish: {g.finish_reason}" + (f", retries: {g.retries}" if g.retries else ""))
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)

    def prompt_text(self) -> str:
        """The prompt as plain text (image parts shown as ``<image: path>``)."""
        out = []
        for m in self.messages:
            c = m["content"]
            if not isinstance(c, str):
                c = "".join(p.get("text", "") if p.get("type") == "text" else f"<image: {p.get('path')}>" for p in c)
            out.append(f"--- {m['role']} ---\n{c}")
        return "\n".join(out)


class RagPipeline:
    """Gap-aware retrieval + generation.

    Args:
        retriever: a :class:`~mindgap.retriever.Retriever` (``None`` only for ``no_rag`` or
            answers over given hits).
        generator: a generator or spec (default ``local:smollm2``).
        template: ``paper`` (default), ``short``, a template file or object.
        k: sources to retrieve.
        gap: gap corrector (default: the store's default).
        max_tokens: answer length cap.
        temperature: 0 = greedy/deterministic.
        image_map: corrector used to describe uncaptioned images (``auto`` = a fitted
            ``linear`` one; ``None`` = never).
    """

    def __init__(self, retriever: Any = None, generator: Generator | str = DEFAULT_GENERATOR, *,
                 template: str | Path | PromptTemplate | None = "paper", k: int = 10, gap: str | None = None,
                 max_tokens: int = 64, temperature: float = 0.0, image_map: str | None = "auto") -> None:
        self.retriever = retriever
        self.generator: Generator = load_generator(generator) if isinstance(generator, str) else generator
        self.template = load_template(template)
        if int(k) < 1:
            raise InputError("k must be >= 1", item="k")
        self.k = int(k)
        self.gap = gap
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.describer = ImageDescriber(retriever, map_gap=image_map)

    def retrieve(self, question: str, *, k: int | None = None, gap: str | None = None) -> tuple[list[Hit], float]:
        """Search the store; returns ``(hits, seconds)``."""
        if self.retriever is None:
            raise InputError("this pipeline has no retriever (give a store)", item="store")
        self.retriever.encoder  # load the encoder outside the timing  # noqa: B018
        t0 = time.perf_counter()
        hits = self.retriever.search(question, k=k or self.k, gap=gap or self.gap)
        return hits, time.perf_counter() - t0

    def ask(self, question: str, *, k: int | None = None, gap: str | None = None, no_rag: bool = False,
            hits: list[Hit] | None = None, on_delta: Callable[[str], Any] | None = None) -> RagAnswer:
        """Answer ``question`` (retrieving unless ``no_rag`` or ``hits`` are given).

        With ``on_delta``, the answer is streamed: ``on_delta(text)`` gets each new piece
        (real tokens for ``local:`` models on transformers, word chunks otherwise; see
        :mod:`.generators.streaming`); the pieces join to ``answer``.
        """
        if not isinstance(question, str) or not question.strip():
            raise InputError("empty question", item="question")
        k = int(k or self.k)
        gap = gap or self.gap
        secs = 0.0
        if no_rag:
            hits = []
        elif hits is None:
            hits, secs = self.retrieve(question, k=k, gap=gap)
        attach = bool(getattr(self.generator, "supports_images", False))
        sources = hits_to_sources(list(hits)[:k], self.describer, attach_images=attach)
        built = build_messages(question, sources, self.template, self.generator, max_tokens=self.max_tokens,
                               no_rag=no_rag)
        if on_delta is None:
            gen = self.generator.generate(built.messages, max_tokens=self.max_tokens, temperature=self.temperature,
                                          stop=list(self.template.stop) or None)
        else:
            gen = generate_streaming(self.generator, built.messages, on_delta=on_delta, max_tokens=self.max_tokens,
                                     temperature=self.temperature, stop=list(self.template.stop) or None)
        notes = list(self.describer.notes)
        if built.dropped:
            notes.append(f"{len(built.dropped)} least relevant source(s) dropped to fit the "
                         f"{self.generator.context_window}-token context window: "
                         + ", ".join(s.id for s in built.dropped))
        if built.capped:
            notes.append(f"template {self.template.name!r} uses at most {self.template.max_sources} sources; "
                         f"{len(built.capped)} more were retrieved but not used")
        imgs = [s for s in built.kept if s.modality == "image"]
        if imgs and not attach:
            by = {}
            for s in imgs:
                by[s.how] = by.get(s.how, 0) + 1
            notes.append(f"{len(imgs)} image(s) given to the text-only generator as words ("
                         + "; ".join(f"{n} {how.removeprefix('as words: ')}" for how, n in by.items()) + ")")
        if not gen.text:
            notes.append("the generator returned an empty answer")
        return RagAnswer(question=question, answer=gen.text, sources=built.kept, dropped=built.dropped, generation=gen,
                         messages=built.messages, prompt_tokens=built.prompt_tokens, budget=built.budget,
                         context_window=int(self.generator.context_window), gap=gap, k=k, template=self.template.name,
                         generator=getattr(self.generator, "name", type(self.generator).__name__), no_rag=no_rag,
                         retrieval_seconds=secs, capped=built.capped, notes=notes)


def user_prompt(answer: RagAnswer) -> str:
    """The user message text of an answer's prompt (reports)."""
    users = [m for m in answer.messages if m["role"] == "user"]
    return content_text(users[-1]["content"]) if users else ""
