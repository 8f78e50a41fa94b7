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


def test_random_direction_baseline_for_gap_concentration() -> None:
    """A random isotropic direction is uneven too: the baseline dims_50 is far below d/2."""
    from mindgap.eval.diagnose import random_cumulative_share

    c = random_cumulative_share(256)
    assert c[-1] == pytest.approx(1.0) and np.all(np.diff(c) >= 0)
    g = centroid_gap(*_gapped(d=256))
    assert (g["dims_50_random"], g["dims_90_random"]) == (32, 115)  # seeded: stable
    assert g["dims_50"] == 1 < g["dims_50_random"]
    rng = np.random.default_rng(5)  # an actual random gap lands near the baseline
    img = l2_normalize(rng.normal(size=(4000, 256)) + 0.5 * rng.normal(size=256))
    txt = l2_normalize(rng.normal(size=(4000, 256)))
    assert abs(centroid_gap(img, txt)["dims_50"] - 32) <= 6


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
    assert c["dims_50_random"] == 32 and "random isotropic direction" in (tmp_path / "report.md").read_text()
    assert raw["separability"]["probe_accuracy"] > 0.7  # a real CLIP-style model: modalities separable
    assert raw["cosines"]["matched_mean"] > raw["cosines"]["unmatched_mean"] + 0.1
    assert raw["cosines"]["auc"] > 0.7
    assert 0 < raw["logit_entropy"]["entropy_normalised"] < 1
    for fix in ("center", "linear"):
        v = res["variants"][fix]
        assert np.isfinite(v["centroid"]["gap_norm"]) and 0.3 < v["separability"]["probe_accuracy"] <= 1.0
    assert "| linear probe accuracy (held out) |" in (tmp_path / "report.md").read_text()


def _lab_row(level: str, gap: float, obj: float, att: float) -> dict:
    return {"level": level, "example_caption": f"a {level}.", "mean_caption_words": 5.0, "gap_norm": gap,
            "centroid_cosine": 0.5, "dims_50": 10, "dims_90": 40, "probe_accuracy": 0.99, "matched_cos": 0.8,
            "unmatched_cos": 0.1, "logit_entropy_normalised": 0.4, "object_accuracy": obj, "attribute_accuracy": att,
            "object_chance": 1 / 6, "attribute_chance": 1 / 6, "test_images": 300}


def test_lab_findings_state_the_direction_and_replot_renders(tmp_path: Path) -> None:
    """``mindgap lab --replot``: report + PNGs from lab.json, findings that say what the numbers say."""
    from mindgap.cli import main
    from mindgap.eval.lab import findings

    rows = [_lab_row("object", 0.17, 0.73, 0.12), _lab_row("colour", 0.20, 0.36, 0.91),
            _lab_row("relations", 0.25, 0.50, 0.52)]
    text = "\n".join(findings(rows))
    assert "grew by 47% monotonically" in text
    assert "object: object 0.730 vs. attribute 0.120" in text and text.count("attribute > object") == 1
    assert "relations: object 0.500 vs. attribute 0.520" in text and "no clear difference" in text
    assert "shrank" in "\n".join(findings([_lab_row("a", 0.3, 0.5, 0.5), _lab_row("b", 0.35, 0.5, 0.5),
                                           _lab_row("c", 0.2, 0.5, 0.5)]))
    res = {"config": {"n_train": 10, "n_test": 300, "image_size": 32, "seed": 0, "epochs": 1, "widths": [8],
                      "embed_dim": 16}, "levels": rows, "seconds": 1.0, "cpu_seconds": 1.0}
    (tmp_path / "lab.json").write_text(json.dumps(res))
    assert main(["lab", "--replot", "--out", str(tmp_path)]) == 0
    for f in ("report.md", "gap_vs_richness.png", "zeroshot_vs_richness.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    assert "## Findings" in (tmp_path / "report.md").read_text()
    assert main(["lab", "--replot", "--out", str(tmp_path / "nothing")]) == 2
