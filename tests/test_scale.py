"""Scale and speed features on real embeddings: ANN recall, batched = single, resumable ingestion.

The corpus is the bundled offline model's embeddings of real Flickr8k test images and captions,
grown to a few thousand items per modality as "real embedding plus noise" (as in
``benchmarks/search.py``) so that IVF / PQ indexes have enough rows to train. Speed itself is
measured in ``benchmarks/search.py``, never asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from mindgap import Retriever
from mindgap.stores import open_store
from mindgap.stores.exact import ExactStore
from mindgap.types import Item, Modality

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

pytest.importorskip("faiss")
pytest.importorskip("lancedb")
pytest.importorskip("milvus_lite")

#: Every ANN kind with its *default* parameters (what ``mindgap index --ann KIND`` gives).
ANN = {
    "faiss-hnsw": "faiss:{d}?index=hnsw",
    "faiss-ivf": "faiss:{d}?index=ivf",
    "faiss-ivfpq": "faiss:{d}?index=ivfpq&pq_bits=6",  # 8-bit codebooks need 10k rows to train
    "lancedb-ivfpq": "lancedb:{d}?index=ivfpq&pq_bits=4",  # LanceDB: 4 or 8 bits
    "lancedb-hnsw": "lancedb:{d}?index=hnsw",
    "milvus-hnsw": "milvus:{d}/kb.db?index=hnsw",
    "milvus-ivf": "milvus:{d}/kb.db?index=ivf&nlist=64",
}
N_TEXT, N_IMAGE = 4000, 2000




def grow(base: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.5) -> np.ndarray:
    """Real embeddings plus noise shaped like the modality's covariance (see benchmarks/search.py)."""
    w, v = np.linalg.eigh(np.cov(base, rowvar=False))
    x = base[rng.integers(0, len(base), n)] + noise * (rng.standard_normal((n, base.shape[1])) @ (v * np.sqrt(np.clip(w, 0, None))).T)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def real(flickr_embeddings):
    emb = flickr_embeddings["test"]  # the offline model's embeddings of Flickr8k test (cached on disk)
    recs = emb["records"][:100]
    img = emb["images"][:100]
    txt = emb["captions"][:100, :2].reshape(-1, emb["captions"].shape[-1])
    queries = [r.captions[2] for r in recs[:30]]
    q = np.ascontiguousarray(emb["captions"][:30, 2])
    rng = np.random.default_rng(0)
    vt, vi = grow(txt, N_TEXT, rng), grow(img, N_IMAGE, rng)
    items = ([Item(id=f"t{i:05d}", modality=Modality.TEXT, text=f"passage {i}") for i in range(N_TEXT)]
             + [Item(id=f"i{i:05d}", modality=Modality.IMAGE, uri=f"/img/{i}.jpg") for i in range(N_IMAGE)])
    vecs = np.concatenate([vt, vi])
    oracle = ExactStore()
    oracle.add(items, vecs)
    return {"items": items, "vecs": vecs, "q": q, "texts": queries, "oracle": oracle, "recs": recs}


def filled(uri: str, real) -> object:
    s = open_store(uri)
    for b in range(0, len(real["items"]), 1000):
        s.add(real["items"][b : b + 1000], real["vecs"][b : b + 1000])
    if hasattr(s, "build_index"):
        s.build_index()
    return s


def recall(got, truth) -> float:
    return float(np.mean([len({i for i, _ in g} & {i for i, _ in t}) / len(t) for g, t in zip(got, truth)]))


@pytest.mark.parametrize("name", list(ANN))
def test_ann_agrees_with_exact_search(name, real, tmp_path, offline_encoder):
    s = filled(ANN[name].format(d=tmp_path / "s"), real)
    q, oracle = real["q"], real["oracle"]
    for m in Modality:
        got, truth = s.search(q, 10, m), oracle.search(q, 10, m)
        assert recall(got, truth) >= 0.95, (name, m.value, recall(got, truth))
        _, mat = oracle.vectors(m)
        full = dict(zip(oracle.vectors(m)[0], mat))
        for qi, hits in enumerate(got):  # ANN picks the candidates; their cosines are exact
            assert all(abs(sc - float(full[i] @ q[qi])) < 1e-5 for i, sc in hits)
    # the gap-corrected merge over ANN candidates is exact with respect to them
    r, ex = Retriever(s, encoder=offline_encoder), Retriever(oracle, encoder=offline_encoder)
    data = ex.pseudo_pairs(q)
    r.fit_gap("zscore", data=data)
    ex.fit_gap("zscore", data=data)
    hits = r.search_vectors(q, k=10, gap="zscore", fetch=False)
    corr = r.gap("zscore")
    for qi, hs in enumerate(hits):
        cands = []
        for m in Modality:
            per = s.search(q[qi], 10, m)[0]
            sc = corr.score(np.array([[c for _, c in per]], np.float32), Modality.TEXT, m)[0]
            cands += [(float(z), i) for (i, _), z in zip(per, sc)]
        expect = [i for _, i in sorted(cands, key=lambda c: (-c[0], c[1]))[:10]]
        assert [h.id for h in hs] == expect
    exact_hits = ex.search_vectors(q, k=10, gap="zscore", fetch=False)
    merged = np.mean([len({h.id for h in a} & {h.id for h in b}) / 10 for a, b in zip(hits, exact_hits)])
    assert merged >= 0.95, (name, merged)
    s.close()


@pytest.mark.parametrize("uri", ["exact:", "faiss:{d}?index=hnsw", "lancedb:{d}", "milvus:{d}/kb.db?index=ivf"])
def test_batched_and_single_queries_agree(uri, real, tmp_path, offline_encoder):
    s = filled(uri.format(d=tmp_path / "s"), real)
    q = real["q"][:12]
    for m in Modality:
        assert s.search(q, 10, m) == [s.search(q[i], 10, m)[0] for i in range(len(q))]
    r = Retriever(s, encoder=offline_encoder)
    r.fit_gap("zscore", data=r.pseudo_pairs(q))
    for gap in ("naive", "zscore"):
        batched = r.search_vectors(q, k=10, gap=gap)
        single = [r.search_vectors(q[i : i + 1], k=10, gap=gap)[0] for i in range(len(q))]
        assert [[h.to_dict() for h in hs] for hs in batched] == [[h.to_dict() for h in hs] for hs in single]
    # end to end from query text: the batched encoder differs from one-at-a-time by float noise only
    texts = real["texts"][:12]
    many = r.search_many(texts, k=10, gap="zscore", batch_size=5)
    one = [r.search(t, k=10, gap="zscore") for t in texts]
    assert [[h.id for h in hs] for hs in many] == [[h.id for h in hs] for hs in one]
    np.testing.assert_allclose([[h.score for h in hs] for hs in many], [[h.score for h in hs] for hs in one],
                               atol=1e-4)
    s.close()


class Interrupted(Exception):
    pass


def stop_after(items, n):
    for i, it in enumerate(items):
        if i == n:
            raise Interrupted
        yield it


@pytest.mark.parametrize("uri", ["lancedb:{d}", "faiss:{d}?index=hnsw", "milvus:{d}/kb.db"])
def test_resumed_ingestion_equals_uninterrupted(uri, real, tmp_path, offline_encoder):
    recs = real["recs"][:20]
    items = [Item(id=f"img-{r.image_id}", modality=Modality.IMAGE, uri=str(r.path), text=r.captions[0])
             for r in recs] + [Item(id=f"cap-{r.image_id}-{i}", modality=Modality.TEXT, text=r.captions[i],
                                    metadata={"image": r.image_id}) for r in recs for i in (0, 1)]
    rng = np.random.default_rng(5)
    items = [items[i] for i in rng.permutation(len(items))]
    whole = Retriever(uri.format(d=tmp_path / "whole"), encoder=offline_encoder)
    rep = whole.index(items, batch_size=8, progress=False)
    assert sum(rep.added.values()) == len(items)
    part = Retriever(uri.format(d=tmp_path / "part"), encoder=offline_encoder)
    with pytest.raises(Interrupted):
        part.index(stop_after(items, 29), batch_size=8, progress=False)
    done = part.store.count()
    assert 0 < done < len(items) and done % 8 == 0  # whole batches only
    part.close()
    resumed = Retriever(uri.format(d=tmp_path / "part"), encoder=offline_encoder)
    rep = resumed.index(items, batch_size=8, progress=False)
    assert rep.already_present == done and sum(rep.added.values()) == len(items) - done
    a, b = whole.store, resumed.store
    assert a.count(Modality.TEXT) == b.count(Modality.TEXT) and a.count(Modality.IMAGE) == b.count(Modality.IMAGE)
    ids = [it.id for it in items]
    assert a.get(ids) == b.get(ids) == items
    for m in Modality:
        ia, va = a.vectors(m)
        ib, vb = b.vectors(m)
        da, db = dict(zip(ia, va)), dict(zip(ib, vb))
        assert set(da) == set(db)
        np.testing.assert_allclose(np.stack([da[i] for i in ia]), np.stack([db[i] for i in ia]), atol=1e-5)
    texts = real["texts"][:8]
    assert [[h.id for h in hs] for hs in whole.search_many(texts, k=5)] == \
        [[h.id for h in hs] for hs in resumed.search_many(texts, k=5)]
    assert whole.manifest.encoder_spec == resumed.manifest.encoder_spec
    whole.close()
    resumed.close()


def test_milvus_server_keeps_gap_correctors_with_the_data(milvus_server, real, offline_encoder):
    """Scale-out path: a Milvus server store; the fitted corrector lives in Milvus, so a second
    client (another machine, in production) gets the same zscore and the same results."""
    uri = f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_gap&index=hnsw"
    r = Retriever(uri, encoder=offline_encoder)
    for b in range(0, 3000, 1000):
        r.store.add(real["items"][b : b + 1000], real["vecs"][b : b + 1000])
    r.store.add(real["items"][N_TEXT : N_TEXT + 1000], real["vecs"][N_TEXT : N_TEXT + 1000])
    r.store.build_index()  # the server indexes in the background: settle it so both clients search one index
    q = real["q"]
    r.fit_gap("zscore", data=r.pseudo_pairs(q), make_default=True)
    first = r.search_vectors(q, k=10)
    r.close()
    other = Retriever(f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_gap")
    assert other.manifest.default_gap == "zscore" and other.store.uri == uri.replace(
        "?collection=kb_gap&index=hnsw", "?index=hnsw&collection=kb_gap")
    assert other.gap("zscore").to_dict() == r.gap("zscore").to_dict()
    again = other.search_vectors(q, k=10)
    assert [[(h.id, h.score) for h in hs] for hs in again] == [[(h.id, h.score) for h in hs] for hs in first]
    assert {h.modality for hs in again for h in hs} == set(Modality)  # zscore lets images in
    other.close()
