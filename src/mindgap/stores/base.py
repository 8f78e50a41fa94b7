"""The VectorStore seam.

A store holds items (text passages and images) with their L2-normalised vectors, keeps
modality as a partition or filter, and answers per-modality top-k by cosine (inner product).
Gap correction happens above it, in :class:`~mindgap.retriever.Retriever`.

Contract (checked by ``tests/test_stores.py`` over every backend, with
:class:`~mindgap.stores.exact.ExactStore` as the oracle):

* ``add(items, vectors)`` commits one batch atomically and skips ids already present
  (returns how many were added) — a crash between batches leaves exactly the committed ones;
* ``search(queries, k, modality)`` → per query a list of ``(id, cosine)`` best first;
* ``delete(ids)``, ``get(ids)``, ``has(ids)``, ``count(modality)``, ``vectors(modality, ids)``;
* ``manifest`` / ``save_manifest(m)`` — the manifest lives with the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError, StoreError
from ..manifest import Manifest
from ..types import Item, Modality

SearchResult = list[list[tuple[str, float]]]


@runtime_checkable
class VectorStore(Protocol):
    """A persistent vector store with a modality partition/filter."""

    uri: str

    def add(self, items: Sequence[Item], vectors: np.ndarray) -> int: ...
    def delete(self, ids: Sequence[str]) -> int: ...
    def search(self, queries: np.ndarray, k: int, modality: Modality) -> SearchResult: ...
    def get(self, ids: Sequence[str]) -> list[Item | None]: ...
    def has(self, ids: Sequence[str]) -> set[str]: ...
    def count(self, modality: Modality | None = None) -> int: ...
    def vectors(self, modality: Modality, ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]: ...
    @property
    def manifest(self) -> Manifest | None: ...
    def save_manifest(self, manifest: Manifest) -> None: ...
    def close(self) -> None: ...


class BaseStore:
    """Common checks and manifest handling; backends subclass it.

    Subclasses set ``self.uri`` and ``self._manifest_path`` and implement the storage calls.
    """

    uri: str = ""
    _manifest_path: Path | None = None
    _manifest: Manifest | None = None

    @property
    def manifest(self) -> Manifest | None:
        if self._manifest is None and self._manifest_path is not None and self._manifest_path.exists():
            self._manifest = Manifest.load(self._manifest_path)
        return self._manifest

    def save_manifest(self, manifest: Manifest) -> None:
        if self._manifest_path is None:  # pragma: no cover - in-memory stores
            self._manifest = manifest
            return
        manifest.save(self._manifest_path)
        self._manifest = manifest

    def close(self) -> None:
        """Release resources (default: nothing)."""

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- shared validation -----------------------------------------------------------
    @staticmethod
    def check_add(items: Sequence[Item], vectors: np.ndarray, dim: int | None) -> np.ndarray:
        v = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if v.ndim != 2 or v.shape[0] != len(items):
            raise InputError(f"vectors shape {v.shape} does not match {len(items)} items", item="vectors")
        if dim is not None and v.shape[1] != dim:
            raise StoreError(f"vector dim {v.shape[1]} != store dim {dim}", item="vectors")
        if not np.all(np.isfinite(v)):
            bad = int(np.flatnonzero(~np.isfinite(v).all(axis=1))[0])
            raise InputError("non-finite vector", item=items[bad].id)
        ids = [it.id for it in items]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise InputError("duplicate id within one batch", item=dup)
        return v

    @staticmethod
    def check_queries(queries: np.ndarray, k: int) -> np.ndarray:
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2:
            raise InputError(f"queries must be (n, d), got {q.shape}", item="queries")
        if int(k) < 1:
            raise InputError("k must be >= 1", item="k")
        return q


def topk_rows(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k column indices and values per row, best first (stable ties by index)."""
    k = min(k, sim.shape[1])
    if k == 0:
        return np.zeros((sim.shape[0], 0), int), np.zeros((sim.shape[0], 0), np.float32)
    if k < sim.shape[1]:
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    else:
        part = np.tile(np.arange(sim.shape[1]), (sim.shape[0], 1))
    vals = np.take_along_axis(sim, part, axis=1)
    # sort by value desc, then index asc for deterministic ties
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(vals, order, axis=1)
