"""Shared by the server tests: a small real store (Flickr8k test images + their captions).

The store is built once per session (Retriever API, real offline model) and copied for
tests that write to it. ``zscore`` is fitted on gold pairs of the offline model's held-out
calib images (never trained on, not in the store) — the principled fit, and the one that
shows the modality gap clearly; ``zscore-pseudo`` is the label-free variant.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mindgap.server.threaded import free_port  # noqa: F401 - re-exported for the server tests

N_IMAGES = 40
N_CALIB = 30
_BUILT: dict[str, Path] = {}
ROOT = Path(__file__).resolve().parent.parent


def calib_fit(retriever, n: int = N_CALIB):
    """Fitting pairs from the model's held-out calib images (never trained on, not in the store).

    Text queries: gold pairs (4 captions → their image, and → caption 0). Image queries (the
    calib images): pseudo pairs (top-1 text and top-1 image of the store).
    """
    from mindgap.datasets import load_caption_set
    from mindgap.encoders.dual import DEFAULT_OFFLINE_MODEL, resolve_model_dir
    from mindgap.encoders.dual_model import DualEncoderModel
    from mindgap.gap import FitData

    cfg = DualEncoderModel.read_config(resolve_model_dir(DEFAULT_OFFLINE_MODEL))
    ids = set(cfg["training"]["data"]["calib_images"])
    calib = [x for x in load_caption_set("flickr8k_224", split="val") if x.image_id in ids][:n]
    encoder = retriever.encoder
    img = encoder.encode_image([x.path for x in calib], show_progress=False)
    q = encoder.encode_text([c for x in calib for c in x.captions[1:5]], show_progress=False)
    gold_t = encoder.encode_text([x.captions[0] for x in calib], show_progress=False)
    own = np.repeat(np.arange(len(calib)), 4)
    pp = retriever.pseudo_pairs(img, "image")
    return FitData(queries=np.concatenate([q, q, pp.queries]), gold=np.concatenate([img[own], gold_t[own], pp.gold]),
                   gold_modality=np.concatenate([np.array(["image"] * len(q) + ["text"] * len(q)), pp.gold_modality]),
                   query_modality=np.array(["text"] * (2 * len(q)) + ["image"] * len(pp.queries)))


def store_records(n: int = N_IMAGES):
    from mindgap.datasets import load_caption_set

    return load_caption_set("flickr8k_224", split="test")[:n]


def build_store(encoder) -> Path:
    """A pristine ``exact:`` store directory (built once per session; do not write to it)."""
    if "store" in _BUILT:
        return _BUILT["store"]
    from mindgap.retriever import Retriever
    from mindgap.types import Item, Modality

    recs = store_records()
    d = Path(tempfile.mkdtemp(prefix="mindgap-server-test-")) / "store"
    r = Retriever(f"exact:{d}", encoder=encoder)
    items = [Item(f"img:{x.image_id}", Modality.IMAGE, uri=str(x.path), metadata={"source": "flickr8k test"})
             for x in recs]
    items += [Item(f"txt:{x.image_id}:{j}", Modality.TEXT, text=x.captions[j]) for x in recs for j in range(2)]
    r.index(items, progress=False)
    r.fit_gap("zscore", calib_fit(r), make_default=True)
    others = load_more_captions()
    r.fit_gap("zscore", pseudo_queries=others, name="zscore-pseudo")
    _BUILT["store"] = d
    return d


def load_more_captions(n: int = 60) -> list[str]:
    from mindgap.datasets import load_caption_set

    return [x.captions[0] for x in load_caption_set("flickr8k_224", split="test")[N_IMAGES:N_IMAGES + n]]


def copy_store(encoder, dest: Path) -> str:
    """A writable copy of the test store → its URI."""
    shutil.copytree(build_store(encoder), dest)
    return f"exact:{dest}"


def png_bytes(w: int = 64, h: int = 48, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(side: int = 30000) -> bytes:
    """A tiny PNG file declaring ``side × side`` pixels (a decompression bomb: ~2.7 GB decoded)."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    # one compressed row of zeros is enough for the header check; the decoder never gets that far
    idat = zlib.compress(b"\x00" * (side * 3 + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def start_cli_server(store: str, port: int, *args: str, env: dict | None = None,
                     timeout: float = 180.0) -> subprocess.Popen:
    """``mindgap serve`` in a subprocess; returns once /healthz answers."""
    import os

    import httpx

    e = dict(os.environ, **(env or {}))
    cmd = [sys.executable, "-c", "from mindgap.cli import run; run()", "serve", store, "--port", str(port), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in time")
