"""Streaming answers: text deltas while a generator works, the same text as ``generate``.

:func:`generate_streaming` calls ``on_delta(text)`` with pieces of the answer and returns the
final :class:`~.base.Generation`. Two ways, chosen per generator:

* **real token streaming** when the generator has a ``stream(messages, *, max_tokens,
  temperature, stop, on_text)`` method (``local:`` on the transformers backend: a
  ``TextIteratorStreamer`` fed by ``model.generate`` in a thread, so the first words arrive
  after the first decoding step);
* **chunked** otherwise (``extractive``, ``openai:``, ``local:`` on llama.cpp): the answer is
  generated whole, then sent as word-sized deltas.

Either way the deltas are cleaned like ``generate``'s text (leading/trailing whitespace
stripped, cut at the first stop sequence — a piece that might begin a stop sequence is held
back until it is decided), so the concatenated deltas equal ``Generation.text``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from .base import Generation, Generator, Message

log = logging.getLogger(__name__)

_WORD_CHUNK = re.compile(r"\s*\S+")


class DeltaCleaner:
    """Turns raw decoded pieces into deltas whose concatenation is the stripped, stop-cut text."""

    def __init__(self, emit: Callable[[str], Any], stop: list[str] | None = None) -> None:
        self.emit = emit
        self.stop = [s for s in stop or [] if s]
        self.raw = ""  # everything received
        self.sent = 0  # characters of the cleaned text emitted so far
        self.emitted = ""
        self.stopped = False
        self.pieces = 0

    def _clean(self, final: bool) -> str:
        text = self.raw.lstrip()
        cut = len(text)
        for s in self.stop:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
        if cut < len(text):
            self.stopped = True
            return text[:cut].rstrip()
        if final:
            return text.rstrip()
        hold = 0  # a tail that could be the start of a stop sequence waits for more text
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    hold = max(hold, n)
                    break
        safe = text[: len(text) - hold]
        return safe.rstrip()  # trailing whitespace waits: it is dropped if the answer ends there

    def feed(self, piece: str) -> None:
        if self.stopped or not piece:
            return
        self.raw += piece
        self._flush(self._clean(final=False))

    def close(self) -> str:
        if not self.stopped:
            self._flush(self._clean(final=True))
        return self.raw

    def _flush(self, clean: str) -> None:
        if len(clean) > self.sent:
            delta, self.sent = clean[self.sent:], len(clean)
            self.emitted += delta
            self.pieces += 1
            self.emit(delta)


def chunk_text(text: str) -> list[str]:
    """Word-sized pieces of ``text`` (each with its leading whitespace); they join back to ``text``."""
    parts = _WORD_CHUNK.findall(text)
    rest = text[len("".join(parts)):]
    if rest:
        parts.append(rest)
    return parts


def generate_streaming(gen: Generator, messages: list[Message], *, on_delta: Callable[[str], Any],
                       max_tokens: int = 64, temperature: float = 0.0, stop: list[str] | None = None) -> Generation:
    """Generate with ``gen``, calling ``on_delta`` with each new piece of the answer.

    Returns the :class:`~.base.Generation`; ``extra["streamed"]`` is ``"tokens"`` (real token
    streaming) or ``"chunked"`` (generated whole, sent in pieces).
    """
    cleaner = DeltaCleaner(on_delta, stop)
    stream = getattr(gen, "stream", None)
    if callable(stream):
        result = stream(messages, max_tokens=max_tokens, temperature=temperature, stop=stop, on_text=cleaner.feed)
        mode = str(result.extra.get("streamed", "tokens"))
    else:
        result = gen.generate(messages, max_tokens=max_tokens, temperature=temperature, stop=stop)
        for piece in chunk_text(result.text):
            cleaner.feed(piece)
        mode = "chunked"
    cleaner.close()
    if result.text != cleaner.emitted:
        if result.text.startswith(cleaner.emitted):
            on_delta(result.text[len(cleaner.emitted):])  # the streamer's text fell short of the final decode
        else:
            log.warning("streamed text differs from the final answer (%d vs %d chars)", len(cleaner.emitted),
                        len(result.text))
    result.extra["streamed"] = mode
    return result
