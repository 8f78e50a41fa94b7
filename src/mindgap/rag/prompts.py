"""Prompt templates and the context-window budget.

Built-in templates:

* ``paper`` (default) — METHODS §1 verbatim: system ``You are a helpful assistant.``, user
  ``Answer the following question referencing the following texts or images. Question:
  {question} Reference text 1: ... Reference image 2: ...``; the w/o-RAG baseline sends the
  question only.
* ``short`` — for very small models (SmolLM2-135M): context first, question last (next to
  the answer), each text cut to its ``snippet_sentences`` sentences that share most words
  with the question, at most ``max_sources`` sources, and an explicit "a few words" answer
  format. Same retrieved knowledge, much less to read.

A template file (``--template FILE``) is TOML or JSON with the fields of
:class:`PromptTemplate`, or plain text: the user message, with ``{question}`` and
``{references}`` placeholders and an optional first line ``system: ...``.

:func:`build_messages` never exceeds ``generator.context_window``: it keeps the longest
prefix of the ranked sources whose prompt plus ``max_tokens`` fits (so the *least* relevant
sources are dropped first) and reports what it dropped.
"""

from __future__ import annotations

import json
import string
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .generators.base import Generator, Message, count_message_tokens

if TYPE_CHECKING:
    from .context import Source

_REF_FIELDS = {"index", "content", "id", "score"}
_FIELDS = {"user": {"question", "references", "n"}, "no_rag_user": {"question"},
           "reference_text": _REF_FIELDS, "reference_image": _REF_FIELDS}


@dataclass
class PromptTemplate:
    """How a question and its sources become chat messages.

    Attributes:
        name: template name (reports).
        system: system message (``None`` = none).
        user: user message with ``{question}``, ``{references}`` (and optional ``{n}``).
        reference_text / reference_image: one source, with ``{index}``, ``{content}``
            (and optional ``{id}``, ``{score}``).
        separator: between references and around the references block.
        no_rag_user: the w/o-RAG user message (``{question}`` only).
        max_source_chars: cut each text source to this many characters (``None`` = whole).
        snippet_sentences: keep only the N sentences of each text that share most words with
            the question (``None`` = whole text).
        max_sources: use at most this many sources (``None`` = all retrieved).
        stop: stop sequences passed to the generator.
    """

    name: str = "paper"
    system: str | None = "You are a helpful assistant."
    user: str = ("Answer the following question referencing the following texts or images.\n"
                 "Question: {question}\n{references}")
    reference_text: str = "Reference text {index}: {content}"
    reference_image: str = "Reference image {index}: {content}"
    separator: str = "\n"
    no_rag_user: str = "Answer the following question.\nQuestion: {question}"
    max_source_chars: int | None = None
    snippet_sentences: int | None = None
    max_sources: int | None = None
    stop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        fmt = string.Formatter()
        for name, allowed in _FIELDS.items():
            text = getattr(self, name)
            if not isinstance(text, str):
                raise InputError(f"template field {name!r} must be a string", item=name)
            try:
                used = {f for _, f, _, _ in fmt.parse(text) if f is not None}
            except ValueError as exc:
                raise InputError(f"template field {name!r} is not a valid format string: {exc}", item=name) from None
            bad = {u for u in used if u.split(".")[0].split("[")[0] not in allowed}
            if bad:
                raise InputError(f"template field {name!r} uses unknown placeholder(s) {sorted(bad)}; "
                                 f"allowed: {sorted(allowed)}", item=name)
            if name in {"user", "no_rag_user"} and "question" not in used:
                raise InputError(f"template field {name!r} must contain {{question}}", item=name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PAPER = PromptTemplate()
SHORT = PromptTemplate(
    name="short",
    system="Answer the question using the context. Reply with a short answer of a few words only.",
    user="Context:\n{references}\n\nQuestion: {question}\nShort answer:",
    reference_text="[{index}] {content}",
    reference_image="[{index}] {content}",
    no_rag_user="Question: {question}\nShort answer:",
    snippet_sentences=2,
    max_source_chars=400,
    max_sources=5,
    stop=["\n\n", "Question:"],
)
BUILTIN_TEMPLATES = {"paper": PAPER, "short": SHORT}


def load_template(spec: str | Path | PromptTemplate | None) -> PromptTemplate:
    """A built-in name (``paper``, ``short``), a template file, or a template object."""
    if spec is None:
        return PAPER
    if isinstance(spec, PromptTemplate):
        return spec
    if str(spec) in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[str(spec)]
    p = Path(spec)
    if not p.is_file():
        raise InputError(f"template not found (give a file or one of: {', '.join(BUILTIN_TEMPLATES)})",
                         item=str(spec))
    raw = p.read_text(encoding="utf-8")
    known = {f.name for f in fields(PromptTemplate)}
    if p.suffix.lower() in {".toml", ".json"}:
        try:
            data = tomllib.loads(raw) if p.suffix.lower() == ".toml" else json.loads(raw)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"cannot parse template: {exc}", item=str(p)) from None
        if not isinstance(data, dict):
            raise InputError("template file must hold a table/object", item=str(p))
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown template field(s) {unknown}; known: {sorted(known)}", item=str(p))
        data.setdefault("name", p.stem)
        return PromptTemplate(**data)
    system = None
    lines = raw.splitlines()
    if lines and lines[0].lower().startswith("system:"):
        system, raw = lines[0].split(":", 1)[1].strip(), "\n".join(lines[1:]).lstrip("\n")
    if "{references}" not in raw:
        raw = raw.rstrip("\n") + "\n{references}"
    return PromptTemplate(name=p.stem, system=system, user=raw.rstrip("\n"))


def render_messages(question: str, sources: list["Source"], template: PromptTemplate, *,
                    images: bool = False, no_rag: bool = False) -> list[Message]:
    """Chat messages for ``question`` with ``sources`` (in the given order).

    With ``images=True`` sources flagged ``attach_image`` become image parts at their place
    in the user message; otherwise each source is its text or its words (see
    :mod:`mindgap.rag.context`). The user message carries a ``"context"`` key (question and
    source texts) for non-LM generators; chat backends ignore it.
    """
    msgs: list[Message] = []
    if template.system:
        msgs.append({"role": "system", "content": template.system})
    if no_rag:
        msgs.append({"role": "user", "content": template.no_rag_user.format(question=question),
                     "context": {"question": question, "passages": []}})
        return msgs
    parts: list[dict[str, Any]] = []
    passages: list[str] = []
    for i, s in enumerate(sources, 1):
        content = s.prompt_text(question, template)
        passages.append(content)
        fmt = template.reference_image if s.modality == "image" else template.reference_text
        line = fmt.format(index=i, content=content, id=s.id, score=f"{s.score:.3f}")
        if images and s.attach_image:
            parts.append({"type": "text", "text": line + " "})
            parts.append({"type": "image", "path": s.uri})
        else:
            parts.append({"type": "text", "text": line})
        parts.append({"type": "text", "text": template.separator})
    if parts:
        parts.pop()  # trailing separator
    marker = "\x00REFS\x00"
    head, _, tail = template.user.format(question=question, references=marker, n=len(sources)).partition(marker)
    if images and any(p["type"] == "image" for p in parts):
        content: Any = _merge_text([{"type": "text", "text": head}, *parts, {"type": "text", "text": tail}])
    else:
        content = head + "".join(p.get("text", "") for p in parts) + tail
    msgs.append({"role": "user", "content": content, "context": {"question": question, "passages": passages}})
    return msgs


def _merge_text(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + p["text"]}
        elif p["type"] != "text" or p["text"]:
            out.append(dict(p))
    return out


@dataclass
class BuiltPrompt:
    """Messages that fit the window, with what was kept and dropped.

    Attributes:
        dropped: sources left out because the window was full (least relevant first out).
        capped: sources beyond the template's ``max_sources`` (never rendered).
    """

    messages: list[Message]
    kept: list["Source"]
    dropped: list["Source"]
    prompt_tokens: int
    budget: int
    capped: list["Source"] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        return bool(self.dropped)


def build_messages(question: str, sources: list["Source"], template: PromptTemplate, generator: Generator, *,
                   max_tokens: int = 64, no_rag: bool = False, margin: int = 8) -> BuiltPrompt:
    """Render the prompt, dropping the least relevant sources until it fits the window.

    ``sources`` must be ranked best first. The budget is ``context_window − max_tokens −
    margin`` prompt tokens, counted with the generator's tokenizer (exact for local models,
    a conservative estimate otherwise).

    Raises:
        InputError: the question alone does not fit (naming ``context_window``).
    """
    if not str(question).strip():
        raise InputError("empty question", item="question")
    window = int(generator.context_window)
    budget = window - int(max_tokens) - int(margin)
    images = bool(getattr(generator, "supports_images", False))
    pool = [] if no_rag else list(sources)
    over_cap: list[Source] = []
    if template.max_sources is not None and len(pool) > template.max_sources:
        pool, over_cap = pool[: template.max_sources], pool[template.max_sources:]

    def attempt(n: int) -> tuple[list[Message], int]:
        msgs = render_messages(question, pool[:n], template, images=images, no_rag=no_rag)
        return msgs, count_message_tokens(generator, msgs)

    msgs, used = attempt(len(pool))
    n = len(pool)
    if used > budget:
        lo, hi = 0, len(pool) - 1  # largest n in [lo, hi] that fits; n=0 must fit
        msgs0, used0 = attempt(0)
        if used0 > budget:
            raise InputError(f"the question alone needs {used0} prompt tokens but the context window is {window} "
                             f"with {max_tokens} reserved for the answer", item="context_window")
        best = (0, msgs0, used0)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            m, u = attempt(mid)
            if u <= budget:
                lo, best = mid, (mid, m, u)
            else:
                hi = mid - 1
        n, msgs, used = best
    return BuiltPrompt(messages=msgs, kept=pool[:n], dropped=pool[n:], prompt_tokens=used, budget=budget,
                       capped=over_cap)
