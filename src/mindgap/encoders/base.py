"""The Encoder seam: one Protocol, one base class that does the common work.

A backend implements two batch methods on already-validated inputs
(``_encode_text_batch(list[str])`` and ``_encode_image_batch(list[PIL.Image])``);
:class:`BaseEncoder` does validation, batching, progress bars, float32 conversion and L2
normalisation, so every backend honours the same contract:

* ``encode_text(list[str]) -> (n, dim) float32``, C-contiguous, rows L2-normalised;
* ``encode_image(list[path | bytes | PIL.Image]) -> (n, dim)`` likewise;
* an empty list is a clear :class:`~mindgap.errors.InputError`;
* deterministic: the same inputs give the same outputs (models run in eval mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from ..images import describe, load_image
from ..text import validate_texts


def query_threads() -> int:
    """PyTorch CPU threads for encoding one query text: ``MINDGAP_QUERY_THREADS`` (default 1;
    0 = leave PyTorch's setting alone). A bad value is a clear error naming the variable."""
    import os

    raw = os.environ.get("MINDGAP_QUERY_THREADS", "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if n < 0:
        raise InputError(f"MINDGAP_QUERY_THREADS must be a whole number >= 0, got {raw!r}", item="MINDGAP_QUERY_THREADS")
    return n


@contextlib.contextmanager
def torch_query_threads(device: Any = "cpu") -> Iterator[None]:
    """Run PyTorch CPU work on :func:`query_threads` threads (default 1; nothing changes on a GPU).

    For one query text. PyTorch's OpenMP threads keep spinning after each call. numpy's OpenBLAS
    threads do the same after a store scan. A query loop (encode, scan, encode, ...) then has the
    two pools fight over the cores.

    Measured on 2 cores with the bundled model (benchmarks/results/query_loop.md), a whole query
    (encode, scan, fetch, p50):
    * 10K items: 23.3 ms with PyTorch on 2 threads, 11.8 ms on one;
    * 100K items: 31.0 ms and 18.6 ms;
    * 2K items, where the scan is short: one thread is slower, 10.3 ms against 8.9 ms.
      ``MINDGAP_QUERY_THREADS=0`` keeps PyTorch's own setting.

    PyTorch (OpenMP) keeps the thread count per thread: only the calling thread's encode changes,
    and it gets its own setting back afterwards. Threads that first use PyTorch while the call
    runs start with the lowered count.
    """
    import sys

    torch = sys.modules.get("torch")
    n = query_threads()
    if torch is None or n == 0 or getattr(device, "type", str(device)) != "cpu":
        yield
        return
    before = int(torch.get_num_threads())
    if before <= n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@runtime_checkable
class Encoder(Protocol):
    """A dual (text + image) encoder into one shared embedding space."""

    name: str
    dim: int

    def encode_text(self, texts: Sequence[str], *, batch_size: int | None = None,
                    show_progress: bool | None = None) -> np.ndarray: ...

    def encode_image(self, images: Sequence[Any], *, batch_size: int | None = None,
                     show_progress: bool | None = None) -> np.ndarray: ...


#: files whose bytes are a model's weights (what a retrain or a replaced download changes)
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".bin", ".pt", ".pth", ".data", ".gguf")
_FULL_HASH_MAX = 256 << 20  # bigger files are sampled: size + 32 evenly spaced 256 KB chunks
_FP_CACHE: dict[tuple[str, int, int], str] = {}
_FP_LOCK = threading.Lock()


def _file_digest(f: Path) -> str:
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
    with _FP_LOCK:
        got = _FP_CACHE.get(key)
    if got is not None:
        return got
    h = hashlib.sha256(str(st.st_size).encode())
    with f.open("rb") as fh:
        if st.st_size <= _FULL_HASH_MAX:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        else:
            chunk = 256 << 10
            for i in range(32):
                fh.seek((st.st_size - chunk) * i // 31)
                h.update(fh.read(chunk))
    got = h.hexdigest()
    with _FP_LOCK:
        _FP_CACHE[key] = got
    return got


def weights_fingerprint(encoder: Any) -> str | None:
    """A fingerprint of the weights an encoder was loaded from, for store manifests: a store built
    with one set of weights refuses queries embedded by another under the same spec (a model
    directory retrained in place, a bundled model replaced). ``None`` when the weights are not in a
    local directory (a hub id: its name is what the manifest checks) or when the files cannot be read.

    sha256 over each weight file (:data:`WEIGHT_SUFFIXES`) of the directory: its name, size and
    bytes (files over 256 MB: 32 evenly spaced chunks), cached per file, size and mtime.
    """
    root = getattr(encoder, "path", None) or getattr(encoder, "source", None)
    if root is None:
        return None
    root = Path(root)
    if not root.is_dir():
        return None
    try:
        # an encoder that loads some of its directory's weight files names them (ONNX: the
        # variant's two graphs), so adding another variant beside them changes nothing
        graphs = [getattr(encoder, a, None) for a in ("text_graph", "vision_graph")]
        if all(isinstance(g, Path) for g in graphs):
            files = sorted({f for g in graphs for f in g.parent.glob(g.name + "*") if f.is_file()})
        else:
            files = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in WEIGHT_SUFFIXES)
        if not files:
            return None
        h = hashlib.sha256()
        for f in files:
            h.update(f"{f.relative_to(root).as_posix()}:{_file_digest(f)}\n".encode())
    except OSError:
        return None
    return "sha256:" + h.hexdigest()[:32]


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation to float32, C-contiguous (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    n[n == 0] = 1.0
    return np.ascontiguousarray(x / n, dtype=np.float32)


class BaseEncoder:
    """Shared batching / validation / normalisation for encoder backends.

    Args:
        name: the spec string that built the encoder (recorded in store manifests).
        batch_size: default batch size.
        show_progress: ``None`` = show a bar only for inputs longer than 4 batches.
    """

    name: str = "base"
    dim: int = 0
    #: tokens the text tower sees (77 for CLIP); longer texts are truncated.
    max_text_tokens: int = 77

    def __init__(self, name: str, *, batch_size: int = 32, show_progress: bool | None = None) -> None:
        if batch_size < 1:
            raise InputError("batch_size must be >= 1", item="batch_size")
        self.name = name
        self.batch_size = batch_size
        self.show_progress = show_progress

    # -- backend hooks -------------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _encode_image_batch(self, images: list[Any]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- public contract -----------------------------------------------------------
    def encode_text(self, texts: Sequence[str], *, batch_size: int | None = None,
                    show_progress: bool | None = None) -> np.ndarray:
        """Embed texts → float32 ``(n, dim)``, L2-normalised."""
        texts = validate_texts(texts)
        if not texts:
            raise InputError("no texts to encode (empty list)", item="texts")
        with self._one_query() if len(texts) == 1 else contextlib.nullcontext():  # one text: a query
            return self._run(texts, self._encode_text_batch, batch_size, show_progress, "texts")

    def encode_image(self, images: Sequence[Any], *, batch_size: int | None = None,
                     show_progress: bool | None = None) -> np.ndarray:
        """Embed images (paths, bytes or PIL images) → float32 ``(n, dim)``, L2-normalised.

        Each image is fully decoded and checked first; a bad one raises
        :class:`~mindgap.errors.ImageError` naming it.
        """
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            images = [images] if isinstance(images, (str, bytes)) else list(images)
        if len(images) == 0:
            raise InputError("no images to encode (empty list)", item="images")

        # Decode lazily per batch so memory stays bounded for long lists.
        bs = batch_size or self.batch_size
        out = []
        for start, chunk in self._batches(list(images), bs, show_progress, "images"):
            pil = [load_image(obj, name=describe(obj, start + j)) for j, obj in enumerate(chunk)]
            out.append(self._check(self._encode_image_batch(pil), len(pil)))
        return l2_normalize(np.concatenate(out, axis=0))

    # -- helpers -------------------------------------------------------------------
    def _one_query(self) -> contextlib.AbstractContextManager[None]:
        """How one query text is encoded. PyTorch backends (they have a ``device``) run it on
        :func:`query_threads` threads (:func:`torch_query_threads`); other backends change nothing."""
        device = getattr(self, "device", None)
        return torch_query_threads(device) if device is not None else contextlib.nullcontext()

    def _check(self, emb: Any, n: int) -> np.ndarray:
        arr = np.asarray(emb, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != n:
            raise RuntimeError(f"{self.name}: backend returned shape {arr.shape} for {n} inputs")
        return arr

    def _batches(self, seq: list[Any], bs: int, show_progress: bool | None, unit: str):
        show = self.show_progress if show_progress is None else show_progress
        if show is None:
            show = len(seq) > 4 * bs
        starts = range(0, len(seq), bs)
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(seq), unit=unit[:-1], desc=f"encode {unit}", leave=False)
            for s in starts:
                yield s, seq[s : s + bs]
                bar.update(min(bs, len(seq) - s))
            bar.close()
        else:
            for s in starts:
                yield s, seq[s : s + bs]

    def _run(self, seq: list[Any], fn, batch_size: int | None, show_progress: bool | None, unit: str) -> np.ndarray:
        bs = batch_size or self.batch_size
        out = [self._check(fn(chunk), len(chunk)) for _, chunk in self._batches(seq, bs, show_progress, unit)]
        return l2_normalize(np.concatenate(out, axis=0))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"
