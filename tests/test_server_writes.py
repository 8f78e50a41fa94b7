"""Long writes under the request timeout: a 504 means nothing was written, and reads are not
held behind a write (it embeds in chunks on the model thread)."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")


class SlowEncoder:
    """The real encoder, plus ``delay`` seconds per 16 inputs (a slow model, deterministically)."""

    def __init__(self, enc, delay: float) -> None:
        self.enc, self.delay = enc, delay
        self.name, self.dim = enc.name, enc.dim

    def encode_text(self, texts, show_progress=False):
        time.sleep(self.delay * -(-len(texts) // 16))
        return self.enc.encode_text(texts, show_progress=False)

    def encode_image(self, images, show_progress=False):
        time.sleep(self.delay * -(-len(images) // 16))
        return self.enc.encode_image(images, show_progress=False)


def _long_text(n: int) -> str:
    return " ".join(f"Sentence number {i} tells of a dog that runs on the beach." for i in range(n))


@pytest.fixture()
def server(offline_encoder, tmp_path):
    from mindgap.server import create_app, serve_in_thread

    def make(timeout_s: float, delay: float):
        app = create_app(f"exact:{tmp_path / 'kb'}", encoder=offline_encoder, create=True, timeout_s=timeout_s,
                         max_batch=16, warmup=False)
        srv = serve_in_thread(app)
        st = app.state.mg
        r = httpx.post(srv.url + "/items", json={"items": [{"id": "seed", "modality": "text", "text": "a cat"}]})
        assert r.status_code == 200, r.text
        st.encoder = st.retriever._encoder = SlowEncoder(offline_encoder, delay)
        return srv

    handles = []
    yield lambda *a: handles.append(make(*a)) or handles[-1]
    for h in handles:
        h.stop()


def test_timed_out_write_is_cancelled_not_committed(server):
    srv = server(1.0, 0.25)  # 160 sentences = 10 chunks of 16 = 2.5 s of encoder time > 1 s
    t0 = time.perf_counter()
    r = httpx.post(srv.url + "/items", json={"items": [{"id": "long", "modality": "text", "text": _long_text(160)}]},
                   timeout=30)
    assert r.status_code == 504, r.text
    assert "nothing was written" in r.json()["error"]["message"]
    assert time.perf_counter() - t0 < 2.0
    time.sleep(3.0)  # long enough for an uncancelled write to have finished
    assert httpx.get(srv.url + "/items/long").status_code == 404
    assert httpx.get(srv.url + "/stats").json()["counts"]["text"] == 1


def test_reads_run_between_chunks_of_a_long_write(server):
    srv = server(60.0, 0.25)  # the write: 10 chunks, ~2.5 s
    result = {}

    def write() -> None:
        result["r"] = httpx.post(srv.url + "/items", timeout=60,
                                 json={"items": [{"id": "long", "modality": "text", "text": _long_text(160)}]})

    t = threading.Thread(target=write)
    t.start()
    time.sleep(0.6)  # the write is embedding now
    t0 = time.perf_counter()
    r = httpx.get(srv.url + "/search", params={"query": "a dog", "k": 1}, timeout=60)
    waited = time.perf_counter() - t0
    g = httpx.get(srv.url + "/items/seed", timeout=60)
    t.join()
    assert r.status_code == 200 and g.status_code == 200
    assert waited < 1.2, f"a search waited {waited:.2f} s behind a write"  # one chunk + its own encode, not ~2 s
    assert result["r"].status_code == 200 and result["r"].json()["added"]["text"] == 1


def test_write_job_decides_the_race():
    from mindgap.server.workers import WriteCancelled, WriteJob

    j = WriteJob()
    j.begin_commit()
    assert j.cancel() is False  # a commit that began completes: the answer waits for it
    j = WriteJob()
    assert j.cancel() is True
    with pytest.raises(WriteCancelled):
        j.begin_commit()
