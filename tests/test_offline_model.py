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
    assert tr["data"]["split"] == "val"
    calib, train = set(tr["data"]["calib_images"]), set(tr["data"]["train_images"])
    assert len(calib) == 200 and len(train) == 800 and not calib & train
    m = tr["test_metrics"]
    assert m["images"] == 1000 and m["captions"] == 5000
    assert m["text_to_image"]["R@10"] >= 0.12, "target of the foundation issue"
    card = (d / "README.md").read_text()
    assert str(m["text_to_image"]["R@10"]) in card and "calib" in card


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


def test_trainer_smoke_run_produces_a_loadable_model(tmp_path, flickr_dir):
    from mindgap.encoders import load_encoder
    from mindgap.encoders.train import TrainConfig, train

    cfg = TrainConfig(data=str(flickr_dir), epochs=2, max_images=48, batch_size=16, image_size=48, cache_size=56,
                      widths=[8, 16, 32], embed_dim=32)
    rec = train(cfg, tmp_path / "m", progress=False, evaluate=False)
    assert len(rec["epoch_loss"]) == 2 and all(np.isfinite(rec["epoch_loss"]))
    enc = load_encoder(f"mindgap:{tmp_path / 'm'}")
    e = enc.encode_text(["a dog runs on grass"])
    assert e.shape == (1, 32)
    assert not set(rec["data"]["calib_images"]) & set(rec["data"]["train_images"])


def test_train_refuses_test_split(tmp_path):
    from mindgap.cli import main

    assert main(["train", "--out", str(tmp_path / "x"), "--split", "test"]) == 2
