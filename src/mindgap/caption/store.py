"""The caption store: training captions, their embeddings and two FAISS inner-product indexes.

One index holds the raw L2-normalised caption embeddings (the raw-cosine baseline); the
other holds them in the map's target space — mean-centred with the fitted text mean and
re-normalised — which is where a mapped image lands. Both are exact ``IndexFlatIP``
(a few thousand captions; exact search costs well under a millisecond per query).

Layout on disk (inside a caption model directory)::

    captions.jsonl   one {"id", "image_id", "text", "source", "iteration"} per line
    vectors.npy      (n, d) float32 raw L2-normalised caption embeddings, same order
    index_raw.faiss / index_mapped.faiss   the two indexes (rebuilt if missing)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import InputError, MissingDependency, StoreError

Space = Literal["raw", "mapped"]


@dataclass
class CaptionEntry:
    """One caption in the store.

    Attributes:
        id: unique id (``<image_id>#<n>`` for references, ``<image_id>#s<iter>`` synthetic).
        image_id: the training image it describes.
        text: the caption.
        source: ``"ref"`` (human reference) or ``"synthetic"`` (added by refinement).
        iteration: refinement iteration that added it (0 for references).
    """

    id: str
    image_id: str
    text: str
    source: str = "ref"
    iteration: int = 0


def _faiss():  # noqa: ANN202 - module
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on environment
        raise MissingDependency("faiss-cpu", "faiss") from exc
    return faiss


class CaptionStore:
    """Captions + raw embeddings + the raw and mapped-space FAISS indexes.

    Args:
        entries: the captions.
        vectors: ``(n, d)`` raw caption embeddings (re-normalised here).
        text_mean: the fitted text mean used to centre the mapped-space index.
    """

    def __init__(self, entries: Sequence[CaptionEntry], vectors: np.ndarray, text_mean: np.ndarray) -> None:
        vectors = l2_normalize(vectors)
        if len(entries) != vectors.shape[0]:
            raise StoreError(f"{len(entries)} captions but {vectors.shape[0]} vectors", item="caption store")
        self.entries: list[CaptionEntry] = list(entries)
        self.vectors = vectors
        self.text_mean = np.asarray(text_mean, dtype=np.float32).reshape(-1)
        if self.text_mean.shape[0] != vectors.shape[1]:
            raise StoreError("text mean and caption vectors differ in dimension", item="caption store")
        self._ids = {e.id for e in self.entries}
        if len(self._ids) != len(self.entries):
            raise StoreError("duplicate caption ids", item="caption store")
        self._build()

    # -- indexes ---------------------------------------------------------------------------
    def mapped_vectors(self, vectors: np.ndarray | None = None) -> np.ndarray:
        """Caption vectors in the map's target space (centred with ``text_mean``, re-normalised)."""
        v = self.vectors if vectors is None else l2_normalize(vectors)
        return l2_normalize(v - self.text_mean)

    def _build(self) -> None:
        faiss = _faiss()
        d = self.vectors.shape[1]
        self._index: dict[str, object] = {"raw": faiss.IndexFlatIP(d), "mapped": faiss.IndexFlatIP(d)}
        if len(self.entries):
            self._index["raw"].add(self.vectors)
            self._index["mapped"].add(self.mapped_vectors())

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entries: Sequence[CaptionEntry], vectors: np.ndarray) -> int:
        """Append captions (ids already present are skipped); returns how many were added."""
        vectors = l2_normalize(vectors)
        keep = [i for i, e in enumerate(entries) if e.id not in self._ids]
        if not keep:
            return 0
        new = [entries[i] for i in keep]
        vec = vectors[keep]
        self.entries.extend(new)
        self._ids.update(e.id for e in new)
        self.vectors = np.ascontiguousarray(np.concatenate([self.vectors, vec]), dtype=np.float32)
        self._index["raw"].add(vec)
        self._index["mapped"].add(self.mapped_vectors(vec))
        return len(new)

    def set_text_mean(self, text_mean: np.ndarray) -> None:
        """Re-centre the mapped-space index after a refit moved the text mean."""
        self.text_mean = np.asarray(text_mean, dtype=np.float32).reshape(-1)
        self._build()

    # -- search ----------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, space: Space = "mapped",
               exclude_image_ids: Sequence[str | None] | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` captions per query by inner product, best first.

        Args:
            queries: ``(q, d)`` query vectors, L2-normalised (mapped image vectors for
                ``space="mapped"``, raw image vectors for ``"raw"``).
            k: how many captions per query.
            space: which index.
            exclude_image_ids: per query, an image whose captions must not be returned
                (leave-one-out retrieval for training images).

        Returns:
            per query a list of ``(entry position, inner product)``.
        """
        if k < 1:
            raise InputError("k must be >= 1", item="k")
        if space not in self._index:
            raise InputError(f"unknown space {space!r}; expected raw or mapped", item="space")
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.shape[1] != self.dim:
            raise StoreError(f"query dimension {q.shape[1]} != store dimension {self.dim}", item="caption store")
        n = len(self.entries)
        if n == 0:
            return [[] for _ in range(q.shape[0])]
        extra = 0
        if exclude_image_ids is not None:
            per_image: dict[str, int] = {}
            for e in self.entries:
                per_image[e.image_id] = per_image.get(e.image_id, 0) + 1
            extra = max((per_image.get(x, 0) for x in exclude_image_ids if x is not None), default=0)
        kk = min(n, k + extra)
        scores, idx = self._index[space].search(q, kk)
        out = []
        for qi in range(q.shape[0]):
            ex = exclude_image_ids[qi] if exclude_image_ids is not None else None
            row = [(int(j), float(s)) for j, s in zip(idx[qi], scores[qi])
                   if j >= 0 and (ex is None or self.entries[j].image_id != ex)]
            out.append(row[:k])
        return out

    def texts(self, positions: Iterable[int]) -> list[str]:
        """Caption texts at store positions."""
        return [self.entries[i].text for i in positions]

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write captions, vectors and both indexes into ``directory`` (which must exist)."""
        faiss = _faiss()
        d = Path(directory)
        with (d / "captions.jsonl").open("w", encoding="utf-8") as fh:
            for e in self.entries:
                fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")
        np.save(d / "vectors.npy", self.vectors)
        faiss.write_index(self._index["raw"], str(d / "index_raw.faiss"))
        faiss.write_index(self._index["mapped"], str(d / "index_mapped.faiss"))

    @classmethod
    def load(cls, directory: str | Path, text_mean: np.ndarray) -> "CaptionStore":
        """Read a store written by :meth:`save` (indexes are rebuilt from the vectors).

        Rebuilding keeps the vectors the single source of truth: a refit that moved the
        text mean can never leave a stale mapped-space index behind.
        """
        d = Path(directory)
        f = d / "captions.jsonl"
        if not f.is_file() or not (d / "vectors.npy").is_file():
            raise StoreError("not a caption store (captions.jsonl / vectors.npy missing)", item=str(d))
        try:
            entries = [CaptionEntry(**json.loads(line)) for line in f.read_text("utf-8").splitlines() if line.strip()]
            vectors = np.load(d / "vectors.npy")
        except (ValueError, TypeError, OSError) as exc:
            raise StoreError(f"corrupt caption store ({exc})", item=str(d)) from None
        return cls(entries, vectors, text_mean)
