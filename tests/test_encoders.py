"""The Encoder contract, checked on every backend available here, plus hf / open_clip loading."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from _tiny_clip import bundled_dir, bundled_onnx_dir, tiny_clip_dir, tiny_onnx_dir

from mindgap.encoders import BaseEncoder, Encoder, load_encoder
from mindgap.errors import InputError, MissingDependency, ModelLoadError, SpecError

HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None
NEEDS_BUNDLED = pytest.mark.skipif(bundled_dir() is None, reason="bundled mindgap:flickr8k-small not trained yet")

BACKENDS = [
    pytest.param("mindgap", id="mindgap", marks=NEEDS_BUNDLED),
    pytest.param("hf-mindgap-dir", id="hf-mindgap-dir", marks=NEEDS_BUNDLED),
    pytest.param("onnx-mindgap-int8", id="onnx-mindgap-int8", marks=NEEDS_BUNDLED),
    pytest.param("hf-clip", id="hf-clip"),
    pytest.param("onnx-fp32", id="onnx-fp32"),
    pytest.param("onnx-int8", id="onnx-int8"),
    pytest.param("open_clip", id="open_clip",
                 marks=pytest.mark.skipif(not HAS_OPEN_CLIP, reason="open_clip_torch not installed "
                                          "(needs torchvision, not installable beside torch 2.13 here)")),
]


def _spec(kind: str, tmp_path_factory) -> str:
    return {
        "mindgap": lambda: "mindgap:flickr8k-small",
        "hf-mindgap-dir": lambda: f"hf:{bundled_dir()}",
        "onnx-mindgap-int8": lambda: f"onnx:{bundled_onnx_dir(tmp_path_factory)}?variant=int8",
        "hf-clip": lambda: f"hf:{tiny_clip_dir(tmp_path_factory)}",
        "onnx-fp32": lambda: f"onnx:{tiny_onnx_dir(tmp_path_factory)}",
        "onnx-int8": lambda: f"onnx:{tiny_onnx_dir(tmp_path_factory)}?variant=int8",
        "open_clip": lambda: "open_clip:ViT-B-32",  # random weights: the contract, not quality
    }[kind]()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory):
    spec = _spec(request.param, tmp_path_factory)
    kw = {} if spec.startswith("onnx:") else {"device": "cpu"}
    return request.param, load_encoder(spec, **kw)


@pytest.fixture(scope="module")
def images(flickr_test):
    return [r.path for r in flickr_test[:5]]


@pytest.fixture(scope="module")
def captions(flickr_test):
    return [r.captions[0] for r in flickr_test[:5]]


def _assert_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.dtype == np.float32
    assert x.flags["C_CONTIGUOUS"]
    assert x.shape == (n, dim)
    assert np.isfinite(x).all()
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def _same(a: np.ndarray, b: np.ndarray, kind: str) -> None:
    """Batch-size independence. Dynamic int8 quantises activations with per-batch ranges
    (padding included), so those graphs are only near-independent of batch composition:
    measured min cosine 0.988 on the bundled model's text tower, batch 1 vs 4."""
    if "int8" in kind:
        assert np.einsum("ij,ij->i", a, b).min() > 0.98
    else:
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_contract_text(backend, captions):
    kind, enc = backend
    assert isinstance(enc, Encoder) and isinstance(enc, BaseEncoder) and enc.dim > 0
    a = enc.encode_text(captions, batch_size=4)
    _assert_rows(a, len(captions), enc.dim)
    np.testing.assert_array_equal(a, enc.encode_text(captions, batch_size=4))  # deterministic
    _same(a, enc.encode_text(captions, batch_size=1), kind)
    _same(a, enc.encode_text(captions, batch_size=64), kind)
    assert not np.allclose(a[0], a[1]), "different captions must give different rows"


def test_contract_image(backend, images):
    kind, enc = backend
    a = enc.encode_image(images, batch_size=2)
    _assert_rows(a, len(images), enc.dim)
    np.testing.assert_array_equal(a, enc.encode_image(images, batch_size=2))
    _same(a, enc.encode_image(images, batch_size=1), kind)
    _same(a, enc.encode_image(images, batch_size=5), kind)
    assert not np.allclose(a[0], a[1])


def test_contract_empty_and_single_string(backend):
    _, enc = backend
    with pytest.raises(InputError, match="empty"):
        enc.encode_text([])
    with pytest.raises(InputError, match="empty"):
        enc.encode_image([])
    with pytest.raises(InputError, match="single string"):
        enc.encode_text("a dog")


def test_text_window_is_the_models(backend):
    kind, enc = backend
    expected = 128 if "mindgap" in kind else 77
    assert enc.max_text_tokens == expected
    base = "a dog runs on the grass " * 40  # ≫ the window
    a, b = enc.encode_text([base, base + "and then a cat sleeps on a red sofa"])
    assert float(a @ b) > 0.9999, "text past the window must be truncated away"


# -- hf backend specifics -------------------------------------------------------------------


def test_hf_clip_loads_as_clip_model(tmp_path_factory):
    enc = load_encoder(f"hf:{tiny_clip_dir(tmp_path_factory)}", device="cpu")
    assert type(enc).__name__ == "HFClipEncoder" and enc.model_type == "clip"
    assert enc.dim == 16 and not enc.fp16 and enc.device.type == "cpu"
    assert enc._text_keys == ["input_ids", "attention_mask"]


def test_hf_matches_raw_transformers(tmp_path_factory, images):
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    d = tiny_clip_dir(tmp_path_factory)
    model, proc = CLIPModel.from_pretrained(d).eval(), CLIPProcessor.from_pretrained(d)
    with torch.no_grad():
        t = model(**proc(text=["a dog"], images=[Image.open(images[0]).convert("RGB")], return_tensors="pt",
                         padding=True))
    enc = load_encoder(f"hf:{d}", device="cpu")
    ref_t = torch.nn.functional.normalize(t.text_embeds, dim=-1).numpy()
    ref_i = torch.nn.functional.normalize(t.image_embeds, dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_text(["a dog"]), ref_t, atol=1e-5)
    np.testing.assert_allclose(enc.encode_image(images[:1]), ref_i, atol=1e-5)


def test_hf_mindgap_dir_delegates_to_dual(tmp_path_factory):
    if bundled_dir() is None:
        pytest.skip("bundled model not trained yet")
    from mindgap.encoders.dual import DualTorchEncoder

    enc = load_encoder(f"hf:{bundled_dir()}", device="cpu")
    assert isinstance(enc, DualTorchEncoder) and enc.name.startswith("hf:")


def test_hf_offline_hub_id_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as ei:
        load_encoder("hf:mindgap-test/definitely-not-cached-clip", device="cpu")
    msg = str(ei.value)
    assert "mindgap-test/definitely-not-cached-clip" in msg
    assert "hf:/path/to/DIR" in msg and "HF_HUB_OFFLINE" in msg


def test_hf_missing_directory_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such model directory"):
        load_encoder(f"hf:{tmp_path / 'nope'}")


def test_hf_directory_without_model_is_a_load_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises((ModelLoadError, SpecError)) as ei:
        load_encoder(f"hf:{tmp_path}", device="cpu")
    assert str(tmp_path) in str(ei.value)


def test_vision_text_dual_encoder_directory(tmp_path):
    """A VisionTextDualEncoderModel directory (tiny ViT + tiny BERT) is detected from config."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, CLIPVisionConfig, VisionTextDualEncoderConfig,
                              VisionTextDualEncoderModel, VisionTextDualEncoderProcessor)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "cat", "runs", "on", "grass"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    cfg = VisionTextDualEncoderConfig.from_vision_text_configs(
        CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         image_size=32, patch_size=8),
        BertConfig(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                   num_attention_heads=2, max_position_embeddings=64), projection_dim=8)
    torch.manual_seed(0)
    out = tmp_path / "vtde"
    VisionTextDualEncoderModel(cfg).save_pretrained(out)
    imp = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    VisionTextDualEncoderProcessor(image_processor=imp, tokenizer=tok).save_pretrained(out)
    enc = load_encoder(f"hf:{out}", device="cpu")
    assert enc.model_type == "vision-text-dual-encoder" and type(enc.model).__name__ == "VisionTextDualEncoderModel"
    assert enc.dim == 8 and enc.max_text_tokens == 64
    t = enc.encode_text(["a dog runs on grass", "a cat"])
    _assert_rows(t, 2, 8)


# -- open_clip ------------------------------------------------------------------------------


def test_open_clip_spec_parsing():
    from mindgap.encoders.open_clip import parse_spec

    assert parse_spec("ViT-B-32/laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    assert parse_spec("ViT-B-32//models/b32.pt") == ("ViT-B-32", "/models/b32.pt")
    assert parse_spec("ViT-B-32") == ("ViT-B-32", None)
    with pytest.raises(SpecError):
        parse_spec("/laion")


@pytest.mark.skipif(HAS_OPEN_CLIP, reason="open_clip is installed")
def test_open_clip_missing_is_a_missing_dependency():
    with pytest.raises(MissingDependency) as ei:
        load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert ei.value.package == "open_clip" and "mindgap[open_clip]" in str(ei.value)
