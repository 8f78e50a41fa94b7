"""Refinement: CIDEr-D filter, refit, and stopping when validation does not improve."""

from __future__ import annotations

import numpy as np
import pytest

from mindgap.caption.map import fit_caption_model
from mindgap.caption.refine import refine
from mindgap.rag.generators.base import Generation


class ConstantGenerator:
    """A generator whose output never depends on the prompt: it cannot improve validation."""

    name = "stub:constant"
    context_window = 2048
    supports_images = False

    def __init__(self, text: str = "A dog runs across the grass.") -> None:
        self.text, self.calls = text, 0

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, messages, *, max_tokens=64, temperature=0.0, stop=None) -> Generation:
        self.calls += 1
        return Generation(text=self.text, tokens=6, seconds=0.0, model=self.name)


@pytest.fixture(scope="module")
def small_model(offline_encoder, flickr_dir):
    from mindgap.datasets import load_caption_set

    recs = load_caption_set(flickr_dir, split="val")[:60]
    return fit_caption_model(recs, offline_encoder, ridge=1.0, data=str(flickr_dir), split="val"), recs


def test_refinement_stops_when_validation_does_not_improve(small_model):
    model, recs = small_model
    gen = ConstantGenerator()
    logs = []
    res = refine(model, gen, recs, recs, k=3, max_iter=5, train_size=40, val_size=20, on_iteration=logs.append)
    log = res.log
    assert log[0].iteration == 0 and log[0].n_val == 20
    # dog-on-grass images score above the validation mean → some synthetic captions are kept
    assert log[1].n_generated == 40 and log[1].n_kept > 0
    assert log[1].threshold == pytest.approx(log[0].val_cider_d, abs=1e-6)
    # ... but validation output is the same constant, so CIDEr-D cannot improve: stop after one
    assert log[1].val_cider_d == pytest.approx(log[0].val_cider_d)
    assert not log[1].accepted and len(log) == 2 and "did not improve" in res.stopped
    # the returned model is the previous one (synthetic captions not kept), the input untouched
    assert len(res.model.store) == len(model.store) == 300
    assert all(e.source == "ref" for e in res.model.store.entries)
    assert res.model.meta["refinement"][-1]["stopped"] == res.stopped
    assert logs == log
    assert gen.calls == 20 + 40 + 20


def test_nothing_above_threshold_stops_immediately(small_model):
    model, recs = small_model
    res = refine(model, ConstantGenerator("zebra quartz xylophone nebula."), recs, recs,
                 k=3, max_iter=3, train_size=10, val_size=10)
    assert [x.iteration for x in res.log] == [0, 1]
    assert res.log[1].n_kept == 0 and "no synthetic caption" in res.stopped


def test_accepted_iteration_adds_synthetic_captions_and_refits(small_model, monkeypatch):
    """Force acceptance (validation patched to improve) to check the add + refit path."""
    import mindgap.caption.refine as R

    model, recs = small_model
    calls = iter([0.1, 0.5, 0.4])
    real = R.validate

    def fake_validate(*a, **kw):
        scores, hyps = real(*a, **kw)
        return dict(scores, cider_d=next(calls)), hyps

    monkeypatch.setattr(R, "validate", fake_validate)
    res = refine(model, ConstantGenerator(), recs, recs, k=3, max_iter=3, train_size=30, val_size=10)
    assert [x.accepted for x in res.log] == [True, True, False]
    kept = res.log[1].n_kept
    assert kept > 0 and len(res.model.store) == 300 + kept
    synth = [e for e in res.model.store.entries if e.source == "synthetic"]
    assert len(synth) == kept and all(e.iteration == 1 and e.id.endswith("#s1") for e in synth)
    assert res.model.meta["n_pairs"] == 300 + kept
    x, _ = res.model.pairs()
    assert x.shape[0] == 300 + kept
    assert not np.allclose(res.model.lmap.transform(model.image_vectors[:2]), model.lmap.transform(model.image_vectors[:2]))
