"""``extractive``: the no-language-model baseline — answer with the best-matching span.

Every retrieved text (and every image's words: caption, metadata or mapped captions) is
split into sentences; each sentence is scored against the question by IDF-weighted overlap
of content words (stop words dropped, IDF over the candidate sentences, so rare question
words such as names count most). With ``mode="hybrid"`` or ``"embedding"`` and an
``encoder``, the cosine between question and sentence embeddings is added / used instead.
The answer is the best sentence, clipped to the ``max_words`` window that holds most of the
matched words. Ties go to the better-ranked source, then the earlier sentence.

The RAG pipeline hands the structured context over in the user message's ``"context"`` key
(``{"question": ..., "passages": [...]}``), which chat backends ignore; without it the
question is read from the ``Question:`` line of the prompt and the rest is the context.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from typing import Any

from ...errors import InputError
from ...registry import generators
from ...text import split_sentences
from .base import Generation, Message, approx_tokens, check_generate_args, content_text

STOPWORDS = frozenset("""a an and are as at be been being but by can could did do does for from had has have he her
his how i if in into is it its of on or she so than that the their them then there these they this to was
were what when where which who whom whose why will with would you your which's what's who's name named called
following question answer reference text texts image images referencing context short few words""".split())
_TOKEN = re.compile(r"[a-z0-9]+")


def content_words(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens minus stop words."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def extract_span(question: str, passages: list[str], *, max_words: int = 40,
                 encoder: Any = None, mode: str = "lexical") -> tuple[str, int, float]:
    """Best-matching sentence span for ``question`` among ``passages`` (best-ranked first).

    Returns:
        ``(span, passage_index, score)``; ``("", -1, 0.0)`` when nothing matches at all.
    """
    if mode not in {"lexical", "embedding", "hybrid"}:
        raise InputError(f"unknown extractive mode {mode!r}; expected lexical, embedding or hybrid", item="mode")
    if mode != "lexical" and encoder is None:
        raise InputError(f"extractive mode {mode!r} needs an encoder", item="encoder")
    cands: list[tuple[int, int, str]] = []
    for pi, p in enumerate(passages):
        for si, s in enumerate(split_sentences(p or "")):
            cands.append((pi, si, s))
    if not cands:
        return "", -1, 0.0
    q = set(content_words(question))
    toks = [set(content_words(s)) for _, _, s in cands]
    df = Counter(t for ts in toks for t in ts if t in q)
    n = len(cands)
    lex = [sum(math.log(1.0 + n / df[t]) for t in ts & q) for ts in toks]
    score = lex
    if mode != "lexical":
        qv = encoder.encode_text([question], show_progress=False)
        sv = encoder.encode_text([s for _, _, s in cands], show_progress=False)
        cos = (sv @ qv[0]).astype(float)
        top = max(lex) or 1.0
        score = list(cos) if mode == "embedding" else [lx / top + float(c) for lx, c in zip(lex, cos)]
    best = max(range(n), key=lambda i: (score[i], -cands[i][0], -cands[i][1]))
    if mode == "lexical" and lex[best] <= 0:
        return "", -1, 0.0
    return _clip(cands[best][2], q, max_words), cands[best][0], float(score[best])


def _clip(sentence: str, q: set[str], max_words: int) -> str:
    words = sentence.split()
    if len(words) <= max_words:
        return sentence
    hits = [1 if set(content_words(w)) & q else 0 for w in words]
    best_i = max(range(len(words) - max_words + 1), key=lambda i: (sum(hits[i : i + max_words]), -i))
    return " ".join(words[best_i : best_i + max_words])


_Q = re.compile(r"Question:\s*(.+?)(?=\n|\s+Reference\b|\s+Context\b|$)", re.S)
_REF = re.compile(r"^(?:Reference (?:text|image) \d+:|\[\d+\])\s*")


class ExtractiveGenerator:
    """No-LM baseline with the :class:`~.base.Generator` interface.

    Args:
        max_words: longest span returned.
        mode: ``lexical`` (default), ``embedding`` or ``hybrid`` (needs ``encoder``).
        encoder: an encoder (or spec) for the embedding modes.
        context_window: nominal window for the prompt builder (default 1,000,000: no limit).
    """

    name = "extractive"
    supports_images = False

    def __init__(self, *, max_words: int = 40, mode: str = "lexical", encoder: Any = None,
                 context_window: int = 1_000_000) -> None:
        if int(max_words) < 1:
            raise InputError("max_words must be >= 1", item="max_words")
        if isinstance(encoder, str):
            from ...encoders import load_encoder

            encoder = load_encoder(encoder)
        self.max_words = int(max_words)
        self.mode = mode
        self.encoder = encoder
        self.context_window = int(context_window)

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def generate(self, messages: list[Message], *, max_tokens: int = 64, temperature: float = 0.0,
                 stop: list[str] | None = None) -> Generation:
        """Return the best span from the context (``max_tokens``/``temperature``/``stop`` unused)."""
        check_generate_args(max_tokens, temperature)
        t0 = time.perf_counter()
        question, passages = self._read(messages)
        span, idx, score = extract_span(question, passages, max_words=self.max_words, encoder=self.encoder,
                                        mode=self.mode)
        return Generation(text=span, tokens=approx_tokens(span), seconds=time.perf_counter() - t0, model=self.name,
                          extra={"source_index": idx, "score": round(score, 4), "mode": self.mode})

    @staticmethod
    def _read(messages: list[Message]) -> tuple[str, list[str]]:
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise InputError("no user message to answer", item="messages")
        ctx = users[-1].get("context")
        if isinstance(ctx, dict) and ctx.get("question"):
            return str(ctx["question"]), [str(p) for p in ctx.get("passages") or []]
        text = content_text(users[-1].get("content"))
        m = _Q.search(text)
        question = m.group(1).strip() if m else text
        rest = (text[: m.start()] + " " + text[m.end():]) if m else ""
        parts = re.split(r"\n+|(?=Reference (?:text|image) \d+:)", rest)
        passages = [_REF.sub("", ln.strip()) for ln in parts]
        passages = [p for p in passages if content_words(p)]  # instructions / headers are no context
        return question, passages


@generators.register("extractive", help="no LM: best-matching sentence span from the retrieved texts")
def _make(rest: str = "", **options: Any) -> ExtractiveGenerator:
    if rest:
        options.setdefault("mode", rest)
    return ExtractiveGenerator(**options)
