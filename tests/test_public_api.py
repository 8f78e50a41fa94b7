"""The public API: top-level exports, Retriever as a context manager, py.typed, one encoder-spec rule."""

from __future__ import annotations

from pathlib import Path

import pytest

import mindgap
from mindgap.errors import EncoderMismatch
from mindgap.manifest import Manifest
from mindgap.retriever import resolve_encoder_spec


def test_exports():
    for name in ("open_store", "list_stores", "make_corrector", "load_generator", "load_encoder", "Retriever"):
        assert name in mindgap.__all__ and callable(getattr(mindgap, name)), name
    assert mindgap.open_store("exact:").count() == 0
    assert "lancedb" in mindgap.list_stores()
    assert mindgap.make_corrector("zscore").name == "zscore"
    assert mindgap.load_generator("extractive") is not None


def test_py_typed_ships():
    assert (Path(mindgap.__file__).parent / "py.typed").is_file()
    assert '"py.typed"' in (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()


def test_retriever_context_manager_closes(offline_encoder):
    closed = []
    with mindgap.Retriever("exact:", encoder=offline_encoder) as r:
        r.store.close = lambda: closed.append(True)
        assert r.search is not None
    assert closed == [True]


def test_one_encoder_spec_rule():
    from mindgap.encoders import DEFAULT_OFFLINE_SPEC

    m = Manifest(encoder_spec="hf:a", dim=8)
    assert resolve_encoder_spec(None) == DEFAULT_OFFLINE_SPEC
    assert resolve_encoder_spec(None, "onnx:/x") == "onnx:/x"
    assert resolve_encoder_spec(m) == resolve_encoder_spec(m, "hf:a") == "hf:a"
    with pytest.raises(EncoderMismatch):
        resolve_encoder_spec(m, "hf:b")
