"""The Qdrant backend beyond the conformance suite (tests/test_stores.py): server URLs (client
options, the manifest in the meta collection, readers that never see half a batch) on an
emulated server, the real client against a closed port, the recorded backend, foreign
collections."""

from __future__ import annotations

import socket

import numpy as np
import pytest

pytest.importorskip("qdrant_client")

from _qdrant_kit import emulate_qdrant_server  # noqa: E402

from mindgap.errors import SpecError, StoreError  # noqa: E402
from mindgap.manifest import Manifest  # noqa: E402
from mindgap.stores import local_path, open_store, recorded_backend  # noqa: E402
from mindgap.stores.qdrant import client_options  # noqa: E402
from mindgap.types import Item, Modality  # noqa: E402

DIM = 8


def batch(prefix: str, n: int = 6, seed: int = 0) -> tuple[list[Item], np.ndarray]:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [Item(id=f"{prefix}{i}", modality=Modality.TEXT if i % 2 else Modality.IMAGE, text=f"t{i}")
            for i in range(n)], v


@pytest.fixture
def server(monkeypatch):
    with emulate_qdrant_server(monkeypatch) as seen:
        yield seen


def test_client_options_for_paths_and_urls(tmp_path, monkeypatch):
    monkeypatch.delenv("QDRANT_API_KEY", raising=False)
    assert client_options(str(tmp_path / "kb"), {}) == {"path": str((tmp_path / "kb").resolve())}
    assert client_options("http://db:6333", {}) == {"url": "http://db:6333", "timeout": 30}
    assert client_options("https://db:6333", {"api_key": "k", "prefer_grpc": "1"}) == {
        "url": "https://db:6333", "timeout": 30, "api_key": "k", "prefer_grpc": True}
    monkeypatch.setenv("QDRANT_API_KEY", "from-env")
    assert client_options("http://db:6333", {})["api_key"] == "from-env"
    assert local_path("qdrant:http://db:6333") is None and local_path(f"qdrant:{tmp_path}") == tmp_path
    with pytest.raises(SpecError):
        open_store(f"qdrant:{tmp_path}/kb?index=ivf")
    with pytest.raises(SpecError):
        open_store(f"qdrant:{tmp_path}/kb?colection=x")
    with pytest.raises(SpecError):
        open_store(f"qdrant:{tmp_path}/kb?collection=bad name")


def test_server_url_store_keeps_manifest_with_the_data(server):
    uri = "qdrant:http://127.0.0.1:6333?collection=kb&index=hnsw&M=16&api_key=secret"
    s = open_store(uri)
    assert server[-1] == {"url": "http://127.0.0.1:6333", "timeout": 30, "api_key": "secret"}
    assert s.uri == "qdrant:http://127.0.0.1:6333?index=hnsw&M=16&collection=kb"  # never the key
    items, v = batch("a")
    assert s.add(items, v) == 6
    m = Manifest(encoder_spec="test:enc", dim=DIM, gap={"zscore": {"mu": [0.5, 0.25]}})
    s.save_manifest(m)
    s.close()
    r = open_store("qdrant:http://127.0.0.1:6333?collection=kb")  # settings and manifest from the server
    assert r.uri == s.uri and r.count() == 6 and r.params.M == 16
    assert r.manifest.to_dict() == {**m.to_dict(), "updated": r.manifest.updated}
    assert r.search(v[0], 1, Modality.IMAGE)[0][0][0] == "a0"
    other = open_store("qdrant:http://127.0.0.1:6333?collection=other")
    assert other.count() == 0 and other.manifest is None
    r.close()
    other.close()


def test_server_readers_never_see_half_a_batch(server, monkeypatch):
    uri = "qdrant:http://127.0.0.1:6333?collection=kb_half"
    w = open_store(uri)
    items, v = batch("a")
    w.add(items, v)
    reader = open_store(uri)
    assert reader.count() == 6
    real = w._set_meta
    monkeypatch.setattr(w, "_set_meta", lambda k, val: (_ for _ in ()).throw(OSError("gone")) if k == "commit"
                        else real(k, val))
    more, mv = batch("b", seed=1)
    w._make_writable = lambda: None  # the writer "dies": its points stay behind, uncommitted
    with pytest.raises(OSError):
        w.add(more, mv)
    raw = sum(w.client.count(c, exact=True).count for c in w.cols.values())
    assert raw == 12  # the debris is in the collections ...
    reader._seen = 0.0
    assert reader.count() == 6 and not reader.has([it.id for it in more])  # ... and invisible
    assert reader.search(mv[0], 3, Modality.IMAGE)[0][0][0].startswith("a")
    nxt = open_store(uri)
    third, tv = batch("c", seed=2)
    assert nxt.add(third, tv) == 6  # a new writer deletes the debris and commits only its batch
    assert sum(nxt.client.count(c, exact=True).count for c in nxt.cols.values()) == 12
    reader._seen = 0.0
    assert reader.count() == 12 and not reader.has([it.id for it in more])
    for s in (w, reader, nxt):
        s.close()


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    with pytest.raises(StoreError, match="is the Qdrant server at http://127.0.0.1"):
        open_store(f"qdrant:http://127.0.0.1:{port}?collection=nobody")


def test_recorded_backend_and_wrong_backend_refused(tmp_path, offline_encoder):
    from mindgap.retriever import Retriever

    kb = tmp_path / "kb"
    r = Retriever(f"qdrant:{kb}", encoder=offline_encoder)
    r.index([Item("a", Modality.TEXT, text="a cat")], progress=False)
    r.close()
    assert recorded_backend(str(kb)) == "qdrant"
    with pytest.raises(StoreError, match="this is a qdrant store"):
        open_store(f"exact:{kb}")
    with pytest.raises(StoreError, match="this is a qdrant store"):
        open_store(f"lancedb:{kb}")
    st = open_store(str(kb))  # a bare path opens the backend that built it
    assert st.uri.startswith("qdrant:") and st.count() == 1 and st.manifest.index["uri"].startswith("qdrant:")
    st.close()
    with pytest.raises(StoreError, match="no store at this path"):
        open_store(f"qdrant:{tmp_path / 'missing'}", create=False)
    assert not (tmp_path / "missing").exists()


def test_foreign_collections_are_not_touched_and_stores_share_a_folder(tmp_path):
    s = open_store(f"qdrant:{tmp_path}/q?collection=kb")
    from qdrant_client import models

    s.client.create_collection("theirs_text", vectors_config=models.VectorParams(size=4,
                                                                                distance=models.Distance.DOT))
    with pytest.raises(StoreError, match="not made by mindgap"):
        open_store(f"qdrant:{tmp_path}/q?collection=theirs")
    assert s.client.collection_exists("theirs_text")
    items, v = batch("a")
    s.add(items, v)
    two = open_store(f"qdrant:{tmp_path}/q?collection=kb")  # one process: the folder's client is shared
    assert two.count() == 6
    s.close()
    assert two.count() == 6 and two.has(["a1"]) == {"a1"}
    two.close()
    with pytest.raises(SpecError, match="is a folder"):
        (tmp_path / "file").write_text("x")
        open_store(f"qdrant:{tmp_path / 'file'}")
