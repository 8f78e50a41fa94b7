"""The bundled offline model is really trained and shows the modality gap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mindgap.encoders.dual import BUNDLED_DIR, DEFAULT_OFFLINE_MODEL
from mindgap.errors import InputError, SpecError


def test_model_card_records_data_and_measured_numbers():
    d = BUNDLED_DIR / DEFAULT_OFFLINE_MODEL
    cfg = json.loads((d / "mindgap_model.json").read_text())
    tr = cfg["training"]
    assert tr["data"]["images_per_source"] == {"flickr8k_train": 5247, "flickr8k_224:val": 800}
    calib, train = set(tr["data"]["calib_images"]), set(tr["data"]["train_images"])
    assert len(calib) == 200 and len(train) == 6047 and not calib & train
    from mindgap.datasets import load_caption_set

    test_ids = {r.image_id for r in load_caption_set("flickr8k_224", split="test")}
    assert not test_ids & train and not test_ids & calib, "the model never saw a test photo"
    m = tr["test_metrics"]
    assert m["images"] == 1000 and m["captions"] == 5000
    assert m["text_to_image"]["R@10"] >= 0.40 and m["image_to_text"]["R@10"] >= 0.40, "target of the model issue"
    card = (d / "README.md").read_text()
    assert str(m["text_to_image"]["R@10"]) in card and "calib" in card and "| run |" in card
    size = sum(f.stat().st_size for f in d.iterdir())
    assert size <= 30e6, f"model files {size / 1e6:.1f} MB > 30 MB"


@pytest.mark.slow
def test_bundled_model_recall_recomputed_from_the_model():
    """The card's numbers are not taken on trust: recompute test recall from the weights."""
    from mindgap.cli import main

    import io
    import contextlib

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["encoder-eval", "--json"]) == 0
    m = json.loads(buf.getvalue())
    assert m["images"] == 1000 and m["captions"] == 5000
    assert m["text_to_image"]["R@10"] >= 0.40 and m["image_to_text"]["R@10"] >= 0.40
    card = json.loads((BUNDLED_DIR / DEFAULT_OFFLINE_MODEL / "mindgap_model.json").read_text())["training"]["test_metrics"]
    assert m["text_to_image"]["R@10"] == pytest.approx(card["text_to_image"]["R@10"], abs=0.005)


def test_matched_pairs_beat_mismatched_on_held_out_images(offline_encoder, flickr_test):
    recs = flickr_test[:100]
    img = offline_encoder.encode_image([r.path for r in recs])
    txt = offline_encoder.encode_text([r.captions[0] for r in recs])
    sim = txt @ img.T
    matched = np.diag(sim)
    mismatched = (sim.sum(1) - matched) / (len(recs) - 1)
    assert (matched > mismatched).mean() > 0.75
    assert matched.mean() - mismatched.mean() > 0.05
    # the correct image ranks in the top 10 of 100 far more often than chance (10%)
    ranks = (sim > matched[:, None]).sum(1)
    assert (ranks < 10).mean() > 0.3


def test_modality_gap_is_visible(offline_encoder, flickr_test):
    recs = flickr_test[:100]
    img = offline_encoder.encode_image([r.path for r in recs])
    t0 = offline_encoder.encode_text([r.captions[0] for r in recs])
    t1 = offline_encoder.encode_text([r.captions[1] for r in recs])
    text_text = np.einsum("ij,ij->i", t0, t1).mean()
    text_image = np.einsum("ij,ij->i", t0, img).mean()
    assert text_text > text_image + 0.2, (text_text, text_image)
    # what that does to a mixed index: a caption's sibling caption outranks its own image
    sib = np.einsum("ij,ij->i", t1, t0)
    own_img = np.einsum("ij,ij->i", t1, img)
    assert (sib > own_img).mean() > 0.8


def test_encoder_contract_on_offline_model(offline_encoder, flickr_test):
    paths = [r.path for r in flickr_test[:5]]
    a = offline_encoder.encode_image(paths, batch_size=2)
    b = offline_encoder.encode_image(paths, batch_size=5)
    assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"] and a.shape == (5, offline_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(InputError):
        offline_encoder.encode_text([])


def test_unknown_model_is_a_clear_error():
    from mindgap.encoders import load_encoder

    with pytest.raises(SpecError, match="no mindgap model"):
        load_encoder("mindgap:does-not-exist")
    with pytest.raises(SpecError, match="unknown encoder"):
        load_encoder("nosuch:thing")


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "resnet-ish-cnn"])
def test_trainer_smoke_run_produces_a_loadable_model(tmp_path, flickr_dir, arch):
    from mindgap.encoders import load_encoder
    from mindgap.encoders.train import TrainConfig, train

    extra = ({"image_size": 64, "views": 2, "unfreeze": 2, "text_tune_layers": 1, "ema": 0.9}
             if arch == "efficientnet-lite0" else {"image_size": 48, "widths": [8, 16, 32]})
    cfg = TrainConfig(data=[f"{flickr_dir}:val"], calib_source=f"{flickr_dir}:val", arch=arch, epochs=2,
                      max_images=48, batch_size=16, embed_dim=32, head_hidden=64, **extra)
    rec = train(cfg, tmp_path / "m", progress=False, evaluate=False)
    assert len(rec["epoch_loss"]) == 2 and all(np.isfinite(rec["epoch_loss"]))
    enc = load_encoder(f"mindgap:{tmp_path / 'm'}")
    e = enc.encode_text(["a dog runs on grass"])
    assert e.shape == (1, 32)
    assert not set(rec["data"]["calib_images"]) & set(rec["data"]["train_images"])
    if arch == "efficientnet-lite0":
        # the tuned text layer is stored and loaded back: embeddings differ from the untuned base
        import torch
        from safetensors.torch import load_file

        w = load_file(str(tmp_path / "m" / "model.safetensors"))
        assert any(k.startswith("text_base.encoder.layer.5.") for k in w)
        assert not any(k.startswith("text_base.encoder.layer.4.") for k in w)
        assert all(v.dtype == torch.float16 for k, v in w.items() if k.startswith("vision.") and v.is_floating_point())


def test_train_refuses_test_split(tmp_path):
    from mindgap.cli import main

    assert main(["train", "--out", str(tmp_path / "x"), "--data", "flickr8k_224:test"]) == 2
    assert not (tmp_path / "x").exists()


def test_train_sources_are_checked(tmp_path):
    from mindgap.encoders.train_data import Source, load_sources

    assert (Source.parse("flickr8k_224:val").data, Source.parse("flickr8k_224:val").split) == ("flickr8k_224", "val")
    assert Source.parse("flickr8k_train").split is None
    with pytest.raises(InputError, match="calib source"):
        load_sources(["flickr8k_224:val"], "flickr8k_train", 200, 0)
    with pytest.raises(InputError, match="two training sources"):
        load_sources(["flickr8k_224:val", "flickr8k_224:val"], "flickr8k_224:val", 10, 0)
    train, calib, counts = load_sources(["flickr8k_224"], "flickr8k_224", 50, 0)
    assert counts == {"flickr8k_224": 950} and len(calib) == 50
    assert all(r.split != "test" for r in train + calib), "a source without a split never yields test images"
