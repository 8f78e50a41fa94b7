"""``mindgap diagnose``: the gap measures on constructed arrays and on a small real subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mindgap.encoders.base import l2_normalize
from mindgap.eval.diagnose import (DiagnoseConfig, centroid_gap, logit_entropy, matched_unmatched, run_diagnose,
                                   separability)


def _gapped(n: int = 200, d: int = 32, shift: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and texts that differ by a shift along dimension 0 only."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, d))
    img, txt = base.copy(), base + rng.normal(scale=0.3, size=(n, d))
    img[:, 0] += shift
    txt[:, 0] -= shift
    return l2_normalize(img), l2_normalize(txt)


def test_centroid_gap_concentrated_in_one_dimension() -> None:
    img, txt = _gapped()
    g = centroid_gap(img, txt)
    assert g["dims_50"] == 1 and g["dims_90"] <= 3
    assert g["top5_dims"][0] == 0
    assert g["gap_norm"] == pytest.approx(float(np.linalg.norm(img.mean(0) - txt.mean(0))), rel=1e-5)
    same = centroid_gap(img, img)
    assert same["gap_norm"] == 0.0 and same["dims_50"] == 0


def test_separability_probe_separates_gapped_not_identical() -> None:
    img, txt = _gapped()
    assert separability(img, txt)["probe_accuracy"] > 0.95
    rng = np.random.default_rng(1)
    a = l2_normalize(rng.normal(size=(200, 32)))
    b = l2_normalize(rng.normal(size=(200, 32)))
    assert separability(a, b)["probe_accuracy"] < 0.7


def test_logit_entropy_extremes() -> None:
    eye = np.eye(8, dtype=np.float32)
    sharp = logit_entropy(eye, eye, scale=100.0)
    assert sharp["entropy_normalised"] < 0.01 and sharp["top1_accuracy"] == 1.0
    flat = logit_entropy(eye, eye, scale=0.0)
    assert flat["entropy_normalised"] == pytest.approx(1.0)


def test_matched_unmatched_never_pairs_an_image_with_itself() -> None:
    img, txt = _gapped(n=50)
    owner = np.arange(50)
    r = matched_unmatched(img, txt, owner, seed=0)
    assert r["matched_mean"] > r["unmatched_mean"] and r["auc"] > 0.9
    same = matched_unmatched(img, img, owner)
    assert np.all(same["_unmatched"] < 0.999)  # no accidental self-pairs


@pytest.mark.parametrize("fix", ["center", "linear"])
def test_fixes_shrink_a_constructed_gap(fix: str) -> None:
    from mindgap.eval.diagnose import _apply_fix

    img, txt = _gapped(n=300, shift=2.0, seed=3)
    f_img, f_txt = _gapped(n=300, shift=2.0, seed=4)
    owner = np.arange(300)
    i2, t2, how = _apply_fix(fix, f_img, f_txt, owner, img, txt)
    assert i2.shape == img.shape and t2.shape == txt.shape
    assert np.allclose(np.linalg.norm(t2, axis=1), 1, atol=1e-4)
    before, after = centroid_gap(img, txt)["gap_norm"], centroid_gap(i2, t2)["gap_norm"]
    assert after < 0.5 * before, how


def test_diagnose_small_real_subset(tmp_path: Path, offline_encoder) -> None:
    cfg = DiagnoseConfig(limit=80, fit_limit=40, captions_per_image=2, seed=0)
    res = run_diagnose(offline_encoder, cfg, out_dir=tmp_path, progress=False)
    for f in ("report.md", "diagnose.json", "matched_unmatched.png", "gap_dims.png", "embedding_pca.png"):
        assert (tmp_path / f).is_file(), f
    assert json.loads((tmp_path / "diagnose.json").read_text())["variants"].keys() == {"raw", "center", "linear"}
    assert res["images"] == 80 and res["captions"] == 160
    assert res["fit"]["how"].startswith("encoder calib images")
    raw = res["variants"]["raw"]
    c = raw["centroid"]
    assert 0.05 < c["gap_norm"] < 2.0
    assert 1 <= c["dims_50"] <= c["dims_90"] <= c["dims"] == 256
    assert raw["separability"]["probe_accuracy"] > 0.7  # a real CLIP-style model: modalities separable
    assert raw["cosines"]["matched_mean"] > raw["cosines"]["unmatched_mean"] + 0.1
    assert raw["cosines"]["auc"] > 0.7
    assert 0 < raw["logit_entropy"]["entropy_normalised"] < 1
    for fix in ("center", "linear"):
        v = res["variants"][fix]
        assert np.isfinite(v["centroid"]["gap_norm"]) and 0.3 < v["separability"]["probe_accuracy"] <= 1.0
    assert "| linear probe accuracy (held out) |" in (tmp_path / "report.md").read_text()
