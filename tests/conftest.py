"""Shared fixtures: the real trained offline encoder, the shared data, small real subsets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting stall torch badly when the cores are shared (tests start
# subprocesses and servers beside the main process): measured 25.5 s -> 1.9 s for 96 items in batches of 8.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    from mindgap.datasets import shared_data_dir

    return shared_data_dir()


@pytest.fixture(scope="session")
def flickr_dir(shared_data: Path) -> Path:
    return shared_data / "flickr8k_224"


@pytest.fixture(scope="session")
def mmqa_dir(shared_data: Path) -> Path:
    return shared_data / "mmqa"


@pytest.fixture(scope="session")
def offline_encoder():
    """The real trained offline model (bundled, ``DEFAULT_OFFLINE_SPEC``)."""
    from mindgap.encoders import DEFAULT_OFFLINE_SPEC, load_encoder

    return load_encoder(DEFAULT_OFFLINE_SPEC)


@pytest.fixture(scope="session")
def flickr_test(flickr_dir: Path):
    """All 1,000 Flickr8k test records (image path + 5 captions), sorted by id."""
    from mindgap.datasets import load_caption_set

    return load_caption_set(flickr_dir, split="test")


@pytest.fixture(scope="session")
def calib_records(flickr_dir: Path):
    """The offline model's held-out calib images (never trained on)."""
    from mindgap.datasets import load_caption_set
    from mindgap.encoders.dual import DEFAULT_OFFLINE_MODEL, resolve_model_dir
    from mindgap.encoders.dual_model import DualEncoderModel

    cfg = DualEncoderModel.read_config(resolve_model_dir(DEFAULT_OFFLINE_MODEL))
    calib = set(cfg["training"]["data"]["calib_images"])
    return [r for r in load_caption_set(flickr_dir, split="val") if r.image_id in calib]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def flickr_embeddings(offline_encoder, flickr_test, calib_records):
    """Offline-model embeddings of the Flickr8k test split and of the model's calib images.

    Returns:
        ``{"test": split, "calib": split}``; each ``split`` is a dict with
        ``"ids"`` (list of n image ids, in the order of ``flickr_test`` / ``calib_records``),
        ``"records"`` (those records), ``"images"`` float32 ``(n, d)`` and ``"captions"``
        float32 ``(n, 5, d)`` (caption j of image i at ``[i, j]``), all L2-normalised
        (d = 256; n = 1000 for test, 200 for calib). Treat the arrays as read-only.

    Encoded through :mod:`mindgap.caption.cache` (``$MINDGAP_CACHE`` or ``~/.cache/mindgap``):
    only the first session on a machine pays for encoding (a few minutes on 2 CPU cores).
    """
    import numpy as np

    from mindgap.caption.cache import encode_images, encode_texts

    out = {}
    for name, recs in (("test", flickr_test), ("calib", calib_records)):
        assert all(len(r.captions) == 5 for r in recs), f"{name}: expected 5 captions per image"
        img = encode_images(offline_encoder, [r.path for r in recs], show_progress=False)
        cap = encode_texts(offline_encoder, [c for r in recs for c in r.captions], show_progress=False)
        out[name] = {"ids": [r.image_id for r in recs], "records": list(recs),
                     "images": np.asarray(img, np.float32),
                     "captions": np.asarray(cap, np.float32).reshape(len(recs), 5, -1)}
    return out


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """A real Milvus (gRPC) server on 127.0.0.1 — milvus-lite's standalone server process; yields the port."""
    import socket
    import subprocess
    import sys
    import time

    from mindgap.server.threaded import free_port

    pytest.importorskip("milvus_lite")
    port = free_port()
    data = tmp_path_factory.mktemp("milvus-server")
    # The log goes to a file: an unread PIPE fills up (64 KiB) and then blocks the server mid-test.
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data / "db"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("milvus-lite server did not start:\n" + (data / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.2)
    yield port
    assert proc.poll() is None, "milvus-lite server died during the tests:\n" + (data / "server.log").read_text(errors="replace")[-3000:]
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def one_faiss_thread():
    """OpenMP spinning on a shared 2-core machine makes tiny FAISS calls 10x slower."""
    try:
        import faiss
    except ImportError:
        yield
        return
    n = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(n)
