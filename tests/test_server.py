"""The HTTP API against a real uvicorn server on 127.0.0.1 (real store, real offline model)."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from _server_kit import N_IMAGES, copy_store, png_bytes, store_records  # noqa: E402

from mindgap.types import Hit, Modality  # noqa: E402

HIT_KEYS = set(Hit("x", Modality.TEXT, 0.0, 0.0).to_dict()) | {"image_url"}


@pytest.fixture(scope="module")
def server(offline_encoder, tmp_path_factory):
    from mindgap.server import create_app, serve_in_thread

    uri = copy_store(offline_encoder, tmp_path_factory.mktemp("srv") / "store")
    app = create_app(uri, encoder=offline_encoder, generator="extractive")
    with serve_in_thread(app) as srv:
        srv.app = app
        srv.uri = uri
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def recs():
    return store_records()


def test_health_stats_and_schema(client):
    assert client.get("/healthz").json()["status"] == "ok"
    s = client.get("/stats").json()
    assert s["counts"] == {"text": 2 * N_IMAGES, "image": N_IMAGES}
    assert {"naive", "zscore"} <= set(s["gap_correctors"]) and s["default_gap"] == "zscore"
    assert s["server"]["memory_rss_mb"] > 0
    spec = client.get("/openapi.json").json()
    for path in ["/embed/text", "/embed/image", "/similarity", "/search", "/ask", "/caption", "/items",
                 "/items/{item_id}/image", "/healthz", "/stats"]:
        assert path in spec["paths"], path
    assert client.get("/docs").status_code == 404  # Swagger UI needs a CDN: off


def test_embed_text_matches_encoder_and_batches_concurrent_requests(client, server, offline_encoder, recs):
    texts = [r.captions[0] for r in recs[:24]]
    direct = offline_encoder.encode_text(texts, show_progress=False)
    before = server.app.state.mg.batcher.stats()

    def one(i):
        r = client.post("/embed/text", json={"texts": [texts[i], texts[(i + 1) % 24]]})
        assert r.status_code == 200, r.text
        return i, np.array(r.json()["embeddings"], np.float32)

    with cf.ThreadPoolExecutor(12) as ex:
        got = list(ex.map(one, range(24)))
    for i, emb in got:  # every request gets its own rows back, whatever batch it rode in
        assert emb.shape == (2, offline_encoder.dim)
        np.testing.assert_allclose(emb[0], direct[i], atol=1e-5)
        np.testing.assert_allclose(emb[1], direct[(i + 1) % 24], atol=1e-5)
    after = server.app.state.mg.batcher.stats()
    calls = after["encoder_calls"] - before["encoder_calls"]
    reqs = after["requests"] - before["requests"]
    assert reqs == 24 and calls < reqs, (calls, reqs)  # concurrent requests shared encoder calls


def test_embed_image_upload_matches_encoder(client, offline_encoder, recs):
    files = [("image", (f"{r.image_id}.jpg", r.path.read_bytes(), "image/jpeg")) for r in recs[:2]]
    r = client.post("/embed/image", files=files)
    assert r.status_code == 200, r.text
    d = r.json()
    emb = np.array(d["embeddings"], np.float32)
    np.testing.assert_allclose(emb, offline_encoder.encode_image([x.path for x in recs[:2]], show_progress=False),
                               atol=1e-5)
    assert d["names"] == [f"{x.image_id}.jpg" for x in recs[:2]] and d["dim"] == emb.shape[1]


def test_similarity_matched_pairs_on_the_diagonal(client, recs):
    sel = recs[:4]
    r = client.post("/similarity", data={"text": [x.captions[2] for x in sel]},
                    files=[("image", (f"{x.image_id}.jpg", x.path.read_bytes())) for x in sel])
    assert r.status_code == 200, r.text
    d = r.json()
    sim = np.array(d["cosine"])
    assert sim.shape == (4, 4) and d["row_modality"] == "text" and d["col_modality"] == "image"
    assert (sim.argmax(axis=1) == np.arange(4)).sum() >= 3  # the model finds most matched pairs
    r = client.post("/similarity", data={"text": ["a dog", "a puppy", "a skyscraper"]})
    tt = np.array(r.json()["cosine"])
    assert tt.shape == (3, 3) and np.allclose(np.diag(tt), 1, atol=1e-4) and tt[0, 1] > tt[0, 2]


def test_search_shape_and_same_as_python_api(client, server, offline_encoder):
    from mindgap.retriever import Retriever

    q = "two children playing in the water"
    d = client.get("/search", params={"query": q, "k": 7, "gap": "zscore"}).json()
    assert d["gap"] == "zscore" and d["k"] == 7 and len(d["hits"]) == 7
    for h in d["hits"]:
        assert set(h) == HIT_KEYS
        assert (h["image_url"] is not None) == (h["modality"] == "image")
        assert h["uri"] is None  # server file paths never leave the server
    assert any(h["modality"] == "image" for h in d["hits"])
    ref = Retriever(server.uri, encoder=offline_encoder).search(q, k=7, gap="zscore")
    assert [h["id"] for h in d["hits"]] == [h.id for h in ref]
    np.testing.assert_allclose([h["score"] for h in d["hits"]], [h.score for h in ref], atol=1e-5)
    assert d["counts"]["image"] + d["counts"]["text"] == 7


def test_zscore_surfaces_images_that_naive_buries(client, recs):
    """The product's point, over HTTP: queries are unseen captions of the stored images."""
    share, hit = {}, {}
    sel = recs[:24]
    for gap in ("naive", "zscore"):
        imgs, found = 0, 0
        for x in sel:
            d = client.get("/search", params={"query": x.captions[4], "k": 5, "gap": gap}).json()
            imgs += d["counts"]["image"]
            found += any(h["id"] == f"img:{x.image_id}" for h in d["hits"])
        share[gap], hit[gap] = imgs / (5 * len(sel)), found / len(sel)
    print(f"image share of top-5: {share}; own image in top-5: {hit}")
    assert share["zscore"] > share["naive"] + 0.2, share
    assert hit["zscore"] > hit["naive"], hit


def test_search_by_image_and_modality_filter(client, recs):
    x = recs[3]
    r = client.post("/search", files={"image": ("q.jpg", x.path.read_bytes(), "image/jpeg")},
                    data={"k": "5", "gap": "naive"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["query"] == {"modality": "image", "name": "q.jpg"}
    assert d["hits"][0]["id"] == f"img:{x.image_id}" and d["hits"][0]["cosine"] > 0.999
    d = client.get("/search", params={"query": "a dog", "k": 6, "modality": "image"}).json()
    assert d["modality"] == "image" and {h["modality"] for h in d["hits"]} == {"image"}
    r = client.post("/search", data={"query": "a dog in the snow", "k": "3"})  # form-encoded text query
    assert r.status_code == 200 and len(r.json()["hits"]) == 3


def test_item_image_is_served_by_id(client, recs):
    d = client.get("/search", params={"query": "a dog", "modality": "image", "k": 1}).json()
    h = d["hits"][0]
    r = client.get(h["image_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    iid = h["id"].split(":", 1)[1]
    assert r.content == next(x for x in recs if x.image_id == iid).path.read_bytes()
    assert client.get("/items/img%3Anope/image").json()["error"]["code"] == "not_found"
    r = client.get(f"/items/txt:{recs[0].image_id}:0/image")
    assert r.status_code == 404 and "not an image" in r.json()["error"]["message"]


def test_ask_extractive_cites_sources(client):
    r = client.post("/ask", json={"question": "What is the dog carrying in its mouth?", "k": 8, "gap": "naive"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["generator"] == "extractive" and a["answer"]
    texts = [s["text"] for s in a["sources"] if s["modality"] == "text"]
    assert any(a["answer"].rstrip(" .") in t for t in texts)  # extractive: a span of a retrieved text
    assert all((s["image_url"] is not None) == (s["modality"] == "image") for s in a["sources"])
    assert all(s.get("uri") is None for s in a["sources"])
    nr = client.post("/ask", json={"question": "What is the dog carrying?", "no_rag": True}).json()
    assert nr["no_rag"] is True and nr["sources"] == []


def test_ask_streams_server_sent_events(client):
    import json

    q = {"question": "What is the dog carrying in its mouth?", "k": 8, "gap": "naive"}
    plain = client.post("/ask", json=q).json()
    with client.stream("POST", "/ask", json=dict(q, stream=True)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [(b.split("\n")[0].removeprefix("event: "), json.loads(b.split("\n")[1].removeprefix("data: ")))
              for b in raw.strip().split("\n\n")]
    deltas = [d["text"] for e, d in events if e == "delta"]
    assert [e for e, _ in events] == ["delta"] * len(deltas) + ["answer"] and len(deltas) > 1
    final = events[-1][1]
    assert "".join(deltas) == final["answer"] == plain["answer"]
    assert [s["id"] for s in final["sources"]] == [s["id"] for s in plain["sources"]]
    assert all(s.get("uri") is None for s in final["sources"])
    bad = client.post("/ask", json={"question": "  ", "no_rag": True, "stream": True})
    assert bad.status_code == 400 and bad.headers["content-type"].startswith("application/json")


def test_items_add_get_search_delete(client, server, recs):
    img = recs[0].path.read_bytes()
    body = {"items": [
        {"id": "new:text", "modality": "text", "text": "A purple giraffe reads a newspaper on the moon .",
         "metadata": {"by": "test"}},
        {"id": "new:image", "modality": "image", "image_base64": base64.b64encode(img).decode(), "text": "a photo"},
    ]}
    r = client.post("/items", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["added"] == {"text": 1, "image": 1} and d["durable"] is True and d["ids"] == ["new:text", "new:image"]
    assert client.post("/items", json=body).json()["already_present"] == 2  # idempotent retry
    got = client.get("/items/new:text").json()
    assert got["text"].startswith("A purple giraffe") and got["metadata"] == {"by": "test"}
    d = client.get("/search", params={"query": "A purple giraffe reads a newspaper on the moon", "k": 1,
                                      "modality": "text"}).json()
    assert d["hits"][0]["id"] == "new:text"
    im = client.get("/items/new:image/image")
    assert im.status_code == 200 and im.content == img
    assert client.delete("/items/new:text").json() == {"deleted": 1, "id": "new:text"}
    assert client.get("/items/new:text").status_code == 404
    assert client.delete("/items/new:text").json()["error"]["code"] == "not_found"
    client.delete("/items/new:image")


def test_items_refuse_paths_and_bad_items_atomically(client):
    before = client.get("/stats").json()["counts"]
    r = client.post("/items", json={"items": [{"id": "p", "modality": "image", "uri": "/etc/passwd"}]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/items", json={"items": [
        {"id": "ok", "modality": "text", "text": "fine"},
        {"id": "bad", "modality": "image", "image_base64": base64.b64encode(b"GIF89a-not-really").decode()}]})
    assert r.status_code == 400 and r.json()["error"]["item"] == "items[1].image_base64"
    assert client.get("/stats").json()["counts"] == before  # all or nothing
    assert client.get("/items/ok").status_code == 404


def test_caption_not_configured_is_clear(client):
    r = client.post("/caption", files={"image": ("x.png", png_bytes())})
    assert r.status_code == 404 and r.json()["error"]["code"] == "caption_not_configured"
    assert "--caption-model" in r.json()["error"]["message"]


def test_caption_with_a_model(offline_encoder, tmp_path, flickr_dir):
    from mindgap.caption.map import fit_caption_model
    from mindgap.datasets import load_caption_set
    from mindgap.server import create_app, serve_in_thread

    train = load_caption_set(flickr_dir, split="val")[:40]
    fit_caption_model(train, offline_encoder, data="flickr8k_224", split="val").save(tmp_path / "cap")
    app = create_app(None, encoder=offline_encoder, caption_model=str(tmp_path / "cap"), generator="extractive")
    x = store_records()[5]
    with serve_in_thread(app) as srv:
        r = httpx.post(srv.url + "/caption", files={"image": ("q.jpg", x.path.read_bytes())}, timeout=60)
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        assert res["caption"] and len(res["retrieved"]) == 5 and res["image"] == "q.jpg"
        assert httpx.get(srv.url + "/healthz").json()["status"] == "degraded"  # no store, captions still work


def test_classify(client, recs):
    x = next(r for r in recs if " dog " in f" {r.captions[0].lower()} ")
    r = client.post("/classify", files=[("image", ("a.jpg", x.path.read_bytes()))] * 2,
                    data={"label": ["dog", "car", "building"], "k": "2"})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 2 and res[0]["labels"] == ["dog", "car", "building"]
    probs = dict(zip(res[0]["labels"], res[0]["probs"]))
    assert abs(sum(probs.values()) - 1) < 1e-4 and probs["dog"] > probs["car"]
    r = client.post("/classify", files={"image": ("a.jpg", x.path.read_bytes())}, data={"label": "dog"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_input"  # one label: nothing to choose
    r = client.post("/classify", files={"image": ("a.jpg", x.path.read_bytes())},
                    data={"label": "dog,cat", "template": "no placeholder"})
    assert r.status_code == 400


def test_ground(client, recs):
    r = client.post("/ground", files={"image": ("a.jpg", recs[0].path.read_bytes())},
                    data={"phrase": "the dog", "overlay": "true"})
    assert r.status_code == 200, r.text
    d = r.json()["results"][0]
    assert d["overlay_png"].startswith("data:image/png;base64,") and d["phrase"] == "the dog"
    assert 0 <= d["best"] < 9 and len(d["ranking"]) == 9
    r = client.post("/ground", files={"image": ("a.jpg", recs[0].path.read_bytes())},
                    data={"phrase": "the dog", "regions": "grid:0x0"})
    assert r.status_code == 400, r.text


def test_moderate(client, recs):
    r = client.post("/moderate", files={"image": ("a.jpg", recs[0].path.read_bytes())})
    assert r.status_code == 200, r.text
    d = r.json()["results"][0]
    assert isinstance(d["flagged"], bool) and 0 <= d["unsafe_probability"] <= 1


def test_short_load_smoke_no_errors(client, server, recs):
    """A few seconds of concurrent mixed traffic: every request succeeds, batching kicks in."""
    stop = time.monotonic() + 2.0
    qs = [x.captions[3] for x in recs]

    def worker(i):
        n = 0
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while time.monotonic() < stop:
                r = c.get("/search", params={"query": qs[(i + n) % len(qs)], "k": 10})
                assert r.status_code == 200, r.text
                n += 1
        return n

    before = server.app.state.mg.batcher.stats()
    with cf.ThreadPoolExecutor(12) as ex:
        done = sum(ex.map(worker, range(12)))
    after = server.app.state.mg.batcher.stats()
    assert done >= 12
    assert after["requests"] - before["requests"] >= done
    assert after["encoder_calls"] - before["encoder_calls"] < after["requests"] - before["requests"]


def test_batcher_merges_requests_and_isolates_a_failing_one():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from mindgap.errors import InputError
    from mindgap.server.workers import TextBatcher

    calls = []

    def enc(texts):
        calls.append(list(texts))
        time.sleep(0.05)
        if "bad" in texts:
            raise InputError("bad text", item="texts")
        return np.array([[len(t)] for t in texts], np.float32)

    async def main():
        b = TextBatcher(enc, ThreadPoolExecutor(1), max_batch=64)
        first = asyncio.ensure_future(b.encode(["a"]))
        await asyncio.sleep(0.01)  # the model thread is busy with "a": the next three queue up
        rest = await asyncio.gather(b.encode(["bad"]), b.encode(["ccc"]), b.encode(["dd", "e"]),
                                    return_exceptions=True)
        return await first, rest, b.stats()

    first, (bad, ccc, dde), st = asyncio.run(main())
    assert first.tolist() == [[1.0]]
    assert isinstance(bad, InputError)
    assert ccc.tolist() == [[3.0]] and dde.tolist() == [[2.0], [1.0]]  # neighbours of the bad request unharmed
    assert calls[1] == ["bad", "ccc", "dd", "e"]  # one merged call, then each request alone
    assert st["max_requests_in_one_call"] == 3


def test_rwlock_writer_excludes_readers():
    import threading

    from mindgap.server.workers import RWLock

    lock, log = RWLock(), []

    def reader(i):
        with lock.read():
            log.append(("r+", i))
            time.sleep(0.3)
            log.append(("r-", i))

    def writer():
        with lock.write():
            log.append(("w+", 0))
            time.sleep(0.05)
            log.append(("w-", 0))

    def wait_for(cond):
        t0 = time.monotonic()
        while not cond():
            assert time.monotonic() - t0 < 10
            time.sleep(0.001)

    ts = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    wait_for(lambda: lock._readers == 3)
    ts.append(threading.Thread(target=writer))
    ts[-1].start()
    wait_for(lambda: lock._waiting_writers == 1)
    ts += [threading.Thread(target=reader, args=(i,)) for i in (3, 4)]
    for t in ts[-2:]:
        t.start()
    for t in ts:
        t.join()
    w0, w1 = log.index(("w+", 0)), log.index(("w-", 0))
    assert w1 == w0 + 1  # nothing ran while the writer held the lock
    first_exit = min(i for i, (kind, _) in enumerate(log) if kind == "r-")
    assert all(log.index(("r+", i)) < first_exit for i in range(3))  # readers share the lock
    assert all(log.index(("r+", i)) > w1 for i in (3, 4))  # readers arriving behind a waiting writer wait


def test_fuse_endpoint_inline_corrector_store_corrector_and_errors(client):
    """POST /fuse (issue 17): the docs' worked example over HTTP, the served store's corrector by name,
    clear 4xx on bad input; in the OpenAPI schema."""
    import json
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "corrector-format.md").read_text(encoding="utf-8")
    blocks = {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"<!-- (\S+) -->\s*```json\n(.*?)```", doc, re.S)}
    req = dict(blocks["example-request"], corrector=blocks["example-corrector"])
    r = client.post("/fuse", json=req)
    assert r.status_code == 200, r.text
    assert r.json()["hits"] == blocks["example-result"]["hits"] and r.json()["counts"] == {"text": 2, "image": 2}
    cut = client.post("/fuse", json=dict(req, min_prob=0.2)).json()
    assert [h["id"] for h in cut["hits"]] == ["i4", "t7"]
    # the served store's default corrector (zscore), no corrector in the body
    got = client.post("/fuse", json={"candidates": {"text": [{"id": "a", "cosine": 0.5}], "image": [
        {"id": "b", "cosine": 0.3}]}, "k": 2}).json()
    assert got["corrector"] == "zscore" and {h["id"] for h in got["hits"]} == {"a", "b"}
    assert "/fuse" in client.get("/openapi.json").json()["paths"]
    # calibrated's hubness term: with every candidate's vector the corrected cosines order each list;
    # without (or with one missing) the raw-cosine calibration (here the same numbers) gives the example
    import copy

    hub = copy.deepcopy(blocks["example-corrector"])
    hub["corrector"]["params"].update(hub=0.5, hub_k=1)
    st = hub["corrector"]["state"]
    st["hub_ref_"] = {"image": {"__ndarray__": [[1.0, 0.0]], "dtype": "float32"},
                      "text": {"__ndarray__": [[0.0, 1.0]], "dtype": "float32"}}
    st["calib0_"] = copy.deepcopy(st["calib_"])
    vec = {"t7": [0.0, 1.0], "t3": [1.0, 0.0], "t9": [1.0, 0.0], "i4": [1.0, 0.0], "i1": [0.0, 1.0]}
    with_vec = {m: [dict(c, vector=vec[c["id"]]) for c in cs] for m, cs in blocks["example-request"]["candidates"].items()}
    got = client.post("/fuse", json={"candidates": with_vec, "k": 5, "corrector": hub}).json()
    for m, order in (("text", ["t3", "t9", "t7"]), ("image", ["i1", "i4"])):  # t7, i4 lose 0.5 · 1
        assert [h["id"] for h in got["hits"] if h["modality"] == m] == order, got
    assert {h["id"]: h["cosine"] for h in got["hits"]}["i4"] == 0.36  # the raw cosine is reported
    one_missing = copy.deepcopy(with_vec)
    del one_missing["image"][1]["vector"]
    for cands in (blocks["example-request"]["candidates"], one_missing):
        got = client.post("/fuse", json={"candidates": cands, "k": 4, "corrector": hub}).json()
        assert got["hits"] == blocks["example-result"]["hits"]
    bad = copy.deepcopy(with_vec)
    bad["image"][0]["vector"] = [1.0, 0.0, 0.0]
    r = client.post("/fuse", json={"candidates": bad, "k": 4, "corrector": hub})
    assert r.status_code == 400 and r.json()["error"]["item"] == "candidates.image[0].vector", r.text
    for body, status, item in [
        (dict(req, gap="zscore"), 400, "gap"),
        (dict(req, corrector={"format": "mindgap.corrector", "version": 7, "corrector": {}}), 400, "corrector.version"),
        (dict(req, corrector={"name": "calibrated", "params": {"depth": "deep"}, "state": {}}), 400, "corrector"),
        (dict(req, corrector={"name": "center", "params": {}, "state": {}}), 400, "corrector"),
        ({"candidates": {"text": [{"id": "a", "cosine": 0.5}]}, "gap": "nope"}, 400, "nope"),
        ({"candidates": {"text": [{"id": "a", "cosine": 0.5}]}, "min_prob": 0.5, "gap": "naive"}, 400, "min_prob"),
        ({"candidates": {"text": [{"id": "a", "cosine": 5}]}}, 422, None),
        ({"candidates": {"audio": []}}, 422, None),
        (dict(req, query=[1e300, 0.0]), 400, "query"),  # beyond float32: inf, refused (not a NaN ranking)
    ]:
        r = client.post("/fuse", json=body)
        assert r.status_code == status, (body, r.text)
        if item:
            assert r.json()["error"]["item"] == item, r.json()


def test_server_start_warms_the_default_correctors_item_terms(offline_encoder, tmp_path):
    """A store whose default is calibrated (hubness term) but whose item terms were never
    computed: the server computes them all when it starts and saves them beside the store, so
    no request pays for them, and the next start loads them."""
    from _server_kit import load_more_captions

    from mindgap.gap.terms import terms_path
    from mindgap.retriever import Retriever
    from mindgap.server import create_app

    uri = copy_store(offline_encoder, tmp_path / "store")
    r = Retriever(uri, encoder=offline_encoder)
    corr = r.fit_gap("calibrated", pseudo_queries=load_more_captions(), name="cal", make_default=True, warm=False)
    assert corr.adjusts_items and corr.terms_computed() == 0
    n = r.store.count()
    r.close()
    path = terms_path(uri, "cal")
    assert path is not None and not path.exists()
    for start, computed in ((1, n), (2, 0)):
        app = create_app(uri, encoder=offline_encoder)
        app.state.mg.start()
        try:
            served = app.state.mg.retriever.gap()
            assert served.terms_computed() == computed, start  # the second start loads the table
            assert sum(len(e[0]) for e in served.export_terms().values()) == n and path.is_file()
        finally:
            app.state.mg.stop()
