"""Multimodal RAG: gap-aware retrieval, images put into words (or attached), generation.

* :class:`RagPipeline` / :class:`RagAnswer` — retrieve, build the prompt within the
  generator's context window, generate, explain (:mod:`.pipeline`);
* generators behind the ``generators`` registry: ``local:smollm2`` (offline default),
  ``openai:<model>[@url]``, ``extractive`` (:mod:`.generators`);
* prompt templates ``paper`` (METHODS §1) and ``short`` (:mod:`.prompts`);
* ``eval-rag`` on the MMQA dev slice (:mod:`.evaluate`) and an OpenAI-compatible server
  for the local generator (:mod:`.openai_server`).
"""

from __future__ import annotations

from .context import ImageDescriber, Source
from .generators import DEFAULT_GENERATOR, Generation, Generator, GeneratorError, list_generators, load_generator
from .pipeline import RagAnswer, RagPipeline
from .prompts import BUILTIN_TEMPLATES, PromptTemplate, build_messages, load_template

__all__ = ["RagPipeline", "RagAnswer", "Source", "ImageDescriber", "Generation", "Generator", "GeneratorError",
           "DEFAULT_GENERATOR", "load_generator", "list_generators", "PromptTemplate", "load_template",
           "build_messages", "BUILTIN_TEMPLATES"]
