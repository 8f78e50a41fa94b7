"""Gap correctors on a synthetic gapped world: fitting, exact search, persistence, chains, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mindgap.errors import InputError, NotFittedError, SpecError
from mindgap.gap import FitData, GapCorrector, corrector_from_dict, make_corrector
from mindgap.gap.base import _from_jsonable, _jsonable
from mindgap.manifest import Manifest
from mindgap.retriever import Retriever
from mindgap.stores.exact import ExactStore
from mindgap.types import Item, Modality

T, I = Modality.TEXT, Modality.IMAGE
ALL = ["naive", "zscore", "center", "standardize", "distnorm", "linear", "linear:procrustes", "modal-clf",
       "linear+zscore", "center+zscore", "modal-clf+linear", "distnorm:lam=0.5"]


def l2(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class World:
    """n concepts; images, text passages and text queries of a concept share its direction, but
    images sit on one side of a gap and texts on the other. Query i's gold is image i (ImageQ)
    for even i, passage i (TextQ) for odd i. Queries asking for an image also carry a "visual"
    direction, so a classifier can learn the gold modality."""

    def __init__(self, n: int = 300, d: int = 32, gap: float = 6.0, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        fixed = np.random.default_rng(1234)  # the same gap / rotation for every world
        g = fixed.normal(size=d)
        self.gap = gap * g / np.linalg.norm(g)
        self.rot, _ = np.linalg.qr(fixed.normal(size=(d, d)))
        self.visual = fixed.normal(size=d)
        c = rng.normal(size=(n, d))
        self.image = l2(c + self.gap + 0.3 * rng.normal(size=(n, d)))
        self.text = l2(c - self.gap + 0.3 * rng.normal(size=(n, d)))
        self.gold_mod = np.where(np.arange(n) % 2 == 0, "image", "text")
        vis = np.where(self.gold_mod == "image", 1.0, -1.0)[:, None] * 0.5 * self.visual
        self.query = l2(c - self.gap + 0.3 * rng.normal(size=(n, d)) + vis)
        self.gold = np.where((self.gold_mod == "image")[:, None], self.image, self.text)

    def fit_data(self, pairs: str = "gold") -> FitData:
        return FitData(queries=self.query, gold=self.gold, gold_modality=self.gold_mod, query_modality="text",
                       corpus={"text": self.text, "image": self.image}, pairs=pairs)

    def store(self) -> ExactStore:
        st = ExactStore()
        n = len(self.image)
        st.add([Item(f"img{i:04d}", I, uri=f"/x/{i}.jpg") for i in range(n)], self.image)
        st.add([Item(f"txt{i:04d}", T, text=f"passage {i}") for i in range(n)], self.text)
        st.save_manifest(Manifest(encoder_spec="test:synthetic", dim=self.image.shape[1]))
        return st

    def golds(self) -> list[str]:
        return [f"{'img' if m == 'image' else 'txt'}{i:04d}" for i, m in enumerate(self.gold_mod)]


@pytest.fixture(scope="module")
def fitted() -> dict[str, GapCorrector]:
    data = World(seed=1).fit_data()
    return {spec: make_corrector(spec).fit(data) for spec in ALL}


def recall(retr: Retriever, w: World, gap: str, k: int = 10) -> dict[str, float]:
    hits = retr.search_vectors(w.query, T, k=k, gap=gap, fetch=False)
    ok = np.array([g in {h.id for h in hs} for g, hs in zip(w.golds(), hits)])
    return {"ImageQ": float(ok[w.gold_mod == "image"].mean()), "TextQ": float(ok[w.gold_mod == "text"].mean())}


def test_specs_build_the_right_correctors():
    assert make_corrector("linear:procrustes").kind == "procrustes"
    assert make_corrector("linear:ols,ridge=2").ridge == 2.0 and make_corrector("linear:procrustes").ridge == 0.0
    assert make_corrector("distnorm:lam=0.5").lam == 0.5
    assert make_corrector("zscore", min_pairs=3).min_pairs == 3
    assert make_corrector("modal-clf:bert=/some/dir").bert == "/some/dir"
    assert make_corrector(" linear + zscore ").spec == "linear + zscore"
    with pytest.raises(SpecError, match="unknown gap corrector"):
        make_corrector("bogus")
    with pytest.raises(SpecError, match="no option"):
        make_corrector("center:lam=1")
    with pytest.raises(SpecError, match="bad option"):
        make_corrector("center:procrustes")
    with pytest.raises(InputError, match="unknown map kind"):
        make_corrector("linear:mlp")
    with pytest.raises(InputError, match="at most one score-level"):
        make_corrector("zscore+linear+zscore")
    with pytest.raises(InputError, match="at most one routing"):
        make_corrector("modal-clf+modal-clf")


@pytest.mark.parametrize("spec", [s for s in ALL if s != "naive"])
def test_unfitted_correctors_raise_not_fitted(spec):
    c = make_corrector(spec)
    q = World(n=4).query
    hooks = [lambda: c.prepare_query(q, T, I), lambda: c.transform_items(q, I),
             lambda: c.score(np.zeros((1, 3), np.float32), T, I), lambda: c.route(q, T)]
    raised = 0
    for hook in hooks:  # every hook the corrector uses refuses; identity hooks may pass
        try:
            hook()
        except NotFittedError as exc:
            raised += 1
            assert "not fitted" in str(exc) or "no " in str(exc)
    assert raised >= 1


def test_naive_is_identity(fitted):
    w = World(n=10)
    c = fitted["naive"]
    assert c.prepare_query(w.query, T, I) is w.query and c.route(w.query, T) is None
    assert np.array_equal(c.score(np.ones((1, 2)), T, I), np.ones((1, 2)))


def test_corpus_only_fitting_works_for_statistics_and_is_refused_for_pair_methods():
    w = World(seed=2)
    corpus_only = FitData(corpus={"text": w.text, "image": w.image})
    for spec in ("center", "standardize", "distnorm"):
        c = make_corrector(spec).fit(corpus_only)
        assert set(c.query_source_.values()) == {"corpus"}  # queries fall back to the corpus of their modality
    for spec in ("zscore", "linear", "modal-clf", "center+linear"):
        with pytest.raises(InputError, match="pairs"):
            make_corrector(spec).fit(corpus_only)
    with pytest.raises(InputError, match="corpus"):
        make_corrector("center").fit(FitData())
    with pytest.raises(InputError, match="pseudo"):
        make_corrector("modal-clf").fit(w.fit_data(pairs="pseudo"))
    text_gold = FitData(queries=w.query, gold=w.text, gold_modality=np.array(["text"] * len(w.query)))
    with pytest.raises(InputError, match="same-modality"):
        make_corrector("linear").fit(text_gold)
    with pytest.raises(InputError, match="both modalities"):
        make_corrector("modal-clf").fit(text_gold)


def test_center_standardize_distnorm_follow_their_formulas(fitted):
    w = World(n=20, seed=5)
    c, s, d = fitted["center"], fitted["standardize"], fitted["distnorm"]
    assert c.query_source_["text"] == "queries" and c.query_source_["image"] == "corpus"
    assert c.transforms_items and s.transforms_items and d.transforms_items
    assert np.allclose(c.transform_items(w.image, I), l2(w.image - c.item_mean_["image"]), atol=1e-6)
    assert np.allclose(c.prepare_query(w.query, T, I), l2(w.query - c.query_mean_["text"]), atol=1e-6)
    z = (w.image - s.item_mean_["image"]) / s.item_std_["image"]
    assert np.allclose(s.transform_items(w.image, I), l2(z), atol=1e-5)
    dq, dx = d.prepare_query(w.query, T, I), d.transform_items(w.image, I)
    mq, mx = d.query_mean_["text"], d.item_mean_["image"]
    expect = w.query @ w.image.T - 0.25 * (w.query @ mx)[:, None] - 0.25 * (w.image @ mq)[None, :] + 0.0625 * mq @ mx
    assert np.allclose(dq @ dx.T, expect, atol=1e-5)
    # statistics come from the fitting data: the image mean is the corpus mean
    assert np.allclose(c.item_mean_["image"], World(seed=1).image.mean(0), atol=1e-6)


def test_zscore_linear_and_modal_clf_learn_what_they_should(fitted):
    w = World(seed=1)
    z = fitted["zscore"].stats_["text"]
    cos = np.sum(w.query * w.gold, axis=1)
    assert z["image"][0] == pytest.approx(cos[w.gold_mod == "image"].mean(), abs=1e-6)
    assert z["text"][1] == pytest.approx(cos[w.gold_mod == "text"].std(ddof=1), abs=1e-6)
    p = fitted["linear:procrustes"].linear_map(T, I)
    assert np.allclose(p.W_.T @ p.W_, np.eye(32), atol=1e-4)
    assert set(fitted["linear"].maps_) == {"text->image", "image->text"}  # pairs reversed serve image queries
    back = fitted["linear"].prepare_query(w.image, I, T)
    own_text = np.mean(np.sum(back * w.query, axis=1)[w.gold_mod == "image"])
    assert own_text > np.mean(np.sum(w.image * w.query, axis=1)[w.gold_mod == "image"]) + 0.3
    image_queries = make_corrector("linear").fit(FitData(queries=w.image[:50], gold=w.text[:50],
                                                         gold_modality=np.array(["text"] * 50), query_modality="image"))
    assert set(image_queries.maps_) == {"image->text", "text->image"}
    with pytest.raises(InputError, match="too few cross-modal pairs"):
        make_corrector("linear").fit(FitData(queries=w.image[:4], gold=w.text[:4],
                                             gold_modality=np.array(["text"] * 4), query_modality="image"))
    assert np.array_equal(fitted["linear"].prepare_query(w.query[:3], T, T), w.query[:3])
    # mapped queries land near their own image (before: the gap)
    mapped = fitted["linear"].prepare_query(w.query, T, I)
    assert np.mean(np.sum(mapped * w.image, axis=1)) > np.mean(np.sum(w.query * w.image, axis=1)) + 0.3
    pred = fitted["modal-clf"].predict(World(seed=7).query, T)
    acc = np.mean([p.value == m for p, m in zip(pred, World(seed=7).gold_mod)])
    assert acc > 0.9
    assert fitted["modal-clf"].clf_["text"]["classes"] == ["image", "text"]


def test_search_is_exact_top_k_under_the_corrected_score(fitted):
    """Per-modality top-k + merge == ranking every item by the corrector's full score."""
    w = World(seed=3)
    retr = Retriever(w.store(), encoder=None)
    for spec in ("zscore", "linear", "center", "distnorm", "linear+zscore", "modal-clf", "standardize"):
        c = fitted[spec]
        retr._gaps[spec] = c
        hits = retr.search_vectors(w.query[:40], T, k=7, gap=spec, fetch=False)
        routes = c.route(w.query[:40], T)
        for qi, hs in enumerate(hits):
            cands = []
            for m, mat, pre in ((T, w.text, "txt"), (I, w.image, "img")):
                if routes is not None and m not in routes[qi]:
                    continue
                x = c.transform_items(mat, m) if c.transforms_items else mat
                sc = c.score(c.prepare_query(w.query[qi : qi + 1], T, m) @ x.T, T, m)[0]
                cands += [(float(s), f"{pre}{j:04d}") for j, s in enumerate(sc)]
            cands.sort(key=lambda t: (-t[0], t[1]))
            assert [h.id for h in hs] == [i for _, i in cands[:7]], spec
            assert np.allclose([h.score for h in hs], [s for s, _ in cands[:7]], atol=1e-4)


def test_correctors_bring_back_the_gapped_modality(fitted):
    w = World(seed=4)
    retr = Retriever(w.store(), encoder=None)
    retr._gaps.update(fitted)
    r = {spec: recall(retr, w, spec) for spec in fitted}
    assert r["naive"]["ImageQ"] < 0.05 and r["naive"]["TextQ"] > 0.8  # the gap: texts first
    for spec in ("zscore", "center", "standardize", "linear+zscore", "modal-clf"):
        assert r[spec]["ImageQ"] > 0.5, (spec, r[spec])
    # modal-clf routes each query to one modality only
    hits = retr.search_vectors(w.query[:20], T, k=5, gap="modal-clf", fetch=False)
    assert all(len({h.modality for h in hs}) == 1 for hs in hits)


def test_pseudo_pairs_fit_zscore_without_labels(fitted):
    w = World(seed=6)
    retr = Retriever(w.store(), encoder=None)
    data = retr.pseudo_pairs(w.query, T)
    assert data.pairs == "pseudo" and len(data.queries) == 2 * len(w.query)
    z = make_corrector("zscore").fit(data)
    assert z.pairs_ == "pseudo" and set(z.stats_["text"]) == {"text", "image"}
    retr._gaps["zp"] = z
    retr._gaps["naive"] = fitted["naive"]
    assert recall(retr, w, "zp")["ImageQ"] > recall(retr, w, "naive")["ImageQ"] + 0.3


@pytest.mark.parametrize("spec", ALL)
def test_persistence_round_trip_through_the_manifest_json(fitted, tmp_path, spec):
    c = fitted[spec]
    m = Manifest(encoder_spec="test:synthetic", dim=32, gap={spec: c.to_dict()})
    m.save(tmp_path / "manifest.json")
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw["gap"][spec]["name"] == c.name
    back = corrector_from_dict(Manifest.load(tmp_path / "manifest.json").gap[spec])
    assert type(back) is type(c) and back.get_params() == c.get_params()
    assert back.transforms_items == c.transforms_items
    w = World(n=30, seed=8)
    for tgt in (T, I):
        assert np.array_equal(back.prepare_query(w.query, T, tgt), c.prepare_query(w.query, T, tgt))
        assert np.array_equal(back.transform_items(w.image, tgt), c.transform_items(w.image, tgt))
        sims = w.query @ w.image.T
        assert np.array_equal(back.score(sims, T, tgt), c.score(sims, T, tgt))
    assert back.route(w.query, T) == c.route(w.query, T)


def test_fitted_correctors_persist_through_a_store_and_are_reloaded(tmp_path):
    w = World(seed=9)
    st = ExactStore(tmp_path / "kb")
    st.add([Item(f"img{i:04d}", I, uri=f"/x/{i}.jpg") for i in range(len(w.image))], w.image)
    st.add([Item(f"txt{i:04d}", T, text=f"p {i}") for i in range(len(w.text))], w.text)
    st.save_manifest(Manifest(encoder_spec="test:synthetic", dim=32))
    retr = Retriever(st)
    for spec in ("linear+zscore", "center", "linear:procrustes"):
        retr.fit_gap(spec, w.fit_data())
    before = {s: retr.search_vectors(w.query[:10], T, k=5, gap=s, fetch=False) for s in ("linear+zscore", "center")}
    again = Retriever(ExactStore(tmp_path / "kb"))
    assert set(again.manifest.gap) == {"linear+zscore", "center", "linear:procrustes"}
    assert again.gap("linear:procrustes").kind == "procrustes"
    for s, hits in before.items():
        after = again.search_vectors(w.query[:10], T, k=5, gap=s, fetch=False)
        assert [[h.id for h in hs] for hs in after] == [[h.id for h in hs] for hs in hits]
    with pytest.raises(InputError, match="not fitted for this store"):
        again.gap("standardize")


def test_chain_composes_left_to_right_and_fits_later_steps_on_transformed_data(fitted):
    from mindgap.gap.chain import Chain

    w = World(seed=1)
    ch = Chain([make_corrector("linear"), make_corrector("zscore")], cv_folds=0).fit(w.fit_data())
    lin, z = ch.steps
    assert ch.needs_pairs and not ch.transforms_items and fitted["center+zscore"].transforms_items
    mapped = lin.prepare_query(w.query, T, I)
    cos_img = np.sum(mapped * w.image, axis=1)[w.gold_mod == "image"]
    assert z.stats_["text"]["image"][0] == pytest.approx(cos_img.mean(), abs=1e-5)  # zscore on mapped cosines
    assert z.stats_["text"]["image"][0] > fitted["zscore"].stats_["text"]["image"][0]
    assert np.array_equal(ch.prepare_query(w.query, T, I), mapped)
    sims = np.linspace(-1, 1, 5)[None, :].astype(np.float32)
    assert np.array_equal(ch.score(sims, T, I), z.score(sims, T, I))
    cz = fitted["center+zscore"]
    assert np.allclose(cz.transform_items(w.image, I), cz.steps[0].transform_items(w.image, I))
    mc = fitted["modal-clf+linear"]
    assert mc.route(w.query, T) == mc.steps[0].route(w.query, T)
    nested = make_corrector("center+zscore")
    assert [s.name for s in Chain([nested, make_corrector("modal-clf")]).steps] == ["center", "zscore", "modal-clf"]


def test_large_arrays_are_stored_bit_exact_and_compact():
    a = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    j = _jsonable({"W_": a, "small": np.arange(3, dtype=np.float32)})
    assert "__ndarray_b64__" in j["W_"] and "__ndarray__" in j["small"]
    back = _from_jsonable(json.loads(json.dumps(j)))
    assert np.array_equal(back["W_"], a) and back["W_"].dtype == np.float32
    assert np.array_equal(back["small"], np.arange(3, dtype=np.float32))


def _tiny_bert(path, labels=("text", "image")):
    torch = pytest.importorskip("torch")
    tr = pytest.importorskip("transformers")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + "a the dog cat photo of what is who image text on".split()
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = tr.BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    cfg = tr.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, num_labels=2,
                        id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)})
    torch.manual_seed(0)
    tr.BertForSequenceClassification(cfg).save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


def test_modal_clf_bert_loads_a_fine_tuned_classifier_and_routes_on_query_text(tmp_path):
    d = _tiny_bert(tmp_path / "bert")
    c = make_corrector(f"modal-clf:bert={d}").fit(FitData())
    assert c.uses_query_text and c.labels_ == {"0": "text", "1": "image"}
    q = np.zeros((3, 32), np.float32)
    texts = ["what is on the photo", "who is the dog", "a cat"]
    routes = c.route(q, T, texts=texts)
    assert len(routes) == 3 and all(len(r) == 1 and r[0] in (T, I) for r in routes)
    with pytest.raises(InputError, match="query text"):
        c.route(q, T)
    back = corrector_from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.route(q, T, texts=texts) == routes
    with pytest.raises(NotFittedError):
        make_corrector(f"modal-clf:bert={d}").route(q, T, texts=texts)
    # through the retriever: the query strings reach the router, hits come from one modality
    w = World(n=40, seed=2)
    retr = Retriever(w.store(), encoder=None)
    retr._gaps["clf"] = c
    hits = retr.search_vectors(w.query[:3], T, k=5, gap="clf", fetch=False, texts=texts)
    assert [{h.modality for h in hs} for hs in hits] == [set(r) for r in routes]
    bad = _tiny_bert(tmp_path / "bad", labels=("LABEL_0", "LABEL_1"))
    with pytest.raises(InputError, match="not 'text' or 'image'"):
        make_corrector(f"modal-clf:bert={bad}").fit(FitData())
    with pytest.raises(InputError, match="config.json"):
        make_corrector(f"modal-clf:bert={tmp_path / 'nothing'}").fit(FitData())


def test_chain_cross_fits_pair_fitted_steps_so_later_statistics_match_new_queries():
    """An OLS map fits its own 40 pairs far better than new queries; zscore after it must see
    out-of-fold cosines (what search will see), not the in-sample ones."""
    from mindgap.gap.chain import Chain
    from mindgap.gap.linear import Linear
    from mindgap.gap.zscore import ZScore

    small = World(n=60, seed=11)
    oof = Chain([Linear(ridge=0.0), ZScore()], cv_folds=5).fit(small.fit_data())
    insample = Chain([Linear(ridge=0.0), ZScore()], cv_folds=0).fit(small.fit_data())
    new = World(n=300, seed=12)
    mapped = oof.steps[0].prepare_query(new.query, T, I)
    truth = float(np.mean(np.sum(mapped * new.image, axis=1)[new.gold_mod == "image"]))
    mu_oof, mu_in = oof.steps[1].stats_["text"]["image"][0], insample.steps[1].stats_["text"]["image"][0]
    assert mu_in > truth + 0.05  # in-sample: optimistic
    assert abs(mu_oof - truth) < abs(mu_in - truth) / 2
    assert np.array_equal(oof.steps[0].linear_map(T, I).W_, insample.steps[0].linear_map(T, I).W_)
    back = corrector_from_dict(json.loads(json.dumps(oof.to_dict())))
    assert back.cv_folds == 5 and back.spec == oof.spec


def test_fit_checked_names_the_spec_on_numerical_failure() -> None:
    """A singular fit (LinAlgError/ValueError from numpy) becomes one clear InputError naming the
    spec, for Retriever.fit_gap and portable.fit_corrector alike; mindgap's own errors pass through."""
    import numpy as np
    import pytest

    from mindgap.errors import InputError, NotFittedError
    from mindgap.gap.base import fit_checked

    class Boom:
        def __init__(self, exc: Exception) -> None:
            self.exc = exc

        def fit(self, data):  # noqa: ANN001
            raise self.exc

    with pytest.raises(InputError, match="cannot fit 'linear'"):
        fit_checked(Boom(np.linalg.LinAlgError("singular matrix")), None, "linear")
    with pytest.raises(NotFittedError):
        fit_checked(Boom(NotFittedError("x")), None, "linear")
