"""mindgap: multimodal retrieval and RAG on CLIP-family encoders that minds the modality gap."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import MindgapError  # noqa: E402
from .types import Hit, Item, Modality  # noqa: E402


def __getattr__(name: str):  # noqa: ANN202 - lazy heavy exports
    if name in {"load_encoder", "list_encoders"}:
        from . import encoders

        return getattr(encoders, name)
    if name == "Retriever":
        from .retriever import Retriever

        return Retriever
    raise AttributeError(name)


__all__ = ["Hit", "Item", "MindgapError", "Modality", "Retriever", "load_encoder", "list_encoders", "__version__"]
