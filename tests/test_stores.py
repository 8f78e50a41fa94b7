"""One conformance suite over every VectorStore backend, with ExactStore as the oracle.

Exact backends must return the oracle's top-k (ids and cosines; exact float ties resolved by id);
ANN variants must reach a recall floor and return exact cosines. Everything else (add/skip,
delete, get, has, count, vectors, metadata, reopen, nasty ids, errors) is the same for all.
A SIGKILL test per persistent backend checks that a killed writer leaves whole batches only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pytest

from _qdrant_kit import emulate_qdrant_server

from mindgap.errors import MindgapError, SpecError, StoreError
from mindgap.manifest import Manifest
from mindgap.stores import list_stores, open_store
from mindgap.stores.base import INDEX_KEYS, split_uri
from mindgap.stores.exact import ExactStore
from mindgap.types import Item, Modality

pytestmark = pytest.mark.usefixtures("one_faiss_thread")

pytest.importorskip("faiss")
pytest.importorskip("lancedb")
pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")
pytest.importorskip("qdrant_client")

DIM = 48
NASTY = ["it's", 'say "hi"', "back\\slash", "trail\\", "new\nline", "tab\there", "ünï中文🙂", "a/b/../c",
         "x') OR 1=1 --", '" or id != "', "''", "%_*", "  spaced  ", "[1, 2]"]

#: name → URI template ({d} = a fresh directory); ANN variants are checked for recall, not identity.
EXACT = {
    "exact-mem": "exact:",
    "exact-dir": "exact:{d}",
    "faiss-mem": "faiss:",
    "faiss-flat": "faiss:{d}",
    "lancedb": "lancedb:{d}",
    "milvus-lite": "milvus:{d}/kb.db",
    "qdrant-local": "qdrant:{d}",
    # the server code path (URL, manifest in the meta collection, reader filters) against
    # qdrant-client's in-process engine standing in for a server: see `emulated_qdrant_server`
    "qdrant-server": "qdrant:http://127.0.0.1:6333?collection={col}",
}
ANN = {
    "faiss-hnsw": "faiss:{d}?index=hnsw&M=16",
    "faiss-ivf": "faiss:{d}?index=ivf&nlist=8&nprobe=4",
    "lancedb-ivf": "lancedb:{d}?index=ivf&nlist=8&nprobe=4",
    "milvus-hnsw": "milvus:{d}/kb.db?index=hnsw&M=16",
    "milvus-ivf": "milvus:{d}/kb.db?index=ivf&nlist=8&nprobe=4",
    "qdrant-hnsw": "qdrant:{d}?index=hnsw&M=16",
}
EXACT["milvus-server"] = "milvus:http://127.0.0.1:{port}?collection={col}"
PERSISTENT = ["exact-dir", "faiss-flat", "lancedb", "milvus-lite", "milvus-server", "qdrant-local"]


def uri_for(name: str, tmp_path: Path, request) -> str:
    tmpl = {**EXACT, **ANN}[name]
    if name == "qdrant-server":
        request.getfixturevalue("emulated_qdrant_server")
        return tmpl.format(col="t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[-150:])
    if "{port}" in tmpl:
        port = request.getfixturevalue("milvus_server")
        col = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[-150:]
        return tmpl.format(port=port, col=col)
    return tmpl.format(d=tmp_path / "store")




@pytest.fixture
def emulated_qdrant_server(monkeypatch):
    """``qdrant:http://...`` reaches qdrant-client's in-process engine (see ``_qdrant_kit``)."""
    with emulate_qdrant_server(monkeypatch) as seen:
        yield seen


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def corpus(n_text: int = 300, n_image: int = 150, seed: int = 0) -> tuple[list[Item], np.ndarray]:
    """Clustered vectors with a modality gap: each modality around its own offset."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((12, DIM))
    gap = {Modality.TEXT: rng.standard_normal(DIM) * 1.5, Modality.IMAGE: rng.standard_normal(DIM) * 1.5}
    items, vecs = [], []
    for m, n in ((Modality.TEXT, n_text), (Modality.IMAGE, n_image)):
        c = centers[rng.integers(0, len(centers), n)]
        vecs.append(unit(c + gap[m] + 0.6 * rng.standard_normal((n, DIM))))
        items += [Item(id=f"{m.value[0]}{i:04d}", modality=m, text=f"{m.value} {i}" if m == Modality.TEXT else None,
                       uri=f"/img/{i}.jpg" if m == Modality.IMAGE else None, metadata={"i": i, "m": m.value})
                  for i in range(n)]
    order = rng.permutation(len(items))  # batches mix modalities
    return [items[i] for i in order], np.concatenate(vecs)[order]


def queries(n: int = 12, seed: int = 1) -> np.ndarray:
    items, v = corpus(seed=seed)
    return v[:n]


def fill(store, items, vecs, batch: int = 64) -> int:
    return sum(store.add(items[s : s + batch], vecs[s : s + batch]) for s in range(0, len(items), batch))


def check_against_oracle(got, oracle: ExactStore, q: np.ndarray, k: int, modality, atol: float = 1e-5) -> None:
    """Same length and scores as the oracle; each id has (within atol) the score the oracle gives it."""
    want = oracle.search(q, k, modality)
    wide = oracle.search(q, k + 30, modality)  # ids tied at the k-th place may legitimately swap
    for g, w, big in zip(got, want, wide):
        assert len(g) == len(w)
        assert len({i for i, _ in g}) == len(g)
        scores = dict(big)
        for (gid, gs), (_, ws) in zip(g, w):
            assert abs(gs - ws) <= atol
            assert gid in scores and abs(scores[gid] - gs) <= atol


def _backend(request, tmp_path):
    name = request.param
    made = []
    default = uri_for(name, tmp_path, request)

    def make(uri: str | None = None):
        s = open_store(uri or default)
        made.append(s)
        return s

    make.name, make.ann, make.persistent = name, name in ANN, name not in ("exact-mem", "faiss-mem")
    yield make
    for s in made:
        s.close()


#: every backend and ANN variant (search, delete, reopen) ...
backend = pytest.fixture(params=list(EXACT) + list(ANN))(_backend)
#: ... or one per storage engine, for what an index kind cannot change (items, ids, errors)
storage = pytest.fixture(params=list(EXACT))(_backend)


@pytest.fixture(scope="module")
def data():
    items, vecs = corpus()
    oracle = ExactStore()
    fill(oracle, items, vecs)
    return items, vecs, oracle


def build(store) -> None:
    if hasattr(store, "build_index"):
        store.build_index()


# -- search -----------------------------------------------------------------------------------------
def test_search_matches_oracle(backend, data):
    items, vecs, oracle = data
    s = backend()
    assert fill(s, items, vecs) == len(items)
    build(s)
    q = queries()
    for m in Modality:
        assert s.count(m) == oracle.count(m)
        got = s.search(q, 10, m)
        for hits in got:  # exact cosines, best first, ties by id
            assert [h for h in hits] == sorted(hits, key=lambda h: (-h[1], h[0]))
            mods = {it.modality for it in s.get([i for i, _ in hits])}
            assert mods == {m}
        if backend.ann:
            truth = oracle.search(q, 10, m)
            recall = np.mean([len({i for i, _ in g} & {i for i, _ in t}) / 10 for g, t in zip(got, truth)])
            assert recall >= 0.9, (backend.name, m, recall)
            full = {i: v for i, v in zip(*oracle.vectors(m))}
            for qi, hits in enumerate(got):
                for iid, sc in hits:
                    assert abs(sc - float(full[iid] @ q[qi])) < 1e-5
        else:
            check_against_oracle(got, oracle, q, 10, m)
    # one query as a 1-d vector is a batch of one
    assert s.search(q[0], 5, "text") == s.search(q[:1], 5, "text")


def test_exact_ties_break_by_id(storage):
    s = storage()
    items, vecs = corpus(60, 20)
    fill(s, items, vecs)
    v = vecs[0].copy()
    dups = [Item(id=i, modality=Modality.TEXT) for i in ["dup-e", "dup-b", "dup-d", "dup-a", "dup-c"]]
    s.add(dups, np.stack([v] * 5))
    got = [i for i, _ in s.search(v, 4, Modality.TEXT)[0]]
    expect = sorted(["dup-a", "dup-b", "dup-c", "dup-d", "dup-e", items[0].id])[:4]
    assert got == expect


def test_rerank_sorts_like_score_then_id() -> None:
    """rerank / exact_search order candidates by an array sort: the same as a sort by (-cosine, id),
    exact ties (by id, whatever the row order) included; a query alone gets what it gets in a batch."""
    from mindgap.stores.base import exact_search, rerank

    rng = np.random.default_rng(5)
    vecs = unit(rng.normal(size=(50, 8))).astype(np.float32)
    vecs[[7, 30, 41]] = vecs[3]  # exact ties, ids not in row order
    ids = [f"x{(i * 37) % 50:02d}" for i in range(50)]
    q = unit(rng.normal(size=(6, 8))).astype(np.float32)
    q[0] = vecs[3]
    for qi in q:
        s = vecs @ qi
        want = sorted(((ids[i], float(s[i])) for i in range(50)), key=lambda h: (-h[1], h[0]))
        assert rerank(qi, ids, vecs, 10) == want[:10]
    batch = exact_search(q, vecs, 10, ids.__getitem__)
    assert batch == [exact_search(q[i : i + 1], vecs, 10, ids.__getitem__)[0] for i in range(len(q))]
    for hits in batch:
        assert len(hits) == 10 and hits == sorted(hits, key=lambda h: (-h[1], h[0]))
    assert [i for i, _ in batch[0][:4]] == sorted(ids[j] for j in (3, 7, 30, 41))
    dead = np.zeros(50, bool)
    dead[[3, 30]] = True
    got = exact_search(q[:1], vecs, 10, ids.__getitem__, dead)[0]
    assert [i for i, _ in got[:2]] == sorted(ids[j] for j in (7, 41)) and ids[3] not in dict(got)


def test_exact_search_one_is_search_for_one_query() -> None:
    """ExactStore.search_one (the retriever's single-query path) gives search's ids and floats —
    ties by id, k above the count, an empty modality, a NaN query — and with per-row terms the best
    ``depth`` by cosine − term over all rows, as search_rows and a brute force give."""
    from mindgap.stores.exact import ExactStore

    s = ExactStore()
    items, vecs = corpus(80, 40)
    s.add(items, vecs)
    dups = [Item(id=i, modality=Modality.TEXT) for i in ["dup-e", "dup-b", "dup-d", "dup-a"]]
    s.add(dups, np.stack([vecs[0]] * 4))
    q = queries(6)
    q[0] = vecs[0]
    for m in (Modality.TEXT, Modality.IMAGE):
        for k in (1, 4, 10, 500):
            for qi in q:
                ids, cos, scores = s.search_one(qi, k, m)
                assert list(zip(ids, cos)) == s.search(qi, k, m)[0] and scores == cos
    assert s.search_one(q[0], 3, "text")[0] == sorted(["dup-a", "dup-b", "dup-d", "dup-e", items[0].id])[:3]
    nan = q[1].copy()
    nan[0] = np.nan
    assert s.search_one(nan, 5, Modality.TEXT) == ([], [], []) and s.search(nan, 5, Modality.TEXT) == [[]]
    with pytest.raises(MindgapError, match="dim"):
        s.search_one(q[0][:5], 5, Modality.TEXT)
    with pytest.raises(MindgapError, match="one query"):
        s.search_one(q[:2], 5, Modality.TEXT)
    assert ExactStore().search_one(q[0], 5, Modality.IMAGE) == ([], [], [])
    # with terms: the best by cosine - term over all rows (ties by id): 12 scores, the first 5 named
    version, all_ids, mat = s.rows(Modality.IMAGE)
    table = np.random.default_rng(2).uniform(0, 0.3, len(all_ids))
    table[[3, 9]] = table[5]
    seen = []

    def terms(v, got_ids, got_mat):
        seen.append(v)
        assert got_ids is all_ids and got_mat is mat
        return table, table.astype(np.float32)

    for qi in q:
        ids, cos, adj = s.search_one(qi, 5, Modality.IMAGE, depth=12, terms=terms)
        c = (mat @ qi).astype(np.float64)
        want = sorted(range(len(all_ids)), key=lambda j: (-(c[j] - table[j]), all_ids[j]))[:12]
        assert ids == [all_ids[j] for j in want[:5]] and len(adj) == 12
        np.testing.assert_allclose(adj, [c[j] - table[j] for j in want], atol=1e-6)
        np.testing.assert_allclose(cos, [c[j] for j in want[:5]], atol=1e-6)
        res, rows, v = s.search_rows(qi, 12, Modality.IMAGE, terms=terms)
        assert res[0] == list(zip(ids + [all_ids[j] for j in rows[0][5:].tolist()], adj, cos + [h[2] for h in res[0][5:]]))
        assert [all_ids[j] for j in rows[0].tolist()] == [h[0] for h in res[0]] and v == version
    assert seen == [version] * 2 * len(q)
    assert s.search_one(nan, 5, Modality.IMAGE, terms=terms) == ([], [], [])


def test_k_larger_than_count_and_empty(storage):
    s = storage()
    q = queries(3)
    assert s.count() == 0 and s.search(q, 5, "text") == [[], [], []]
    items, vecs = corpus(7, 0)
    s.add(items, vecs)
    got = s.search(q, 50, Modality.TEXT)
    assert all(len(h) == 7 for h in got)
    assert s.search(q, 5, Modality.IMAGE) == [[], [], []]
    with pytest.raises(MindgapError):
        s.search(q, 0, "text")
    with pytest.raises(MindgapError):
        s.search(q, 3, "audio")


# -- add / delete / get / has / count / vectors ----------------------------------------------------
def test_duplicates_skipped_and_bad_input_refused(storage):
    s = storage()
    items, vecs = corpus(30, 10)
    assert s.add(items[:20], vecs[:20]) == 20
    assert s.add(items[:20], vecs[:20]) == 0
    assert s.add(items[10:], vecs[10:]) == 20
    assert s.count() == 40
    with pytest.raises(StoreError):
        s.add([Item(id="wrong-dim", modality=Modality.TEXT)], np.ones((1, DIM + 1), np.float32))
    with pytest.raises(MindgapError):
        s.add([Item(id="x", modality=Modality.TEXT)] * 2, np.ones((2, DIM), np.float32))
    with pytest.raises(MindgapError):
        s.add([Item(id="nan", modality=Modality.TEXT)], np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(MindgapError):
        s.search(np.ones((1, DIM + 2), np.float32), 3, "text")
    assert s.count() == 40 and not s.has(["wrong-dim", "x", "nan"])


def test_delete_get_has_count_vectors(backend, data):
    items, vecs, _ = data
    items, vecs = items[:120], vecs[:120]
    s, oracle = backend(), ExactStore()
    fill(s, items, vecs, 50)
    fill(oracle, items, vecs, 50)
    gone = [it.id for it in items[:30:3]]
    assert s.delete(gone + ["never-there"]) == len(gone) == oracle.delete(gone)
    assert s.delete(gone) == 0
    assert s.has(gone + [items[1].id]) == {items[1].id}
    assert s.get([gone[0], items[1].id, "never-there"])[0] is None
    assert s.get([items[1].id])[0] == items[1]
    q = vecs[:30:3]
    for m in Modality:
        assert s.count(m) == oracle.count(m)
        hits = s.search(q, 10, m)
        assert not {i for h in hits for i, _ in h} & set(gone)
        if not backend.ann:
            check_against_oracle(hits, oracle, q, 10, m)
        ids, mat = s.vectors(m)
        oids, omat = oracle.vectors(m)
        assert mat.dtype == np.float32 and mat.shape == omat.shape
        assert dict(zip(ids, map(tuple, mat))) == dict(zip(oids, map(tuple, omat)))
    some = [items[5].id, "never-there", items[2].id]
    ids, mat = s.vectors(Modality.TEXT, some)
    assert ids == [items[5].id, items[2].id]
    np.testing.assert_array_equal(mat, vecs[[5, 2]])
    assert s.count() == len(items) - len(gone)
    # deleted ids can come back
    back = [i for i, it in enumerate(items) if it.id == gone[0]]
    assert s.add([items[back[0]]], vecs[back]) == 1 and s.has([gone[0]])


def test_metadata_round_trip_and_nasty_ids(storage):
    s = storage()
    rng = np.random.default_rng(3)
    rich = [Item(id=i, modality=Modality.TEXT if n % 2 else Modality.IMAGE,
                 text=None if n % 3 == 0 else f"t «{i}»\n\"quoted\" 'single' \\ ∑",
                 uri=None if n % 2 else f"/images/{n} with space.jpg",
                 metadata={"n": n, "f": 0.1 + n, "nested": {"list": [1, "two", None, True]}, "ü": "✓"})
            for n, i in enumerate(NASTY)]
    v = unit(rng.standard_normal((len(rich), DIM)))
    assert s.add(rich, v) == len(rich)
    assert s.get(NASTY) == rich
    assert s.has(NASTY + ["it", "say"]) == set(NASTY)
    for it, row in zip(rich, v):
        assert s.search(row, 1, it.modality)[0][0][0] == it.id
    assert s.delete(NASTY[:5]) == 5
    assert s.has(NASTY) == set(NASTY[5:]) and s.count() == len(NASTY) - 5
    ids, mat = s.vectors(Modality.TEXT, NASTY)  # like the oracle: every id found, in the order asked
    assert ids == NASTY[5:] and mat.shape == (len(NASTY) - 5, DIM)


# -- persistence ------------------------------------------------------------------------------------
def test_reopen_keeps_everything(backend, data):
    if not backend.persistent:
        pytest.skip("in-memory store")
    items, vecs, oracle = data
    s = backend()
    fill(s, items, vecs, 100)
    s.delete([items[0].id, items[1].id])
    assert s.add(items[1:2], vecs[1:2]) == 1  # deleted, then back: must stay back after reopening
    m = Manifest(encoder_spec="test:enc", dim=DIM, gap={"zscore": {"mu": [0.5, 0.25]}}, sources=["unit"])
    s.save_manifest(m)
    q = queries(5)
    build(s)
    before = [s.search(q, 10, mm) for mm in Modality]
    uri = s.uri
    s.close()
    loc, query = split_uri(uri)
    plain = {k: v for k, v in query.items() if k not in INDEX_KEYS}
    r = backend(loc + ("?" + urlencode(plain) if plain else ""))  # index options are remembered
    assert r.uri == uri
    assert r.count() == len(items) - 1 and r.has([items[0].id, items[1].id]) == {items[1].id}
    assert r.manifest.to_dict() == {**m.to_dict(), "updated": r.manifest.updated}
    after = [r.search(q, 10, mm) for mm in Modality]
    if backend.ann:  # a server may re-cluster while sealing/compacting segments: recall, not identity
        ids = lambda res: [{i for i, _ in h} for per in res for h in per]  # noqa: E731
        assert np.mean([len(a & b) / 10 for a, b in zip(ids(after), ids(before))]) >= 0.9
    else:
        assert after == before
    assert r.get([items[3].id]) == [items[3]]
    assert r.add(items[:1], vecs[:1]) == 1


def test_unknown_options_and_registry(tmp_path):
    assert {"exact", "lancedb", "milvus", "faiss"} <= set(list_stores())
    with pytest.raises(SpecError):
        open_store(f"faiss:{tmp_path}/f?index=annoy")
    with pytest.raises(SpecError):
        open_store(f"lancedb:{tmp_path}/l?nlsit=4")
    with pytest.raises(SpecError):
        open_store(f"lancedb:{tmp_path}/l?index=ivfpq&pq_bits=6")
    with pytest.raises(SpecError):
        open_store(f"milvus:{tmp_path}/m.db?index=ivfpq")  # milvus-lite has no IVF_PQ
    with pytest.raises(SpecError):
        open_store(f"milvus:{tmp_path}/not-a-db-file")
    s = open_store(str(tmp_path / "bare"))  # a bare path is LanceDB
    assert s.uri.startswith("lancedb:")
    s.close()


# -- crash safety -----------------------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from mindgap.stores import open_store
    from mindgap.types import Item, Modality
    uri, start, kill_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = open_store(uri)
    if kill_at >= 0:  # die inside the batch, just before its commit point
        state = {"n": start}
        def die():
            if state["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        mod = type(store).__module__
        if mod.endswith(("milvus", "qdrant")):
            orig = store._set_meta
            store._set_meta = lambda k, v: (die() if k == "commit" else None, orig(k, v))[1]
        elif mod.endswith("lancedb"):
            orig = store._save_commit
            store._save_commit = lambda: (die(), orig())[1]
        else:
            real = os.replace
            def replace(a, b):
                if str(b).endswith(".npz"):
                    die()
                return real(a, b)
            os.replace = replace
    for b in range(start, start + 400):
        ids = [f"b{b:03d}-{i}" for i in range(10)]
        rng = np.random.default_rng(b)
        v = rng.standard_normal((10, 16)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        items = [Item(id=i, modality=Modality.TEXT if j % 3 else Modality.IMAGE, text=f"text of {i}",
                      metadata={"batch": b, "j": j}) for j, i in enumerate(ids)]
        if kill_at >= 0:
            state["n"] = b
        store.add(items, v)
        print(b, flush=True)
""")


def run_child(uri: str, start: int, kill_at: int = -1) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, uri, str(start), str(kill_at)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def check_whole_batches(uri: str) -> int:
    """Every stored batch is complete and intact; returns how many batches there are."""
    s = open_store(uri)
    try:
        n = s.count()
        assert n % 10 == 0, f"{n} items is not a whole number of batches"
        batches = n // 10
        ids = [f"b{b:03d}-{i}" for b in range(batches) for i in range(10)]
        assert s.has(ids) == set(ids), "batches must be the first ones, in order"
        got = s.get(ids)
        for b in range(batches):
            rng = np.random.default_rng(b)
            v = rng.standard_normal((10, 16)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            for j in range(10):
                it = got[b * 10 + j]
                assert it is not None and it.metadata == {"batch": b, "j": j} and it.text == f"text of {ids[b*10+j]}"
                assert s.search(v[j], 1, it.modality)[0][0][0] == it.id
        return batches
    finally:
        s.close()


@pytest.mark.parametrize("name", PERSISTENT)
def test_sigkill_leaves_whole_batches(name, tmp_path, request):
    uri = uri_for(name, tmp_path, request)
    # 1) die inside batch 3, after its data was written but before its commit point
    p = run_child(uri, 0, kill_at=3)
    out, err = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL, err
    assert out.split() == ["0", "1", "2"]
    assert check_whole_batches(uri) == 3
    # 2) resume, then SIGKILL at an arbitrary moment while it is adding batches
    p = run_child(uri, 3)
    seen = [p.stdout.readline().strip() for _ in range(4)]
    time.sleep(0.01 * (len(name) % 5))
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    n = check_whole_batches(uri)
    assert n >= 7, (n, seen)
    # 3) the store takes new batches after the crash
    s = open_store(uri)
    rng = np.random.default_rng(99)
    s.add([Item(id=f"after-{i}", modality=Modality.IMAGE) for i in range(10)], unit(rng.standard_normal((10, 16))))
    assert s.count() == 10 * n + 10
    s.close()
    assert open_store(uri).count() == 10 * n + 10


# -- Milvus server specifics ---------------------------------------------------------------------------
def test_milvus_server_manifest_travels_with_the_data(milvus_server):
    uri = f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_manifest&index=hnsw"
    s = open_store(uri)
    items, vecs = corpus(20, 10)
    s.add(items, vecs)
    big = Manifest(encoder_spec="test:enc", dim=DIM, gap={"linear": {"W": np.arange(40000.0).tolist()}})
    s.save_manifest(big)  # ~ 300 kB: several meta rows
    s.save_manifest(big)  # a second generation replaces the first
    s.close()
    other = open_store(f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_other")
    assert other.manifest is None and other.count() == 0  # collections are separate stores
    other.close()
    r = open_store(f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_manifest")
    assert r.manifest.gap == big.gap
    assert "index=hnsw" in r.uri and "collection=kb_manifest" in r.uri  # settings stored in Milvus too
    rows = r.client.query(r.meta_col, filter='key like "manifest%"', output_fields=["key"])
    gens = {x["key"].split(".")[1] for x in rows if x["key"] != "manifest"}
    assert len(gens) == 1 and len(rows) > 3  # old generation deleted
    r.close()


def test_milvus_server_readers_never_see_half_a_batch(milvus_server):
    uri = f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_debris"
    w = open_store(uri)
    items, vecs = corpus(20, 10)
    w.add(items, vecs)
    # what a writer killed between its two partition inserts leaves: rows of an uncommitted batch
    w.client.insert(w.col, [{"id": "half", "modality": "text", "batch": w._wm + 1, "text": None, "uri": None,
                             "metadata": "{}", "vector": vecs[0].tolist()}], partition_name="text")
    w.client.close()  # ... and dies: no clean close()
    r = open_store(uri)
    assert r.count() == 30 and not r.has(["half"]) and r.get(["half"]) == [None]
    assert "half" not in {i for i, _ in r.search(vecs[0], 5, "text")[0]}
    raw = lambda st, i: st.client.query(st.col, filter=f'id == "{i}"', output_fields=["id"])  # noqa: E731
    assert raw(r, "half")  # still there: a reader must not delete what may be another writer's batch
    r.add([Item(id="next", modality=Modality.TEXT)], vecs[:1])  # a writer clears it first
    assert not raw(r, "half") and r.count() == 31
    # an insert of a killed writer that reaches the server only now (same batch number as it
    # had) stays invisible: its numbers were aborted, and new batches use fresh ones
    late = [{"id": "late", "modality": "text", "batch": w._wm + 1, "text": None, "uri": None,
             "metadata": "{}", "vector": vecs[1].tolist()}]
    r.client.insert(r.col, late, partition_name="text")
    r.add([Item(id="next2", modality=Modality.TEXT)], vecs[2:3])
    assert r.count() == 32 and not r.has(["late"])
    r.close()
    again = open_store(uri)
    assert again.count() == 32 and not again.has(["late"]) and again.has(["next", "next2"]) == {"next", "next2"}
    again.close()


def test_foreign_tables_are_not_touched(tmp_path):
    import lancedb
    import pyarrow as pa

    db = lancedb.connect(str(tmp_path / "l"))
    db.create_table("text", data=pa.table({"id": ["a"], "vector": [[0.0, 1.0]]}))
    with pytest.raises(StoreError):
        open_store(f"lancedb:{tmp_path / 'l'}")
    assert db.open_table("text").count_rows() == 1
    s = open_store(f"milvus:{tmp_path}/m.db?collection=kb")
    s.close()
    from pymilvus import DataType, MilvusClient

    c = MilvusClient(uri=f"{tmp_path}/m.db")
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    c.create_collection("theirs", schema=schema)
    c.close()
    from milvus_lite import server_manager_instance

    server_manager_instance.release_server(f"{tmp_path}/m.db")
    with pytest.raises(StoreError):
        open_store(f"milvus:{tmp_path}/m.db?collection=theirs")
    two = [open_store(f"milvus:{tmp_path}/m.db?collection=kb") for _ in range(2)]
    two[0].close()
    assert two[1].count() == 0  # the other store in this process still works
    two[1].close()


@pytest.mark.parametrize("name", ["lancedb", "milvus-lite", "faiss-flat", "qdrant-local"])
def test_failed_batch_leaves_nothing(name, tmp_path, monkeypatch):
    """A batch whose second write fails (disk full, server gone) is not half-committed later."""
    s = open_store(EXACT[name].format(d=tmp_path / "store"))
    items, vecs = corpus(20, 10)
    s.add(items[:10], vecs[:10])
    mixed = items[10:]
    assert {it.modality for it in items[:10]} == {it.modality for it in mixed} == set(Modality)
    if name == "lancedb":  # fail the second of the batch's two table writes
        target, attr, fail_at = type(s._tables[Modality.TEXT]), "add", 2
    elif name == "milvus-lite":  # ... of its two partition inserts
        target, attr, fail_at = type(s.client), "insert", 2
    elif name == "qdrant-local":  # ... of its two collection upserts
        target, attr, fail_at = type(s.client), "upsert", 2
    else:  # ... its one segment file (the segment writer the store's module calls)
        target, attr, fail_at = sys.modules[type(s).__module__], "write_segment", 1
    real, calls = getattr(target, attr), []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) == fail_at:
            raise OSError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(target, attr, flaky)
    with pytest.raises(OSError):
        s.add(mixed, vecs[10:])
    monkeypatch.setattr(target, attr, real)
    assert s.count() == 10 and not s.has([it.id for it in mixed])
    s.add(items[:12], vecs[:12])  # the next batch commits only itself
    assert s.count() == 12
    s.close()
    r = open_store(EXACT[name].format(d=tmp_path / "store"))
    assert r.count() == 12 and r.has([it.id for it in mixed]) == {it.id for it in items[10:12]}
    r.close()


def test_milvus_server_second_writer_keeps_the_first_ones_batches(milvus_server):
    uri = f"milvus:http://127.0.0.1:{milvus_server}?collection=kb_two_writers"
    items, vecs = corpus(20, 10)
    a = open_store(uri)
    a.add(items[:10], vecs[:10])
    b = open_store(uri)  # opened (as a reader) while a still writes
    a.add(items[10:20], vecs[10:20])
    a.close()
    b.add(items[20:], vecs[20:])  # b's first write must not take a's batch for debris
    assert b.count() == 30 and b.has([it.id for it in items]) == {it.id for it in items}
    b.close()


def test_milvus_server_unreachable_is_a_clear_error(monkeypatch):
    """No server on the port: a StoreError naming the address (after the retries), no traceback."""
    import mindgap.stores.milvus as mv
    from mindgap.server.threaded import free_port

    pytest.importorskip("pymilvus")
    monkeypatch.setattr(mv, "SERVER_CONNECT_TRIES", 1)  # each try waits pymilvus' 10 s
    port = free_port()  # released again: nothing listens there
    with pytest.raises(StoreError, match=rf"cannot open Milvus .*127\.0\.0\.1:{port} running and reachable"):
        open_store(f"milvus:http://127.0.0.1:{port}?collection=nobody")
