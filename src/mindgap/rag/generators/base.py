"""The Generator seam: one small Protocol every answer generator implements.

Messages are OpenAI-style chat messages: ``{"role": "system"|"user"|"assistant",
"content": str | list[part]}`` where a part is ``{"type": "text", "text": ...}`` or
``{"type": "image", "path": ..., "mime": ...}`` (mindgap's own image part: a local file,
turned into a base64 data URL by :mod:`.openai_compat`). Text-only generators never get
image parts from the RAG pipeline (it puts images into words first); if a caller passes
them anyway, :func:`flatten_content` writes a visible placeholder instead of dropping them
silently.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from ...errors import MindgapError

Message = dict[str, Any]

#: Rough token cost of one attached image (OpenAI charges 85–765+ depending on size/detail).
IMAGE_TOKEN_ESTIMATE = 765
#: Per-message overhead of a chat template (role markers, separators).
MESSAGE_OVERHEAD = 6


class GeneratorError(MindgapError):
    """A generator backend failed (server error, timeout, bad response)."""

    code = "generator_error"
    http_status = 502


@dataclass
class Generation:
    """One generated answer.

    Attributes:
        text: the answer text (stop sequences removed, stripped).
        tokens: completion tokens generated.
        seconds: wall-clock time of the call (including retries, for remote ones).
        prompt_tokens: prompt tokens (exact where the backend reports them).
        model: backend model name.
        finish_reason: ``stop``, ``length`` or the backend's reason.
        retries: requests repeated after a retryable failure (remote backends).
        extra: anything backend-specific (e.g. the extractive span's source).
    """

    text: str
    tokens: int
    seconds: float
    prompt_tokens: int = 0
    model: str = ""
    finish_reason: str = "stop"
    retries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second (0 when nothing was generated)."""
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        return d


@runtime_checkable
class Generator(Protocol):
    """What the RAG pipeline needs from a language model (or a non-LM baseline).

    Attributes:
        name: the spec that built it (``local:smollm2``, ``openai:gpt-4o-mini``, ...).
        context_window: tokens the model accepts (prompt + completion).
        supports_images: whether image parts may be sent (else images go in as words).
    """

    name: str
    context_window: int
    supports_images: bool

    def count_tokens(self, text: str) -> int: ...

    def generate(self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Generation: ...


def content_text(content: Any) -> str:
    """The text of a message content (string or list of parts), image parts skipped."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def count_images(messages: list[Message]) -> int:
    """Number of image parts in the messages."""
    return sum(1 for m in messages if not isinstance(m.get("content"), str)
               for p in m.get("content") or [] if p.get("type") in {"image", "image_url"})


def flatten_content(content: Any) -> str:
    """Content → plain text; an image part becomes ``[image: <path>]`` (never silently lost)."""
    if isinstance(content, str):
        return content
    out = []
    for p in content or []:
        if p.get("type") == "text":
            out.append(p.get("text", ""))
        elif p.get("type") in {"image", "image_url"}:
            out.append(f"[image: {p.get('path') or 'attached'} (this model cannot see images)]")
    return "".join(out)


def count_message_tokens(gen: Generator, messages: list[Message]) -> int:
    """Prompt tokens of ``messages`` for ``gen``: its exact count when it offers one.

    Generators may define ``count_message_tokens(messages)`` (the local one renders its chat
    template); otherwise the sum of ``count_tokens`` over texts plus a per-message overhead
    and :data:`IMAGE_TOKEN_ESTIMATE` per image.
    """
    exact = getattr(gen, "count_message_tokens", None)
    if callable(exact):
        return int(exact(messages))
    n = sum(gen.count_tokens(content_text(m.get("content"))) + MESSAGE_OVERHEAD for m in messages)
    return n + IMAGE_TOKEN_ESTIMATE * count_images(messages) + 3


_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def approx_tokens(text: str) -> int:
    """A conservative token estimate for BPE models when no tokenizer is at hand.

    max(words-and-punctuation × 1.3, characters / 3.5), rounded up: over-estimating is the
    safe side (a prompt may be cut shorter than needed, never sent too long).
    """
    if not text:
        return 0
    return int(math.ceil(max(len(_WORDISH.findall(text)) * 1.3, len(text) / 3.5)))


def apply_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Cut ``text`` at the first stop sequence; returns ``(text, stopped)``."""
    cut = len(text)
    for s in stop or []:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut], cut < len(text)


def check_generate_args(max_tokens: int, temperature: float) -> None:
    """Validate the common arguments with errors that name the field."""
    from ...errors import InputError

    if int(max_tokens) < 1:
        raise InputError("max_tokens must be >= 1", item="max_tokens")
    if not (0.0 <= float(temperature) <= 2.0):
        raise InputError("temperature must be in [0, 2]", item="temperature")
