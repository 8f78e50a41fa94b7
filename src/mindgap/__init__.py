"""mindgap: multimodal retrieval and RAG on CLIP-family encoders that minds the modality gap."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import MindgapError  # noqa: E402
from .types import Hit, Item, Modality  # noqa: E402


#: public name → the module that defines it (imported on first use: ``import mindgap`` stays light)
_LAZY = {
    "load_encoder": "encoders", "list_encoders": "encoders",
    "open_store": "stores", "list_stores": "stores",
    "make_corrector": "gap", "list_gap_correctors": "gap",
    "load_generator": "rag.generators",
    "Retriever": "retriever",
}


def __getattr__(name: str):  # noqa: ANN202 - lazy heavy exports
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)


__all__ = ["Hit", "Item", "MindgapError", "Modality", "Retriever", "list_encoders", "list_gap_correctors",
           "list_stores", "load_encoder", "load_generator", "make_corrector", "open_store", "__version__"]
