"""Answer generators behind the ``generators`` registry.

Specs:

* ``local:smollm2`` (default, offline) / ``local:/path/model.gguf`` — a GGUF chat model
  in-process (:mod:`.local_gguf`);
* ``openai:<model>[@base_url]`` — any OpenAI-compatible chat server (:mod:`.openai_compat`);
* ``extractive`` (``extractive:hybrid``) — no LM: the best-matching sentence span
  (:mod:`.extractive`).

Backends register lazily: listing them imports neither torch nor httpx.
"""

from __future__ import annotations

from typing import Any

from ...registry import generators
from .base import Generation, Generator, GeneratorError, Message, count_message_tokens

generators.register_lazy("local", "mindgap.rag.generators.local_gguf:_make",
                         "local GGUF chat model, offline: local:smollm2 (default) or local:/path.gguf")
generators.register_lazy("openai", "mindgap.rag.generators.openai_compat:_make",
                         "OpenAI-compatible chat server: openai:<model>[@base_url]")
generators.register_lazy("extractive", "mindgap.rag.generators.extractive:_make",
                         "no LM: best-matching sentence span from the retrieved texts")

DEFAULT_GENERATOR = "local:smollm2"


def load_generator(spec: str = DEFAULT_GENERATOR, **options: Any) -> Generator:
    """Build a generator from a spec (``local:smollm2``, ``openai:gpt-4o-mini@http://...``, ``extractive``).

    Example:
        >>> g = load_generator("extractive")
        >>> g.generate([{"role": "user", "content": "Question: Who wrote it? Reference text 1: Ann wrote it."}]).text
        'Ann wrote it.'
    """
    return generators.create(spec, **options)


def list_generators() -> dict[str, str]:
    """Available generator schemes and what they are."""
    return generators.describe()


__all__ = ["Generation", "Generator", "GeneratorError", "Message", "DEFAULT_GENERATOR", "load_generator",
           "list_generators", "count_message_tokens"]
