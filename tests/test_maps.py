"""mindgap.maps: closed-form OLS / Procrustes maps on synthetic pairs with a known answer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mindgap.errors import InputError
from mindgap.maps import LinearMap, fit_map, fit_ols, fit_procrustes


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rotated_pairs(n: int = 400, d: int = 16, noise: float = 0.0, seed: int = 0):
    """Targets = a fixed rotation of the (normalised, centred) sources, shifted by a constant."""
    rng = np.random.default_rng(seed)
    rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    x = l2(rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(1, d)))
    xc = x - x.mean(0)
    y = xc @ rot + 5.0 * rng.normal(size=(1, d)) + noise * rng.normal(size=(n, d))
    return x, y, rot


def centred_target(lm: LinearMap, y: np.ndarray) -> np.ndarray:
    return l2(y) - (0 if lm.target_mean_ is None else lm.target_mean_)


@pytest.mark.parametrize("fit", [fit_ols, fit_procrustes])
def test_fit_recovers_a_known_map_in_the_centred_target_space(fit):
    x, y, _ = rotated_pairs(noise=0.01)
    lm = fit(x, y)
    pred = l2(lm.transform(x))
    true = l2(centred_target(lm, y))
    assert np.mean(np.sum(pred * true, axis=1)) > 0.95
    # without the map (identity) the centred spaces do not line up
    assert np.mean(np.sum(l2(x - lm.source_mean_) * true, axis=1)) < 0.5
    assert lm.W_.dtype == np.float32 and lm.W_.shape == (16, 16) and lm.n_pairs == 400


def test_procrustes_is_orthogonal_and_ols_is_not_constrained():
    x, y, _ = rotated_pairs(noise=0.3)
    p = fit_procrustes(x, y)
    assert np.allclose(p.W_.T @ p.W_, np.eye(16), atol=1e-5)
    o = fit_ols(x, y)
    assert not np.allclose(o.W_.T @ o.W_, np.eye(16), atol=1e-2)
    assert p.kind == "procrustes" and o.kind == "ols" and p.ridge == 0.0


def test_ols_matches_normal_equations_and_ridge_shrinks():
    x, y, _ = rotated_pairs(n=60, noise=0.2, seed=3)
    xc, yc = l2(x) - l2(x).mean(0), l2(y) - l2(y).mean(0)
    w0 = np.linalg.solve(xc.T @ xc, xc.T @ yc)
    assert np.allclose(fit_ols(x, y).W_, w0, atol=1e-4)
    w1 = fit_ols(x, y, ridge=1.0).W_
    assert np.allclose(w1, np.linalg.solve(xc.T @ xc + np.eye(16), xc.T @ yc), atol=1e-4)
    assert np.linalg.norm(w1) < np.linalg.norm(w0)
    assert np.linalg.norm(fit_ols(x, y, ridge=100.0).W_) < np.linalg.norm(w1)


def test_underdetermined_ols_uses_the_minimum_norm_solution():
    x, y, _ = rotated_pairs(n=8, d=16, seed=1)  # fewer pairs than dimensions: XᵀX is singular
    lm = fit_ols(x, y)
    assert np.isfinite(lm.W_).all()
    assert np.allclose(lm.transform(x), centred_target(lm, y), atol=1e-3)  # interpolates the pairs


def test_center_false_keeps_no_means_and_transform_normalises_inputs():
    x, y, _ = rotated_pairs(seed=2)
    lm = fit_ols(x, y, center=False)
    assert lm.source_mean_ is None and lm.target_mean_ is None and lm.center is False
    assert np.allclose(lm.transform(3.0 * x[:4]), lm.transform(x[:4]), atol=1e-5)
    assert np.allclose(lm.transform(x[:4]), l2(x[:4]) @ lm.W_, atol=1e-5)


def test_to_dict_round_trips_like_the_caption_model_saves_it(tmp_path):
    """Arrays → npz, scalars → JSON, merged back (the caption model's save/load)."""
    x, y, _ = rotated_pairs(seed=4)
    for lm in (fit_ols(x, y, ridge=0.5), fit_procrustes(x, y, center=False)):
        state = lm.to_dict()
        arrays = {k: np.asarray(v) for k, v in state.items() if isinstance(v, (list, np.ndarray))}
        scalars = {k: v for k, v in state.items() if k not in arrays}
        np.savez(tmp_path / "m.npz", **arrays)
        (tmp_path / "m.json").write_text(json.dumps(scalars))
        with np.load(tmp_path / "m.npz") as z:
            back = {k: z[k] for k in z.files}
        back.update(json.loads((tmp_path / "m.json").read_text()))
        lm2 = LinearMap.from_dict(back)
        assert (lm2.kind, lm2.ridge, lm2.center, lm2.n_pairs) == (lm.kind, lm.ridge, lm.center, lm.n_pairs)
        assert np.array_equal(lm2.transform(x[:5]), lm.transform(x[:5]))
        assert (lm2.source_mean_ is None) == (lm.source_mean_ is None)


def test_bad_inputs_are_clear_errors():
    x, y, _ = rotated_pairs(n=20)
    with pytest.raises(InputError, match="pairs must align"):
        fit_ols(x, y[:10])
    with pytest.raises(InputError, match="ridge"):
        fit_ols(x, y, ridge=-1)
    with pytest.raises(InputError, match="equal dimensions"):
        fit_procrustes(x, y[:, :8])
    with pytest.raises(InputError, match="non-finite"):
        fit_ols(np.full_like(x, np.nan), y)
    with pytest.raises(InputError, match="at least 2"):
        fit_ols(x[:1], y[:1])
    with pytest.raises(InputError, match="unknown map kind"):
        fit_map(x, y, kind="mlp")
    with pytest.raises(InputError, match="16-d"):
        fit_ols(x, y).transform(np.ones((2, 4)))
    with pytest.raises(InputError, match="W_"):
        LinearMap.from_dict({"kind": "ols"})
