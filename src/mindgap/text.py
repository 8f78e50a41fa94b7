"""Text utilities shared by encoders and ingest: decoding, sentence splitting, long texts.

CLIP's text tower sees at most 77 tokens. METHODS §1 handles long passages by splitting
them into sentences, embedding each and averaging (then renormalising);
:func:`embed_long_texts` is that reusable function. The ablation ("first 77 tokens") is
``mode="truncate"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .errors import InputError

_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "co", "no", "u.s", "e.g", "i.e", "fig", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"}
_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def decode_text(data: bytes, name: str = "<bytes>") -> str:
    """Decode UTF-8 (with or without BOM); anything else is a clear error naming ``name``."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "convert the file to UTF-8",
            item=name,
        ) from None


def unicode_problem(value: Any, field: str) -> str | None:
    """Where ``value`` holds text that is not valid Unicode, as ``"<field>: <why>"``; ``None`` if clean.

    A lone UTF-16 surrogate (the JSON escape ``"\\ud800"``, or a file name decoded with
    ``surrogateescape``) is a ``str`` Python accepts but UTF-8 cannot encode: stored, it
    breaks every later read. Strings, dict keys and values and list entries are checked,
    nested; the field path names the first bad one (``metadata.title``, ``texts[2]``).

    Example:
        >>> unicode_problem({"title": "ok", "note": "bad \\ud800"}, "metadata")
        'metadata.note: not valid Unicode (lone surrogate U+D800 at character 5)'
        >>> unicode_problem(["fine"], "texts") is None
        True
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"{field}: not valid Unicode (lone surrogate U+{ord(value[exc.start]):04X} at character {exc.start + 1})"
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            name = f"{field}.{k}" if isinstance(k, str) and unicode_problem(k, "") is None else f"{field} key"
            found = unicode_problem(k, name) or unicode_problem(v, name)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = unicode_problem(v, f"{field}[{i}]")
            if found:
                return found
    return None


def check_unicode(value: Any, field: str) -> None:
    """Raise :class:`InputError` naming the field when ``value`` holds invalid Unicode (see :func:`unicode_problem`)."""
    found = unicode_problem(value, field)
    if found:
        where, _, why = found.partition(": ")
        raise InputError(why + "; send UTF-8 text (JSON escapes \\ud800-\\udfff must come in valid pairs)",
                         item=where)


def printable(text: str) -> str:
    """``text`` safe to print or store as UTF-8: lone surrogates become ``\\udXXX`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences (rule-based, abbreviation-aware, no downloads).

    Example:
        >>> split_sentences("Dr. Smith went home. He slept! Did he? Yes.")
        ['Dr. Smith went home.', 'He slept!', 'Did he?', 'Yes.']
    """
    text = re.sub(r"\s+", " ", text or "").strip()
    if not text:
        return []
    parts: list[str] = []
    start = 0
    for m in _SPLIT.finditer(text):
        candidate = text[start : m.start()].strip()
        last = candidate.rsplit(" ", 1)[-1].rstrip(".!?\"')]").lower()
        if last in _ABBREV or (len(last) == 1 and last.isalpha()):
            continue  # "Dr." or an initial "J." is not a sentence end
        if candidate:
            parts.append(candidate)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return parts


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Check a list of texts: a list of str, non-empty; bytes decoded as UTF-8."""
    if isinstance(texts, (str, bytes)):
        raise InputError("expected a list of texts, got a single string", item="texts")
    out: list[str] = []
    for i, t in enumerate(texts):
        if isinstance(t, (bytes, bytearray)):
            t = decode_text(bytes(t), name=f"texts[{i}]")
        if not isinstance(t, str):
            raise InputError(f"expected str, got {type(t).__name__}", item=f"texts[{i}]")
        check_unicode(t, f"texts[{i}]")
        out.append(t)
    return out


def embed_long_texts(
    texts: Sequence[str],
    encode: Callable[[list[str]], np.ndarray],
    *,
    mode: str = "sentences",
) -> np.ndarray:
    """Embed passages longer than the text tower's window.

    Args:
        texts: passages.
        encode: a batch text encoder returning L2-normalised rows (e.g.
            ``encoder.encode_text``); it truncates each input to its window.
        mode: ``"sentences"`` — split each passage into sentences, embed all sentences in
            one batch, average per passage, renormalise (METHODS §1);
            ``"truncate"`` — embed the passage as is (the tower keeps the first tokens).

    Returns:
        float32 ``(len(texts), d)`` L2-normalised.
    """
    texts = validate_texts(texts)
    if mode == "truncate":
        return encode(list(texts))
    if mode != "sentences":
        raise InputError(f"unknown long-text mode {mode!r}; use 'sentences' or 'truncate'", item="mode")
    sents: list[str] = []
    owner: list[int] = []
    for i, t in enumerate(texts):
        ss = split_sentences(t) or [t]
        sents.extend(ss)
        owner.extend([i] * len(ss))
    emb = encode(sents)
    out = np.zeros((len(texts), emb.shape[1]), dtype=np.float64)
    np.add.at(out, np.asarray(owner), emb.astype(np.float64))
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray((out / norms).astype(np.float32))
