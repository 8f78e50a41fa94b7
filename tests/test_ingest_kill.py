"""Crash safety of ingestion: SIGKILL a real `mindgap index` midway, reopen, resume.

Source: 200 real items (100 Flickr8k test images + 100 captions, interleaved) in a JSONL
file, indexed in batches of 8. The process is killed once its progress bar shows at least
three committed batches. The reopened store must hold a whole number of batches — exactly
the first ones of the source, intact (vectors and metadata equal to an uninterrupted run) —
and re-running the same command must complete it to the very store an uninterrupted run builds.
"""

from __future__ import annotations

from mindgap.encoders import DEFAULT_OFFLINE_SPEC

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mindgap.cli import main
from mindgap.retriever import Retriever
from mindgap.stores import open_store
from mindgap.types import MODALITIES

B = 8
N_IMG = 100
CLI = "import sys; from mindgap.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def source(tmp_path_factory, flickr_test) -> tuple[Path, list[str]]:
    d = tmp_path_factory.mktemp("killsrc")
    ids = []
    with (d / "kb.jsonl").open("w") as fh:
        for r in flickr_test[:N_IMG]:
            for rec in ({"id": f"img:{r.image_id}", "image": str(r.path), "caption": r.captions[0]},
                        {"id": f"txt:{r.image_id}", "text": r.captions[1], "image_id": r.image_id}):
                fh.write(json.dumps(rec) + "\n")
                ids.append(rec["id"])
    return d / "kb.jsonl", ids


@pytest.fixture(scope="module")
def reference(source, offline_encoder):
    """The uninterrupted run (in memory)."""
    r = Retriever("exact:", encoder=offline_encoder)
    rep = r.index_source(source[0], batch_size=B, progress=False)
    assert rep.added == {"text": N_IMG, "image": N_IMG} and not rep.skipped
    return r.store


def snapshot(store) -> dict[str, tuple[dict, np.ndarray]]:
    out = {}
    for m in MODALITIES:
        ids, mat = store.vectors(m)
        for i, it, v in zip(ids, store.get(ids), mat):
            out[i] = (it.to_dict(), v)
    return out


def assert_same(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for i, (item, vec) in got.items():
        assert item == want[i][0], i
        np.testing.assert_allclose(vec, want[i][1], atol=1e-5, err_msg=i)


def kill_midway(src: Path, uri: str, at_least: int) -> str:
    """Run `mindgap index` in a subprocess; SIGKILL it once the bar shows >= at_least items done."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, "index", str(src), "--store", uri, "--batch-size", str(B)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=src.parent)
    seen = threading.Event()
    log: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        while chunk := os.read(proc.stderr.fileno(), 4096):
            log.append(chunk.decode("utf-8", "replace"))
            done = [int(n) for n in re.findall(r"index:[^\r\n]*?(\d+)/\d+ \[", "".join(log)[-2000:])]
            if done and max(done) >= at_least:
                seen.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        assert seen.wait(timeout=300), "the ingest never got going:\n" + "".join(log)[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
        t.join(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "".join(log)[-3000:]  # it was killed, it did not finish
    return "".join(log)


URIS = {"exact": "exact:{d}", "lancedb": "lancedb:{d}", "milvus": "milvus:{d}/kb.db", "faiss": "faiss:{d}",
        "qdrant": "qdrant:{d}"}


@pytest.mark.parametrize("backend", ["exact", pytest.param("lancedb", marks=pytest.mark.slow),
                                     pytest.param("milvus", marks=pytest.mark.slow),
                                     pytest.param("faiss", marks=pytest.mark.slow),
                                     pytest.param("qdrant", marks=pytest.mark.slow)])
def test_sigkill_midway_then_resume(backend, source, reference, tmp_path, offline_encoder) -> None:
    if backend != "exact":
        pytest.importorskip({"milvus": "milvus_lite", "qdrant": "qdrant_client"}.get(backend, backend))
    src, ids = source
    uri = URIS[backend].format(d=tmp_path / "store")
    kill_midway(src, uri, at_least=3 * B)

    st = open_store(uri)  # opens, whole batches only, exactly the first ones of the source
    n = st.count()
    assert 3 * B <= n < len(ids) and n % B == 0, n
    part = snapshot(st)
    assert sorted(part) == sorted(ids[:n])
    want = snapshot(reference)
    assert_same(part, {i: want[i] for i in ids[:n]})
    assert st.manifest is not None and st.manifest.encoder_spec == DEFAULT_OFFLINE_SPEC
    st.close()

    from mindgap.cli import index as cli_index

    cli_index._ENCODERS[offline_encoder.name] = offline_encoder
    rc = main(["index", str(src), "--store", uri, "--batch-size", str(B), "--no-progress", "--json"])
    assert rc == 0
    st = open_store(uri)
    assert st.count() == len(ids)
    assert_same(snapshot(st), want)  # the resumed store is the uninterrupted one
    st.close()
