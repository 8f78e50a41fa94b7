"""Issue 14: the calibrated corrector, query-adaptive qnorm, the peers' fusion baselines,
``min_prob``, the out-of-the-box fit, on synthetic data and on the real Flickr8k mixed store
(the default offline model, fitted on its held-out calib images only)."""

from __future__ import annotations

import functools
import math
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from mindgap.errors import InputError, NotFittedError
from mindgap.gap import FitData, corrector_from_dict, make_corrector
from mindgap.gap.calibrated import fit_isotonic, fit_logistic_1d
from mindgap.manifest import Manifest
from mindgap.retriever import Retriever
from mindgap.stores.exact import ExactStore
from mindgap.types import Item, Modality

from _toy_gap import toy_gap, unit as _unit  # noqa: E402


# -- synthetic -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth():
    """A toy gap: texts near the query direction (high cosines), images offset (lower ones);
    each query has one relevant text and one relevant image; fit on the first 100 topics."""
    return toy_gap()


def _fresh(d: FitData) -> FitData:
    return FitData(**vars(d))


def test_logistic_and_isotonic_fits() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.6, 0.1, 500), rng.normal(0.2, 0.1, 5000)])
    y = np.r_[np.ones(500), np.zeros(5000)]
    a, b = fit_logistic_1d(x, y, np.ones_like(x))
    assert a > 0
    p = 1 / (1 + np.exp(-(a * x + b)))
    assert abs(p.mean() - y.mean()) < 0.01  # a logistic fit reproduces the base rate
    cx, py = fit_isotonic(x, y, np.ones_like(x))
    assert np.all(np.diff(py) >= -1e-9) and np.all(np.diff(cx) > 0)


def test_calibrated_monotone_persistent_and_probabilistic(synth) -> None:
    r = Retriever(synth.store)
    corr = r.fit_gap("calibrated", _fresh(synth.data))
    st = corr.calib_["text"]
    assert set(st) == {"text", "image"} and st["text"]["N"] == 300 and st["text"]["a"] > 0
    sims = np.sort(np.random.default_rng(2).uniform(-0.2, 0.9, (4, 50)), axis=1)[:, ::-1]
    q = synth.queries[:4]
    for m in (Modality.TEXT, Modality.IMAGE):
        p = corr.probability(sims, q, Modality.TEXT, m)
        assert np.all((p >= 0) & (p <= 1)) and np.all(p.sum(1) <= 1 + 1e-9)  # a posterior over the list + "none"
        s = corr.score_query(sims, q, Modality.TEXT, m)
        assert np.all(np.diff(s, axis=1) <= 1e-12)  # falls along the list: per-modality top-k then merge is exact
    again = corrector_from_dict(corr.to_dict())
    np.testing.assert_allclose(again.score_query(sims, q, "text", "image"), corr.score_query(sims, q, "text", "image"))
    with pytest.raises(NotFittedError):
        make_corrector("calibrated").score_query(sims, q, Modality.TEXT, Modality.TEXT)
    with pytest.raises(InputError):
        make_corrector("calibrated:method=bogus")


def test_calibrated_returns_both_modalities_where_naive_does_not(synth) -> None:
    r = Retriever(synth.store)
    r.fit_gap("calibrated", _fresh(synth.data))
    q = synth.queries[synth.test]
    naive = r.search_vectors(q, k=10, gap="naive", fetch=False)
    cal = r.search_vectors(q, k=10, gap="calibrated", fetch=False)
    share = lambda res: np.mean([[h.modality == Modality.IMAGE for h in hs] for hs in res])  # noqa: E731
    assert share(naive) < 0.05 < share(cal)
    both = lambda res: np.mean([{f"t{i}", f"i{i}"} <= {h.id for h in hs} for i, hs in zip(synth.test, res)])  # noqa: E731
    assert both(cal) > both(naive)
    # a fixed candidate depth (20): the top 5 of k=5 is the top 5 of k=15
    a = r.search_vectors(q[:20], k=5, gap="calibrated", fetch=False)
    b = r.search_vectors(q[:20], k=15, gap="calibrated", fetch=False)
    assert [[h.id for h in x] for x in a] == [[h.id for h in x[:5]] for x in b]


def test_min_prob_filters_and_needs_a_probability_corrector(synth) -> None:
    r = Retriever(synth.store)
    r.fit_gap("calibrated", _fresh(synth.data))
    q = synth.queries[synth.test[:30]]
    full = r.search_vectors(q, k=20, gap="calibrated", fetch=False)
    cut = r.search_vectors(q, k=20, gap="calibrated", fetch=False, min_prob=0.3)
    assert sum(map(len, cut)) < sum(map(len, full))
    assert all({h.id for h in c} <= {h.id for h in f} for c, f in zip(cut, full))
    nothing = _unit(np.random.default_rng(5).standard_normal((1, q.shape[1])))  # no topic of the store
    assert r.search_vectors(nothing, k=10, gap="calibrated", fetch=False, min_prob=0.3) == [[]]
    with pytest.raises(InputError, match="probability"):
        r.search_vectors(q, k=5, gap="naive", min_prob=0.3)


def test_fusion_baselines(synth) -> None:
    r = Retriever(synth.store)  # nothing to fit: usable without fit-gap
    q = synth.queries[synth.test[:10]]
    for gap in ("quota", "rrf"):
        for hs in r.search_vectors(q, k=10, gap=gap, fetch=False):
            assert sum(h.modality == Modality.IMAGE for h in hs) == 5
    sims = np.array([[0.9, 0.5, 0.1]])
    np.testing.assert_allclose(make_corrector("minmax").score(sims, "text", "text"), [[1, 0.5, 0]], atol=1e-5)
    db = make_corrector("dbsf").score(sims, "text", "text")
    mu, sd = sims.mean(), sims.std()
    np.testing.assert_allclose(db, (sims - (mu - 3 * sd)) / (6 * sd))
    np.testing.assert_allclose(make_corrector("rrf").score(sims, "text", "text"), 1 / (60 + np.array([[1, 2, 3]])),
                               atol=1e-8)


def test_qnorm_is_the_exact_per_query_zscore(synth) -> None:
    r = Retriever(synth.store)
    corr = r.fit_gap("qnorm")
    q = synth.queries[:3]
    sims = q @ synth.images.T
    z = corr.score_query(sims, q, Modality.TEXT, Modality.IMAGE)
    np.testing.assert_allclose(z, (sims - sims.mean(1, keepdims=True)) / sims.std(1, ddof=1, keepdims=True), atol=1e-3)


def test_auto_fit_from_the_stores_own_texts(synth) -> None:
    from mindgap.gap.auto import AUTO_NAME, corpus_queries, fit_auto, pseudo_query_text

    assert pseudo_query_text("Paris. The capital of France.  More.") == "Paris."
    assert pseudo_query_text("  ") is None
    st = ExactStore()
    st.add(synth.store.get([f"t{i}" for i in range(300)]), synth.texts)
    st.add(synth.store.get([f"i{i}" for i in range(300)]), synth.images)
    st.save_manifest(Manifest(encoder_spec="synthetic", dim=synth.texts.shape[1]))
    assert len(corpus_queries(st, n=50)) == 50

    class Enc:  # the passage "text" of item t{i} embeds as that passage's vector
        dim = synth.texts.shape[1]

        def encode_text(self, texts, show_progress=False):
            return np.stack([synth.texts[int(t.split()[-1])] for t in texts])

    r = Retriever(st)
    r._encoder = Enc()
    corr = fit_auto(r, n=200)
    assert corr is not None and r.manifest.default_gap == AUTO_NAME and corr.pairs_ == "pseudo"
    hits = r.search_vectors(synth.queries[synth.test[:20]], k=10, fetch=False)  # the default: auto
    assert any(h.modality == Modality.IMAGE for hs in hits for h in hs)
    r.manifest.default_gap = "zscore"  # a chosen default is kept on a refit
    fit_auto(r, n=200)
    assert r.manifest.default_gap == "zscore"


# -- real data: the offline model on the Flickr8k test mixed store -----------------------------------
@pytest.fixture(scope="module")
def real(flickr_embeddings, offline_encoder):
    te, ca = flickr_embeddings["test"], flickr_embeddings["calib"]
    store = ExactStore()
    store.add([Item(f"img:{i}", Modality.IMAGE, uri=str(r.path)) for i, r in zip(te["ids"], te["records"])],
              te["images"])
    store.add([Item(f"txt:{i}", Modality.TEXT, text=r.captions[0]) for i, r in zip(te["ids"], te["records"])],
              te["captions"][:, 0])
    retr = Retriever(store, encoder=offline_encoder)
    cc, ci = ca["captions"], ca["images"]
    q = np.concatenate([cc[:, 1], cc[:, 2], cc[:, 3], cc[:, 4]])
    data = FitData(queries=np.concatenate([q, q]), gold=np.concatenate([np.tile(ci, (4, 1)), np.tile(cc[:, 0], (4, 1))]),
                   gold_modality=np.array(["image"] * len(q) + ["text"] * len(q)), query_modality="text")
    retr.fit_gap("calibrated", FitData(**vars(data)))  # calib images only: never trained on, disjoint from test
    retr.fit_gap("calibrated:prior=1", FitData(**vars(data)))
    return SimpleNamespace(retr=retr, queries=te["captions"][:, 1], ids=te["ids"], enc=offline_encoder)


def test_calibration_holds_on_held_out_pairs(real) -> None:
    """Predicted P vs. observed relevance on the Flickr8k *test* queries (held out from the fit):
    per modality, the mean probability matches the share of relevant candidates and the
    expected calibration error is small (the committed diagram: docs/results/fusion/reliability.png)."""
    from mindgap.eval.fusion import reliability

    rel = [[f"img:{i}", f"txt:{i}"] for i in real.ids]
    # every test query has a relevant photo and passage in the store: prior π = 1 is the truth here
    out = reliability(real.retr, real.retr.gap("calibrated:prior=1"), real.queries, rel, depth=100)
    for m in ("text", "image"):
        o = out[m]
        assert o["ece"] < 0.03, o
        assert abs(o["mean_pred"] - o["observed"]) < 0.01, o
    # the shipped default (π = ½) is more cautious: never more confident than the evidence
    out = reliability(real.retr, real.retr.gap("calibrated"), real.queries, rel, depth=100)
    for m in ("text", "image"):
        assert out[m]["mean_pred"] <= out[m]["observed"] + 0.002, out[m]


ABSENT = ["a spreadsheet of quarterly tax revenue by county", "the chemical formula of sulfuric acid",
          "a violin concerto in D major by Tchaikovsky"]


def test_min_prob_returns_no_image_for_a_query_about_something_absent(real) -> None:
    q = real.enc.encode_text(ABSENT, show_progress=False)
    raw = real.retr.search_vectors(q, k=10, gap="calibrated", fetch=False)
    assert all(any(h.modality == Modality.IMAGE for h in hs) for hs in raw)  # without a cut-off: images
    cut = real.retr.search_vectors(q, k=10, gap="calibrated", fetch=False, min_prob=0.1)
    assert all(h.modality != Modality.IMAGE for hs in cut for h in hs), cut
    # the same cut-off keeps results for queries whose photo and passage *are* in the store
    present = real.retr.search_vectors(real.queries[:300], k=10, gap="calibrated", fetch=False, min_prob=0.1)
    texts = [any(h.id == f"txt:{i}" for h in hs) for i, hs in zip(real.ids, present)]
    assert np.mean(texts) > 0.3  # the relevant passage survives for many (how often: docs/results/fusion)
    kept = [h.id for hs in present for h in hs]
    assert np.mean([k.split(":", 1)[1] == i for hs, i in zip(present, real.ids) for k in (h.id for h in hs)]) > 0.15  # precision; chance 0.001
    assert kept


# -- out of the box: `mindgap index` fits 'auto'; CLI --min-prob; server min_prob ------------------
def _run(capsys, args: list[str]) -> tuple[int, str, str]:
    from mindgap.cli import main

    capsys.readouterr()
    rc = main(args)
    out = capsys.readouterr()
    return rc, out.out, " ".join(out.err.split())


def test_index_fits_auto_and_bare_search_returns_both_modalities(tmp_path, capsys, flickr_test, offline_encoder) -> None:
    import json

    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    recs = flickr_test[:40]
    kb = tmp_path / "kb.jsonl"
    with kb.open("w") as fh:
        for r in recs:
            fh.write(json.dumps({"id": f"img:{r.image_id}", "image": str(r.path)}) + "\n")
            fh.write(json.dumps({"id": f"txt:{r.image_id}", "text": r.captions[0]}) + "\n")
    store = f"exact:{tmp_path / 'store'}"
    assert _run(capsys, ["index", str(kb), "--store", store, "--no-progress"])[0] == 0
    rc, out, _ = _run(capsys, ["info", store, "--json"])
    info = json.loads(out)
    assert info["manifest"]["default_gap"] == "auto" and "auto" in info["gap_correctors"]
    shares = {}
    for gap in (None, "naive"):
        res = []
        for r in recs[:12]:
            rc, out, err = _run(capsys, ["search", store, r.captions[1], "-k", "10", "--json"]
                                + (["--gap", gap] if gap else []))
            assert rc == 0, err
            d = json.loads(out)
            assert d["gap"] == (gap or "auto")
            res.append([h["modality"] for h in d["hits"]])
        shares[gap] = np.mean([[m == "image" for m in x] for x in res])
        if gap is None:
            assert sum({"text", "image"} <= set(x) for x in res) >= 6  # most lists hold both modalities
    assert shares[None] > shares["naive"]
    # --min-prob: only with a probability corrector; a high cut-off leaves fewer results
    rc, _, err = _run(capsys, ["search", store, recs[0].captions[1], "--gap", "naive", "--min-prob", "0.2"])
    assert rc == 2 and "probability" in err
    rc, out, err = _run(capsys, ["search", store, ABSENT[0], "--min-prob", "0.5", "--json"])
    assert rc == 0, err and all(h["modality"] == "text" for h in json.loads(out)["hits"])
    # --no-auto-gap keeps the raw default
    store2 = f"exact:{tmp_path / 'store2'}"
    assert _run(capsys, ["index", str(kb), "--store", store2, "--no-progress", "--no-auto-gap"])[0] == 0
    assert json.loads(_run(capsys, ["info", store2, "--json"])[1])["manifest"]["default_gap"] == "naive"


def test_server_search_min_prob(offline_encoder, tmp_path) -> None:
    import httpx

    from _server_kit import calib_fit, copy_store
    from mindgap.server import create_app, serve_in_thread

    uri = copy_store(offline_encoder, tmp_path / "store")
    r = Retriever(uri, encoder=offline_encoder)
    r.fit_gap("calibrated", calib_fit(r))
    app = create_app(uri, encoder=offline_encoder, generator="extractive")
    with serve_in_thread(app) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        full = c.get("/search", params={"query": ABSENT[1], "k": 60, "gap": "calibrated"}).json()
        assert full["min_prob"] is None and full["counts"]["image"] > 0
        d = c.get("/search", params={"query": ABSENT[1], "k": 60, "gap": "calibrated", "min_prob": 0.1}).json()
        assert d["min_prob"] == 0.1 and len(d["hits"]) < len(full["hits"])
        assert {h["id"] for h in d["hits"]} <= {h["id"] for h in full["hits"]}
        d = c.get("/search", params={"query": ABSENT[1], "k": 60, "gap": "calibrated", "min_prob": 1}).json()
        assert d["hits"] == [] and d["counts"] == {"text": 0, "image": 0}  # P < 1 always
        bad = c.get("/search", params={"query": "a dog", "gap": "naive", "min_prob": 0.1})
        assert bad.status_code == 400 and "probability" in bad.text
        assert c.get("/search", params={"query": "a dog", "min_prob": 2}).status_code == 422
        page = c.get("/").text
        assert 'id="min-prob"' in page


def test_calibrated_fast_path_equals_the_general_one(synth) -> None:
    r = Retriever(synth.store)
    corr = r.fit_gap("calibrated", _fresh(synth.data))
    sims = np.sort(np.random.default_rng(3).uniform(-0.2, 0.9, (5, 40)), axis=1)[:, ::-1]
    for m in (Modality.TEXT, Modality.IMAGE):
        fast = corr.score_query(sims, synth.queries[:5], Modality.TEXT, m)
        shuffled = np.ascontiguousarray(sims[:, ::-1])  # unsorted rows take the general path
        slow = corr.score_query(shuffled, synth.queries[:5], Modality.TEXT, m)[:, ::-1]
        np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_calibrated_lists_scored_at_once_and_batched_equals_single(synth) -> None:
    """score_lists (the search path: a query's per-modality lists in one pass) gives score_query's
    floats; a batch of calibrated searches gives each query's single search exactly."""
    r = Retriever(synth.store)
    corr = r.fit_gap("calibrated", _fresh(synth.data))
    rng = np.random.default_rng(4)
    a, b = (np.sort(rng.uniform(-0.2, 0.9, (3, 20)), axis=1)[:, ::-1].astype(np.float32) for _ in range(2))
    q, T, I = synth.queries[:3], Modality.TEXT, Modality.IMAGE
    for n in (1, 3):
        lists = [(a[:n], q[:n], T, T), (b[:n], q[:n], T, I)]
        for got, job in zip(corr.score_lists(lists), lists):
            assert np.array_equal(got, corr.score_query(*job))
    batched = r.search_vectors(synth.queries[:8], k=10, gap="calibrated", fetch=False)
    single = [r.search_vectors(synth.queries[i : i + 1], k=10, gap="calibrated", fetch=False)[0] for i in range(8)]
    same_hits(batched, single)


def test_coverage_gain_counts_a_modality_the_store_likely_lacks_as_covered(synth) -> None:
    """cover_none (default): the gain is λ·log((S_j + N + ε)/(S_{j−1} + N + ε)), N = the list
    posterior's P(the store holds no relevant item of the modality) — a flat list (nothing likely
    relevant) gives its first candidate almost no gain, a peaked one keeps it; the same floats on
    the fast, general and single-query paths; prior = 1 (N = 0) and cover_none=false give the gain
    as first shipped, which a corrector saved without the parameter keeps."""
    r = Retriever(synth.store)
    new = r.fit_gap("calibrated", _fresh(synth.data), name="new")
    old = r.fit_gap("calibrated:cover_none=false", _fresh(synth.data), name="old")
    assert new.cover_none and not old.cover_none and new.calib_ == old.calib_
    T = Modality.TEXT  # (text → text: the toy's informative calibration)
    flat = 0.2 - 1e-4 * np.arange(20)[None, :]
    peaked = np.concatenate([[0.95], flat[0, 1:]])[None, :]
    for sims in (flat, peaked):
        p, none = new._posterior(sims, T, T)
        gain = 0.5 * np.log((np.cumsum(p) + none[0] + 0.01) / (np.cumsum(p) - p + none[0] + 0.01))
        np.testing.assert_allclose(new.score_query(sims, None, T, T)[0], p[0] + gain[0], rtol=1e-12)
        old_gain = 0.5 * np.log((np.cumsum(p) + 0.01) / (np.cumsum(p) - p + 0.01))
        np.testing.assert_allclose(old.score_query(sims, None, T, T)[0], p[0] + old_gain[0], rtol=1e-12)
        shuffled = np.ascontiguousarray(sims[:, ::-1])  # the general path (unsorted rows)
        np.testing.assert_allclose(new.score_query(shuffled, None, T, T)[:, ::-1], new.score_query(sims, None, T, T),
                                   rtol=1e-10)
        head = new.head_scorer(T, T)(sims[0].tolist(), 10)
        np.testing.assert_allclose(head, new.score_query(sims, None, T, T)[0, :10], rtol=1e-12)
    p_flat, n_flat = new._posterior(flat, T, T)
    p_peak, n_peak = new._posterior(peaked, T, T)
    assert n_flat[0, 0] > n_peak[0, 0] > 0
    first_gain = lambda c, sims, p: c.score_query(sims, None, T, T)[0, 0] - p[0, 0]
    assert first_gain(new, flat, p_flat) < 0.2 * first_gain(old, flat, p_flat)
    assert first_gain(new, peaked, p_peak) > 0.3  # a likely relevant candidate keeps a real gain
    # π = 1: no "store holds none" mass, the old gain
    sure = r.fit_gap("calibrated:prior=1", _fresh(synth.data), name="sure")
    sure_old = r.fit_gap("calibrated:prior=1,cover_none=false", _fresh(synth.data), name="sure-old")
    assert np.array_equal(sure.score_query(flat, None, T, T), sure_old.score_query(flat, None, T, T))
    # saved without the parameter (before it existed): the old gain; saved with it: kept
    d = new.to_dict()
    assert d["params"]["cover_none"] is True and corrector_from_dict(d).cover_none
    d["params"].pop("cover_none")
    assert corrector_from_dict(d).cover_none is False


def same_hits(a: list, b: list) -> None:
    """Two searches' results (hits, or their dicts): the same hits in the same order, every field equal, scores to
    rounding (a single query on the exact store scores in Python floats: Retriever._search_single)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        dx, dy = ([dict(h) if isinstance(h, dict) else h.to_dict() for h in hs] for hs in (x, y))
        sx, sy = [d.pop("score") for d in dx], [d.pop("score") for d in dy]
        assert dx == dy
        np.testing.assert_allclose(sx, sy, rtol=1e-12, atol=1e-15)


def _can_build_extensions() -> bool:
    """A C compiler and the Python headers: what the install needs to build the compiled head."""
    import shutil
    import sysconfig
    from pathlib import Path

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None and (Path(sysconfig.get_paths()["include"]) / "Python.h").is_file()


def test_compiled_head_is_built_and_gives_the_python_heads_floats(synth) -> None:
    """mindgap.gap._calibrated_head (built at install where a C compiler is): the Python head's
    floats, operation for operation, over fitted constants and edge cases (list longer than the
    stack buffer, k beyond the list, coverage off, no "none" mass, int scores); bad arguments raise
    TypeError, not a crash. Where a compiler exists the install must have built it."""
    import mindgap.gap.calibrated as cal

    if cal._compiled is None:
        assert not _can_build_extensions(), "a C compiler and Python.h are here but mindgap.gap._calibrated_head was not built"
        pytest.skip("no C compiler or Python headers: the Python head is used")
    head = cal._compiled.head
    r = Retriever(synth.store)
    T, I = Modality.TEXT, Modality.IMAGE
    rng = np.random.default_rng(3)
    # on Python >= 3.12 sum() of floats is compensated: the Python head may differ in the last bit
    rtol = 0 if sys.version_info < (3, 12) else 1e-14
    compared = 0
    for spec in ("calibrated", "calibrated:cover_none=false", "calibrated:coverage=0", "calibrated:prior=1"):
        corr = r.fit_gap(spec, _fresh(synth.data), name=spec)
        for m in (T, I):  # (the toy's fitting queries are texts)
            py, c = corr._head_scorer(T, m, compiled=False), corr.head_scorer(T, m)
            if py is None:
                continue
            compared += 1
            assert isinstance(c, functools.partial) and c.func is head
            for n in (1, 2, 20, 80):
                sims = np.sort(rng.uniform(-0.3, 0.9, n))[::-1].astype(np.float32).tolist()
                for k in (1, 10, 20, 100):
                    np.testing.assert_allclose(c(sims, k), py(sims, k), rtol=rtol, atol=0)
                    assert len(c(sims, k)) == min(k, n)
            assert c([], 10) == py([], 10) == []
    assert compared >= 4
    assert head(2.0, -1.0, -3.0, -math.inf, 20, 0.01, 0.5, [1, 0], 2) == \
        head(2.0, -1.0, -3.0, -math.inf, 20, 0.01, 0.5, [1.0, 0.0], 2)
    class Shrinks:  # __float__ empties the list being read: an error, not a read past its end
        def __init__(self, box: list) -> None:
            self.box = box

        def __float__(self) -> float:
            self.box.clear()
            return 0.5

    box: list = [0.9, 0.8]
    box.append(Shrinks(box))
    box.append(0.1)
    with pytest.raises(RuntimeError, match="changed size"):
        head(2.0, -1.0, -3.0, 0.0, 20, 0.01, 0.5, box, 4)
    for bad in [(2.0, -1.0, -3.0, 0.0, 0, 0.01, 0.5, [0.5], 1), (2.0, -1.0, -3.0, 0.0, 20, 0.01, 0.5, [0.5], -1)]:
        with pytest.raises(ValueError):
            head(*bad)
    for bad in [(1.0,) * 9, (2.0, -1.0, -3.0, 0.0, 20, 0.01, 0.5, [0.5, "x"], 2), (2.0, -1.0, -3.0, 0.0, 20, 0.01, 0.5, [0.5], "2"),
                (2.0, -1.0, -3.0, 0.0, 20, 0.01, 0.5, [0.5])]:
        with pytest.raises(TypeError):
            head(*bad)
    corr = r.gap("calibrated")
    corr.compiled_head = False  # (an instance may ask for the Python head: the benchmark times both)
    assert not isinstance(corr.head_scorer(T, T), functools.partial)


@pytest.mark.parametrize("gap", ["naive", "zscore", "calibrated:hub=0", "calibrated", "calibrated#python-head"])
def test_single_query_path_equals_the_general_path(gap, monkeypatch) -> None:
    """One query on the exact store takes Retriever._search_single (ExactStore.search_one, each
    modality's first k scored by the corrector's head_scorer): the general path's hits — ids,
    order, cosines, ranks; the same floats for naive and zscore, calibrated's to rounding — for
    k below, at and above calibrated's list depth, one modality or both, hub term or not. A
    batch, min_prob and other stores take the general path."""
    import mindgap.retriever as rmod

    ns = _hub_store()
    r = Retriever(ns.store)
    if gap != "naive":
        r.fit_gap(gap.split("#")[0], _fresh(ns.data), name=gap)
        if gap.startswith("calibrated"):
            r.gap(gap).compiled_head = not gap.endswith("#python-head")
    q = ns.queries[ns.test[:25]]
    taken = []
    real = ns.store.search_one

    def spy(*a, **kw):
        taken.append(a[2])
        return real(*a, **kw)

    monkeypatch.setattr(ns.store, "search_one", spy)
    for k in (1, 10, 30):
        for mod in (None, "image"):
            single = [r.search_vectors(q[i : i + 1], k=k, gap=gap, fetch=False, modality=mod)[0] for i in range(len(q))]
            assert len(taken) == len(q) * (1 if mod else 2)
            taken.clear()
            general = r.search_vectors(q, k=k, gap=gap, fetch=False, modality=mod)  # a batch: the general path
            assert not taken
            if gap in ("naive", "zscore"):
                assert [[h.to_dict() for h in hs] for hs in single] == [[h.to_dict() for h in hs] for hs in general]
            same_hits(single, general)
            assert all(len(hs) == k for hs in single) and any(h.modality == Modality.IMAGE for hs in single for h in hs)
    if gap.startswith("calibrated"):
        probs = r.search_vectors(q[:1], k=10, gap=gap, fetch=False, min_prob=0.0)
        assert not taken and [h.id for h in probs[0]] == [h.id for h in r.search_vectors(q[:1], k=10, gap=gap, fetch=False)[0]]
    monkeypatch.setattr(rmod.Retriever, "_search_single", lambda *a, **kw: None)
    same_hits([r.search_vectors(q[i : i + 1], k=10, gap=gap, fetch=False)[0] for i in range(5)],
              r.search_vectors(q[:5], k=10, gap=gap, fetch=False))


def test_single_query_path_follows_a_refit_under_the_same_name() -> None:
    """The single-query path keeps per-corrector state (each modality's RowTerms, the head
    scorers): refitting the name with and without the hubness term, the searches follow."""
    ns = _hub_store()
    r = Retriever(ns.store)
    q = ns.queries[ns.test[:6]]
    for spec in ("calibrated", "calibrated:hub=0", "calibrated"):
        corr = r.fit_gap(spec, _fresh(ns.data), name="c")
        assert corr.adjusts_items == (spec == "calibrated")
        single = [r.search_vectors(q[i : i + 1], k=10, gap="c", fetch=False)[0] for i in range(len(q))]
        same_hits(single, r.search_vectors(q, k=10, gap="c", fetch=False))
        assert r._row_term_fns["c"][0] is corr


# -- the hubness term (calibrated:hub) ----------------------------------------------------------
def _hub_store(tmp_path=None):
    """The toy gap plus 3 'hub' images: at the images' centroid tilted towards the texts', so they
    score high for every text query."""
    ns = toy_gap(tmp_path)
    hubs = _unit(0.4 * ns.texts.mean(0) + ns.images.mean(0)
                 + 0.05 * np.random.default_rng(7).standard_normal((3, ns.texts.shape[1])))
    ns.store.add([Item(f"hub{j}", Modality.IMAGE, uri=f"/img/hub{j}.jpg") for j in range(3)], hubs)
    ns.hubs = hubs
    return ns


def test_hub_term_is_the_mean_top_k_cosine_to_the_other_modality_and_batch_exact() -> None:
    ns = _hub_store()
    r = Retriever(ns.store)
    corr = r.fit_gap("calibrated", _fresh(ns.data))
    assert corr.hub == 0.5 and corr.hub_k == 10 and corr.adjusts_items
    assert set(corr.hub_ref_) == {"text", "image"}
    assert corr.hub_ref_["image"].shape == (300, 32)  # images are measured against the store's texts (≤ 500)
    x = np.concatenate([ns.images[:37], ns.hubs])
    off = corr.item_offsets(x, Modality.IMAGE)
    brute = 0.5 * np.sort(x @ corr.hub_ref_["image"].T, axis=1)[:, -10:].mean(1)
    np.testing.assert_allclose(off, brute, atol=1e-6)
    for a, b in ((0, 1), (0, 5), (3, 40)):  # an item's term does not depend on what else is in the batch
        assert np.array_equal(corr.item_offsets(x[a:b], Modality.IMAGE), off[a:b])
    assert off[-3:].min() > np.percentile(off[:-3], 95)  # the hubs carry the largest terms
    summ = corr.summary()["hub"]
    assert summ == {"weight": 0.5, "k": 10, "reference": {"text": 303, "image": 300}}


def test_hub_terms_are_kept_per_id_and_recomputed_for_another_vector(monkeypatch) -> None:
    import mindgap.gap.calibrated as cal

    ns = _hub_store()
    corr = Retriever(ns.store).fit_gap("calibrated", _fresh(ns.data), warm=False)  # the table starts empty
    assert corr.export_terms() == {} and corr.terms_computed() == 0
    x, ids = ns.images[:6], [f"i{j}" for j in range(6)]
    first = corr.item_offsets(x, Modality.IMAGE, ids=ids)
    assert np.array_equal(first, corr.item_offsets(x, Modality.IMAGE))
    calls = []
    monkeypatch.setattr(corr, "_hub_term", lambda v, ref: calls.append(len(v)) or cal.Calibrated._hub_term(corr, v, ref))
    assert np.array_equal(corr.item_offsets(x, Modality.IMAGE, ids=ids), first) and calls == []  # all kept
    swapped = corr.item_offsets(x[::-1], Modality.IMAGE, ids=ids)  # the same ids re-indexed with other vectors
    assert calls == [6] and np.array_equal(swapped, first[::-1])
    monkeypatch.setattr(cal, "HUB_CACHE_MAX", 8)
    corr.item_offsets(ns.images[10:14], Modality.IMAGE, ids=[f"i{j}" for j in range(10, 14)])
    assert len(corr._cache()[("hub terms", "image")].slot) <= 8  # bounded
    with pytest.raises(InputError, match="ids"):
        corr.item_offsets(x, Modality.IMAGE, ids=ids[:2])


def test_hub_terms_are_computed_once_per_store_saved_beside_it_and_kept_in_step(tmp_path, monkeypatch, caplog) -> None:
    """Fitting computes every item's term and saves the table beside the store; a new process
    loads it, so its searches compute none; indexed items get theirs at once (saved on close);
    a table that is unreadable or belongs to another fit is ignored (recomputed), never trusted."""
    import mindgap.gap.calibrated as cal
    from mindgap.gap.terms import terms_path
    from mindgap.stores import open_store

    ns = _hub_store(tmp_path / "kb")
    n_items = ns.store.count()
    r = Retriever(ns.store)
    corr = r.fit_gap("calibrated", _fresh(ns.data), name="cal")
    path = terms_path(ns.store.uri, "cal")
    assert path is not None and path.is_file() and path.parent == tmp_path / "kb" / "hubterms"
    assert corr.terms_computed() == n_items
    q = ns.queries[ns.test[:20]]
    want = [[h.to_dict() for h in hs] for hs in r.search_vectors(q, k=10, gap="cal", fetch=False)]
    assert corr.terms_computed() == n_items  # the searches looked every term up
    # the same ranking as terms computed during the search
    fresh = Retriever(ns.store).fit_gap("calibrated", _fresh(ns.data), name="cold", save=False, warm=False)
    assert fresh.term_key() == corr.term_key() and fresh.terms_computed() == 0
    r.close()

    def calls_of(c):
        seen = []
        monkeypatch.setattr(c, "_hub_term", lambda v, ref: seen.append(len(v)) or cal.Calibrated._hub_term(c, v, ref))
        return seen

    r2 = Retriever(open_store(ns.store.uri))
    c2 = r2.gap("cal")
    seen = calls_of(c2)
    assert sum(len(e[0]) for e in c2.export_terms().values()) == n_items  # loaded, not computed
    assert [[h.to_dict() for h in hs] for hs in r2.search_vectors(q, k=10, gap="cal", fetch=False)] == want
    assert seen == []
    new = _unit(ns.images[5] + 0.01)
    r2.add_embedded([Item("late", Modality.IMAGE, uri="/img/late.jpg")], new[None])
    assert seen == [1]  # the new item's term, computed as it was indexed
    r2.close()  # saves the grown table
    r3 = Retriever(open_store(ns.store.uri))
    assert calls_of(r3.gap("cal")) == [] and "late" in r3.gap("cal").export_terms()["image"][0]
    assert r3.warm_gap("cal") == {"known": n_items + 1, "computed": 0, "saved": 0}
    want = [[h.to_dict() for h in hs] for hs in r3.search_vectors(q, k=10, gap="cal", fetch=False)]
    r3.close()

    # an unreadable table: logged and ignored; the search is the same
    path.write_bytes(b"not a table")
    r4 = Retriever(open_store(ns.store.uri))
    c4 = r4.gap("cal")
    seen = calls_of(c4)
    assert c4.export_terms() == {}
    got = [[h.to_dict() for h in hs] for hs in r4.search_vectors(q, k=10, gap="cal", fetch=False)]
    assert got == want and seen  # recomputed
    assert r4.warm_gap("cal")["saved"] == n_items + 1  # warm_gap rewrites it
    r4.close()
    # a table of another fit (another reference sample) is not used
    r5 = Retriever(open_store(ns.store.uri))
    c5 = r5.fit_gap("calibrated:hub_ref=50", _fresh(ns.data), name="other", warm=False)
    assert c5.term_key() != corr.term_key()
    other = terms_path(ns.store.uri, "other")
    path.replace(other)
    r6 = Retriever(open_store(ns.store.uri))
    assert r6.gap("other").export_terms() == {}
    r5.close(), r6.close()


def test_hub_terms_rank_exactly_on_the_exact_store_and_follow_store_changes(monkeypatch) -> None:
    """The exact store ranks a modality by cosine − term over all its items (search_rows with the
    terms read by row; a single query: search_one), batch and single alike; a store without
    search_rows (here: the exact store above ROW_TERMS_MAX) takes the best HUB_FETCH × depth by
    cosine and re-ranks them, the terms looked up by id. Both follow items that come and go."""
    import mindgap.retriever as rmod

    ns = _hub_store()
    r = Retriever(ns.store)
    corr = r.fit_gap("calibrated", _fresh(ns.data), name="cal")
    # fitting (warm_gap) already built the row-aligned tables the searches read
    assert {("cal", "text"), ("cal", "image")} <= set(r._row_term_cache)
    q = ns.queries[ns.test[:30]]

    def brute(m, fetch=None):  # each query's 20 best by cosine − term (of its `fetch` best by cosine)
        ids, mat = ns.store.vectors(m)
        cos = (q @ mat.T).astype(np.float64)
        adj = cos - corr.item_offsets(mat, m)[None, :]
        out = []
        for qi in range(len(q)):
            cand = range(len(ids)) if fetch is None else sorted(range(len(ids)), key=lambda j: (-cos[qi, j], ids[j]))[:fetch]
            out.append([ids[j] for j in sorted(cand, key=lambda j: (-adj[qi, j], ids[j]))[:20]])
        return out

    def both():
        by_row = [[h.to_dict() for h in hs] for hs in r.search_vectors(q, k=10, gap="cal", fetch=False)]
        single = [[h.to_dict() for h in r.search_vectors(q[i : i + 1], k=10, gap="cal", fetch=False)[0]]
                  for i in range(3)]
        same_hits(single, by_row[:3])
        for m in (Modality.TEXT, Modality.IMAGE):
            got = r.dense_candidates(corr, "cal", q, Modality.TEXT, m, 20)[1]
            assert [[c[0] for c in lst] for lst in got] == brute(m)
        monkeypatch.setattr(rmod, "ROW_TERMS_MAX", 0)  # the ANN stores' path: fetch by cosine, re-rank
        by_id = [[h.to_dict() for h in hs] for hs in r.search_vectors(q, k=10, gap="cal", fetch=False)]
        for m in (Modality.TEXT, Modality.IMAGE):
            got = r.dense_candidates(corr, "cal", q, Modality.TEXT, m, 20)[1]
            assert [[c[0] for c in lst] for lst in got] == brute(m, fetch=rmod.HUB_FETCH * 20)
        monkeypatch.setattr(rmod, "ROW_TERMS_MAX", 200_000)
        return by_row, by_id

    first, first_by_id = both()
    assert first != first_by_id  # on this store an item below the 40 best by cosine makes a top 10
    assert ("cal", "image") in r._row_term_cache
    version, ids, _ = ns.store.rows(Modality.IMAGE)
    res, rows, v2 = ns.store.search_rows(q[:2], 40, Modality.IMAGE)
    assert v2 == version and res == ns.store.search(q[:2], 40, Modality.IMAGE)
    assert [[ids[j] for j in rr] for rr in rows] == [[i for i, _ in hits] for hits in res]
    # a new hub image, indexed through the retriever: its term is computed and the row table rebuilt
    r.add_embedded([Item("hub-late", Modality.IMAGE, uri="/img/late.jpg")], ns.hubs[:1] * 0.999 + 0.001)
    assert ns.store.rows(Modality.IMAGE)[0] > version
    after = both()
    assert after[0] != first and r._row_term_cache[("cal", "image")][0] == ns.store.rows(Modality.IMAGE)[0]
    assert r.delete(["hub-late"]) == 1
    assert both() == (first, first_by_id)


def test_unreadable_table_of_item_terms_is_logged(tmp_path, caplog) -> None:
    from mindgap.gap.terms import load_terms, save_terms

    ns = _hub_store()
    corr = Retriever(ns.store).fit_gap("calibrated", _fresh(ns.data))
    p = tmp_path / "t.npz"
    assert save_terms(corr, p) == ns.store.count()
    twin = Retriever(ns.store).fit_gap("calibrated", _fresh(ns.data), save=False, warm=False)
    assert load_terms(twin, p) == ns.store.count() and twin.terms_computed() == 0
    p.write_bytes(b"\x00garbage")
    with caplog.at_level("WARNING", logger="mindgap.gap.terms"):
        assert load_terms(twin, p) == 0
    assert "ignoring the table of item terms" in caplog.text and str(p) in caplog.text
    assert load_terms(twin, tmp_path / "absent.npz") == 0
    with pytest.raises(InputError, match="fingerprints"):
        twin.import_terms("image", ["a", "b"], np.zeros(1, np.int64), np.zeros(2))
    # ids of any text round-trip (stored as UTF-8 bytes and lengths, not fixed-width strings)
    from mindgap.gap.terms import _pack, _unpack

    odd = ["é", "日本/写真 1.jpg", "", "a\nb", "x" * 300, "🙂"]
    assert _unpack(*_pack(odd)) == odd
    blob, lengths = _pack(odd)
    with pytest.raises(ValueError, match="lengths"):
        _unpack(blob, lengths[:-1])


def test_hub_term_demotes_hub_images_and_keeps_raw_cosines_on_hits() -> None:
    ns = _hub_store()
    r = Retriever(ns.store)
    corr = r.fit_gap("calibrated", _fresh(ns.data), name="hub")
    r.fit_gap("calibrated:hub=0", _fresh(ns.data), name="nohub")
    q = ns.queries[ns.test[:60]]
    with_hub = r.search_vectors(q, k=10, gap="hub", fetch=False)
    without = r.search_vectors(q, k=10, gap="nohub", fetch=False)

    def hub_first(gap):  # queries whose best image is a hub
        return sum(hs[0].id.startswith("hub") for hs in r.search_vectors(q, k=1, gap=gap, fetch=False, modality="image"))

    def hub_listed(res):
        return sum(any(h.id.startswith("hub") for h in hs) for hs in res)

    assert hub_first("nohub") >= 20 and hub_first("hub") <= hub_first("nohub") // 2
    assert hub_listed(with_hub) <= hub_listed(without) - 15
    # each hit reports its raw cosine; within a modality the order is cosine − the item's term
    _, vec = ns.store.vectors(Modality.IMAGE)
    for qi, hs in enumerate(with_hub):
        for m in (Modality.TEXT, Modality.IMAGE):
            mh = [h for h in hs if h.modality == m]
            ids, v = ns.store.vectors(m, [h.id for h in mh])
            assert ids == [h.id for h in mh]
            np.testing.assert_allclose([h.cosine for h in mh], v @ q[qi], atol=1e-5)
            corrected = np.array([h.cosine for h in mh]) - corr.item_offsets(v, m)
            assert np.all(np.diff(corrected) <= 1e-6) and [h.modality_rank for h in mh] == list(range(1, len(mh) + 1))
    # the exact store ranks all items by cosine − term: the top 10 does not depend on k
    for kk in (20, 40):
        deeper = r.search_vectors(q[:20], k=kk, gap="hub", fetch=False)
        assert [[(h.id, h.score) for h in hs[:10]] for hs in deeper] == [[(h.id, h.score) for h in hs] for hs in with_hub[:20]]
    # the hybrid path and min_prob take the same corrected lists
    probs = r.search_vectors(q[:5], k=10, gap="hub", fetch=False, min_prob=0.0)
    assert [[h.id for h in hs] for hs in probs] == [[h.id for h in hs] for hs in with_hub[:5]]


def test_hub_state_persists_and_old_state_keeps_the_raw_cosine_behaviour(tmp_path) -> None:
    ns = _hub_store(tmp_path / "s.store")
    r = Retriever(ns.store)
    r.fit_gap("calibrated", _fresh(ns.data), name="hub")
    old = r.fit_gap("calibrated:hub=0", _fresh(ns.data), name="nohub")
    q = ns.queries[ns.test[:20]]
    want = r.search_vectors(q, k=10, gap="hub", fetch=False)
    again = Retriever(f"exact:{tmp_path / 's.store'}")
    assert again.gap("hub").adjusts_items
    assert [[(h.id, h.score) for h in hs] for hs in again.search_vectors(q, k=10, gap="hub", fetch=False)] == \
        [[(h.id, h.score) for h in hs] for hs in want]
    # a corrector saved before the hub option (no hub params, no reference) searches as it did
    d = old.to_dict()
    for key in ("hub", "hub_k", "hub_ref"):
        d["params"].pop(key)
    for key in ("hub_ref_", "calib0_"):
        d["state"].pop(key, None)
    legacy = corrector_from_dict(d)
    assert legacy.hub == 0.5 and not legacy.adjusts_items
    r._gaps["legacy"] = legacy
    assert [[(h.id, h.score) for h in hs] for hs in r.search_vectors(q, k=10, gap="legacy", fetch=False)] == \
        [[(h.id, h.score) for h in hs] for hs in r.search_vectors(q, k=10, gap="nohub", fetch=False)]


@pytest.mark.parametrize("spec, field", [("calibrated:hub=-1", "hub"), ("calibrated:hub_k=0", "hub_k"),
                                         ("calibrated:hub_ref=0", "hub_ref")])
def test_hub_options_are_checked(spec, field) -> None:
    with pytest.raises(InputError) as e:
        make_corrector(spec)
    assert e.value.item == field


def test_calibrated_in_a_chain_runs_without_the_hub_term(synth) -> None:
    ch = make_corrector("center+calibrated")
    assert [s.hub for s in ch.steps if s.name == "calibrated"] == [0.0]
