"""A toy modality gap shared by the fusion tests: texts near the query direction (high
cosines), images offset (lower ones); each query has one relevant text and one relevant image."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mindgap.gap import FitData
from mindgap.manifest import Manifest
from mindgap.stores.exact import ExactStore
from mindgap.types import Item, Modality


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def toy_gap(path: Path | None = None, d: int = 32, n: int = 300, n_fit: int = 100) -> SimpleNamespace:
    """An exact store (in memory, or saved at ``path``) of ``n`` texts and ``n`` images, the
    ``n`` text queries, and gold fitting pairs of the first ``n_fit`` topics (→ text and → image)."""
    rng = np.random.default_rng(0)
    topics = unit(rng.standard_normal((n, d)))
    gap_t, gap_i = unit(rng.standard_normal(d)), unit(rng.standard_normal(d))
    texts = unit(topics + 0.35 * rng.standard_normal((n, d)) + 2.5 * gap_t)
    images = unit(topics + 0.35 * rng.standard_normal((n, d)) + 2.5 * gap_i)
    queries = unit(topics + 0.35 * rng.standard_normal((n, d)) + 2.5 * gap_t)
    st = ExactStore(path) if path is not None else ExactStore()
    st.add([Item(f"t{i}", Modality.TEXT, text=f"passage {i}") for i in range(n)], texts)
    st.add([Item(f"i{i}", Modality.IMAGE, uri=f"/img/{i}.jpg") for i in range(n)], images)
    st.save_manifest(Manifest(encoder_spec="synthetic", dim=d))
    fit = np.arange(n_fit)
    data = FitData(queries=np.concatenate([queries[fit], queries[fit]]),
                   gold=np.concatenate([texts[fit], images[fit]]),
                   gold_modality=np.array(["text"] * n_fit + ["image"] * n_fit), query_modality="text")
    return SimpleNamespace(store=st, path=path, queries=queries, texts=texts, images=images, data=data,
                           test=np.arange(n_fit, n))
