"""The Encoder contract, checked on every backend available here, plus hf / open_clip loading."""

from __future__ import annotations

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

import importlib.util

import numpy as np
import pytest
from _tiny_clip import (bundled_dir, bundled_onnx_dir, tiny_clip_dir, tiny_onnx_dir, tiny_vtde_dir,
                        tiny_vtde_onnx_dir)

from mindgap.encoders import BaseEncoder, Encoder, load_encoder
from mindgap.errors import InputError, MissingDependency, ModelLoadError, SpecError

HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None
OPEN_CLIP_SKIP = (
    "open_clip_torch is not installed: it needs torchvision, and the only torchvision built for the "
    "pinned torch 2.13.0 on this package index (0.28.0) is a CUDA build whose _C.so links "
    "libc10_cuda.so / libtorch_cuda.so, which the CPU torch lacks, so `import torchvision` fails "
    "('operator torchvision::nms does not exist'); 0.27.1 wants torch 2.12.1, 0.29.x torch >= 2.14"
)
NEEDS_BUNDLED = pytest.mark.skipif(bundled_dir() is None, reason="bundled offline model not trained yet")

BACKENDS = [
    pytest.param("mindgap", id="mindgap", marks=NEEDS_BUNDLED),
    pytest.param("hf-mindgap-dir", id="hf-mindgap-dir", marks=NEEDS_BUNDLED),
    pytest.param("onnx-mindgap-fp32", id="onnx-mindgap-fp32", marks=NEEDS_BUNDLED),
    pytest.param("onnx-mindgap-int8", id="onnx-mindgap-int8", marks=NEEDS_BUNDLED),
    pytest.param("hf-clip", id="hf-clip"),
    pytest.param("onnx-fp32", id="onnx-fp32"),
    pytest.param("onnx-int8", id="onnx-int8"),
    pytest.param("hf-vtde", id="hf-vtde"),
    pytest.param("onnx-vtde-int8", id="onnx-vtde-int8"),
    pytest.param("open_clip", id="open_clip", marks=pytest.mark.skipif(not HAS_OPEN_CLIP, reason=OPEN_CLIP_SKIP)),
]


def _spec(kind: str, tmp_path_factory) -> str:
    return {
        "mindgap": lambda: DEFAULT_OFFLINE_SPEC,
        "hf-mindgap-dir": lambda: f"hf:{bundled_dir()}",
        "onnx-mindgap-fp32": lambda: f"onnx:{bundled_onnx_dir(tmp_path_factory)}",
        "onnx-mindgap-int8": lambda: f"onnx:{bundled_onnx_dir(tmp_path_factory)}?variant=int8",
        "hf-clip": lambda: f"hf:{tiny_clip_dir(tmp_path_factory)}",
        "onnx-fp32": lambda: f"onnx:{tiny_onnx_dir(tmp_path_factory)}",
        "onnx-int8": lambda: f"onnx:{tiny_onnx_dir(tmp_path_factory)}?variant=int8",
        "hf-vtde": lambda: f"hf:{tiny_vtde_dir(tmp_path_factory)}",
        "onnx-vtde-int8": lambda: f"onnx:{tiny_vtde_onnx_dir(tmp_path_factory)}?variant=int8",
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
    expected = 128 if "mindgap" in kind else 64 if "vtde" in kind else 77
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


def test_hf_unreachable_hub_fails_fast_from_the_cache(monkeypatch):
    """No HF_HUB_OFFLINE, but the Hub cannot be reached: the cache only, no retry loop, same advice."""
    from mindgap.encoders.hf import hub_reachable

    for var in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    assert hub_reachable(timeout=1.0) is False
    with pytest.raises(ModelLoadError) as ei:
        load_encoder("hf:mindgap-test/definitely-not-cached-clip", device="cpu")
    msg = str(ei.value)
    assert "the Hub is unreachable" in msg and "hf:/path/to/DIR" in msg and "huggingface-cli download" in msg


def test_hf_missing_directory_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such model directory"):
        load_encoder(f"hf:{tmp_path / 'nope'}")


def test_hf_directory_without_model_is_a_load_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises((ModelLoadError, SpecError)) as ei:
        load_encoder(f"hf:{tmp_path}", device="cpu")
    assert str(tmp_path) in str(ei.value)


def test_vision_text_dual_encoder_directory(tmp_path_factory, images):
    """A VisionTextDualEncoderModel directory (tiny ViT + tiny BERT) is detected from config and
    matches the raw transformers model; its ONNX export matches too."""
    import torch
    from PIL import Image
    from transformers import VisionTextDualEncoderModel, VisionTextDualEncoderProcessor

    d = tiny_vtde_dir(tmp_path_factory)
    enc = load_encoder(f"hf:{d}", device="cpu")
    assert enc.model_type == "vision-text-dual-encoder" and type(enc.model).__name__ == "VisionTextDualEncoderModel"
    assert enc.dim == 8 and enc.max_text_tokens == 64
    assert enc._text_keys == ["input_ids", "attention_mask", "token_type_ids"]
    model, proc = VisionTextDualEncoderModel.from_pretrained(d).eval(), VisionTextDualEncoderProcessor.from_pretrained(d)
    with torch.no_grad():
        out = model(**proc(text=["a dog runs on the grass"], images=[Image.open(images[0]).convert("RGB")],
                           return_tensors="pt", padding=True))
    np.testing.assert_allclose(enc.encode_text(["a dog runs on the grass"]),
                               torch.nn.functional.normalize(out.text_embeds, dim=-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(enc.encode_image(images[:1]),
                               torch.nn.functional.normalize(out.image_embeds, dim=-1).numpy(), atol=1e-5)
    onnx_enc = load_encoder(f"onnx:{tiny_vtde_onnx_dir(tmp_path_factory)}")
    texts = ["a dog runs on the grass", "two children play in the sand at the beach"]
    assert np.einsum("ij,ij->i", onnx_enc.encode_text(texts), enc.encode_text(texts)).min() > 0.9999
    assert np.einsum("ij,ij->i", onnx_enc.encode_image(images), enc.encode_image(images)).min() > 0.9999


def test_hf_fp16_path_runs_and_stays_close(tmp_path_factory, images):
    """fp16 (the CUDA default) exercised on CPU: half weights and pixels, float32 normalised output."""
    import torch

    d = tiny_clip_dir(tmp_path_factory)
    half = load_encoder(f"hf:{d}", device="cpu", fp16=True)
    full = load_encoder(f"hf:{d}", device="cpu")
    assert half.fp16 and half.dtype == torch.float16 and next(half.model.parameters()).dtype == torch.float16
    for a, b in ((half.encode_text(["a dog", "the cat and the dog"]), full.encode_text(["a dog", "the cat and the dog"])),
                 (half.encode_image(images), full.encode_image(images))):
        _assert_rows(a, len(b), 16)
        assert np.einsum("ij,ij->i", a, b).min() > 0.99


@pytest.mark.gpu
def test_hf_on_cuda_defaults_to_fp16(tmp_path_factory, images):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    d = tiny_clip_dir(tmp_path_factory)
    gpu = load_encoder(f"hf:{d}")
    assert gpu.device.type == "cuda" and gpu.fp16
    cpu = load_encoder(f"hf:{d}", device="cpu")
    assert np.einsum("ij,ij->i", gpu.encode_image(images), cpu.encode_image(images)).min() > 0.99
    assert np.einsum("ij,ij->i", gpu.encode_text(["a dog"]), cpu.encode_text(["a dog"])).min() > 0.99


def test_onnx_thread_count_option(tmp_path_factory):
    d = tiny_onnx_dir(tmp_path_factory)
    one = load_encoder(f"onnx:{d}?num_threads=1")
    two = load_encoder(f"onnx:{d}", num_threads=2)  # keyword wins / works too
    for enc, n in ((one, 1), (two, 2)):
        for sess in (enc.text_sess, enc.vision_sess):
            assert sess.get_session_options().intra_op_num_threads == n
    np.testing.assert_allclose(one.encode_text(["a dog"]), two.encode_text(["a dog"]), atol=1e-6)


def test_onnx_threads_do_not_busy_wait_unless_asked(tmp_path_factory):
    """ONNX Runtime's threads spin between runs by default; mindgap turns that off (they fought
    numpy's BLAS threads in a query loop) and ``spin=1`` gives it back. Same embeddings either way."""
    d = tiny_onnx_dir(tmp_path_factory)
    quiet, spinning = load_encoder(f"onnx:{d}"), load_encoder(f"onnx:{d}?spin=1")
    def spin_entry(sess):
        try:
            return sess.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        except RuntimeError:  # not set: ONNX Runtime's default, spinning on
            return "default"

    for enc, want in ((quiet, "0"), (spinning, "default")):
        assert {spin_entry(enc.text_sess), spin_entry(enc.vision_sess)} == {want}
    assert load_encoder(f"onnx:{d}", spin=True).spin and not quiet.spin
    np.testing.assert_allclose(quiet.encode_text(["a dog"]), spinning.encode_text(["a dog"]), atol=1e-6)
    with pytest.raises(SpecError, match="spin must be 0 or 1"):
        load_encoder(f"onnx:{d}?spin=sometimes")


# -- long texts (METHODS §1: split into sentences, average) ------------------------------------


def test_embed_long_texts_averages_sentences(offline_encoder):
    from mindgap.text import embed_long_texts, split_sentences

    dogs = ("A black dog runs across a green field. The dog jumps to catch a yellow frisbee in the park. "
            "A brown puppy chases a ball on the grass. ") * 4
    beach = "Two children build a sandcastle at the beach. The waves are big and the sky is blue."
    passage = dogs + beach  # the dog part alone fills the 128-token window
    window = offline_encoder.max_text_tokens
    assert len(offline_encoder.tokenizer(dogs)["input_ids"]) > window
    sents = split_sentences(passage)
    assert len(sents) == 14 and sents[-1] == "The waves are big and the sky is blue."
    avg = embed_long_texts([passage, "a dog"], offline_encoder.encode_text)
    _assert_rows(avg, 2, offline_encoder.dim)
    manual = offline_encoder.encode_text(sents).mean(0)
    np.testing.assert_allclose(avg[0], manual / np.linalg.norm(manual), atol=1e-5)
    np.testing.assert_allclose(avg[1], offline_encoder.encode_text(["a dog"])[0], atol=1e-5)  # one sentence: as is
    trunc = embed_long_texts([passage], offline_encoder.encode_text, mode="truncate")
    np.testing.assert_allclose(trunc, offline_encoder.encode_text([passage]), atol=1e-6)
    # truncation never sees the beach sentences; averaging does
    np.testing.assert_allclose(trunc, embed_long_texts([dogs + "A cat sleeps."], offline_encoder.encode_text,
                                                       mode="truncate"), atol=1e-6)
    query = offline_encoder.encode_text(["children build a sandcastle on the beach"])[0]
    assert float(avg[0] @ query) > float(trunc[0] @ query)
    with pytest.raises(InputError, match="long-text mode"):
        embed_long_texts([passage], offline_encoder.encode_text, mode="chunks")
    with pytest.raises(InputError, match="not valid UTF-8"):
        embed_long_texts([b"caf\xe9"], offline_encoder.encode_text)


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


def _fake_open_clip():  # noqa: ANN202
    """A stand-in for the ``open_clip`` module (its documented API, tiny random torch model).

    The real package cannot be installed here (see OPEN_CLIP_SKIP); this exercises mindgap's
    wrapper — spec handling, checkpoint checks, error wrapping, dtype/device, batching — against
    the calls it makes: ``list_models``, ``create_model_and_transforms``, ``get_tokenizer``."""
    import types

    import torch

    class Model(torch.nn.Module):
        context_length = 77

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.tok = torch.nn.Embedding(256, 16)
            self.conv = torch.nn.Conv2d(3, 16, 3)

        def encode_text(self, tokens):  # noqa: ANN001, ANN201
            return self.tok(tokens).mean(1)

        def encode_image(self, px):  # noqa: ANN001, ANN201
            return self.conv(px).mean((2, 3))

    def create_model_and_transforms(arch, pretrained=None, device=None):  # noqa: ANN001, ANN202
        if pretrained == "offline-tag":
            raise RuntimeError("Failed to download checkpoint (no network)")
        model = Model().to(device)

        def preprocess(im):  # noqa: ANN001, ANN202
            arr = np.asarray(im.resize((32, 32)), dtype=np.float32) / 255.0
            return torch.from_numpy(arr).permute(2, 0, 1)

        return model, None, preprocess

    def get_tokenizer(arch):  # noqa: ANN001, ANN202
        def tokenize(texts):  # noqa: ANN001, ANN202
            out = torch.zeros(len(texts), 77, dtype=torch.long)
            for i, t in enumerate(texts):
                ids = list(t.encode("utf-8"))[:77]
                out[i, : len(ids)] = torch.tensor(ids)
            return out

        return tokenize

    return types.SimpleNamespace(list_models=lambda: ["ViT-B-32", "RN50"], get_tokenizer=get_tokenizer,
                                 create_model_and_transforms=create_model_and_transforms)


def test_open_clip_wrapper_against_a_stand_in(tmp_path, images):
    import sys
    from unittest import mock

    with mock.patch.dict(sys.modules, {"open_clip": _fake_open_clip()}):
        enc = load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k", device="cpu")
        ckpt = tmp_path / "b32.pt"
        ckpt.write_bytes(b"weights")
        from_file = load_encoder(f"open_clip:RN50/{ckpt}", device="cpu")
        with pytest.raises(SpecError, match="unknown open_clip architecture"):
            load_encoder("open_clip:ViT-Z-99/x", device="cpu")
        with pytest.raises(SpecError, match="no such open_clip checkpoint"):
            load_encoder(f"open_clip:ViT-B-32/{tmp_path / 'missing.pt'}", device="cpu")
        with pytest.raises(ModelLoadError, match="offline, download the checkpoint") as ei:
            load_encoder("open_clip:ViT-B-32/offline-tag", device="cpu")
        assert "open_clip:ViT-B-32//path/to/checkpoint" in str(ei.value)
    assert enc.name == "open_clip:ViT-B-32/laion2b_s34b_b79k" and enc.dim == 16 and enc.max_text_tokens == 77
    assert not enc.fp16 and from_file.name == f"open_clip:RN50/{ckpt}"
    t = enc.encode_text(["a dog", "a cat", "two children"], batch_size=2)
    _assert_rows(t, 3, 16)
    np.testing.assert_allclose(t, enc.encode_text(["a dog", "a cat", "two children"], batch_size=3), atol=1e-6)
    i = enc.encode_image(images, batch_size=2)
    _assert_rows(i, len(images), 16)
    np.testing.assert_allclose(i, enc.encode_image(images, batch_size=5), atol=1e-5)


def test_one_query_text_runs_pytorch_on_one_thread_and_restores_it(offline_encoder, monkeypatch):
    """A single query text is encoded on MINDGAP_QUERY_THREADS PyTorch threads (default 1), and
    the calling thread gets its setting back afterwards, also when calls nest or run on several
    threads at once (PyTorch keeps the count per thread)."""
    import threading

    import torch

    from mindgap.encoders.base import torch_query_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen: list[int] = []
        real = type(offline_encoder)._encode_text_batch

        def spy(self, texts):
            seen.append(torch.get_num_threads())
            return real(self, texts)

        monkeypatch.setattr(type(offline_encoder), "_encode_text_batch", spy)
        monkeypatch.delenv("MINDGAP_QUERY_THREADS", raising=False)
        one = offline_encoder.encode_text(["a dog runs on the grass"])
        two = offline_encoder.encode_text(["a dog runs on the grass", "a cat"])
        assert seen == [1, 2] and torch.get_num_threads() == 2
        np.testing.assert_allclose(one[0], two[0], atol=1e-5)  # the same embedding, whatever the threads
        monkeypatch.setenv("MINDGAP_QUERY_THREADS", "0")  # 0: PyTorch's own setting
        offline_encoder.encode_text(["a dog"])
        assert seen[-1] == 2
        monkeypatch.setenv("MINDGAP_QUERY_THREADS", "lots")
        with pytest.raises(InputError, match="MINDGAP_QUERY_THREADS"):
            offline_encoder.encode_text(["a dog"])
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("MINDGAP_QUERY_THREADS")
        with torch_query_threads("cpu"):
            with torch_query_threads("cpu"):
                assert torch.get_num_threads() == 1
            assert torch.get_num_threads() == 1  # the outer call is still running
        assert torch.get_num_threads() == 2
        errors: list[str] = []

        def many():
            torch.set_num_threads(2)
            for _ in range(50):
                with torch_query_threads("cpu"):
                    if torch.get_num_threads() != 1:
                        errors.append(f"inside: {torch.get_num_threads()}")
                if torch.get_num_threads() != 2:
                    errors.append(f"after: {torch.get_num_threads()}")

        workers = [threading.Thread(target=many) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors and torch.get_num_threads() == 2
        fresh: list[int] = []
        w = threading.Thread(target=lambda: fresh.append(torch.get_num_threads()))
        w.start()
        w.join()
        assert fresh == [2]  # the process-wide default for new threads is back too
        with torch_query_threads(torch.device("cuda")):  # a GPU model: nothing to change on the CPU
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
