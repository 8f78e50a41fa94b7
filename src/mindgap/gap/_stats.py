"""Per-modality embedding statistics shared by the embedding-level fixes (center, standardize, distnorm).

Queries and documents get *separate* statistics, as GR-CLIP does (query texts, document
texts, document images): a question is not distributed like a passage. The query side is
estimated from the fitting queries when there are enough of them (labelled or pseudo pairs
carry their queries), otherwise from the corpus sample of the query's modality — the
documented fallback when a store is fitted on its corpus alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError, NotFittedError
from ..types import MODALITIES, Modality
from .base import FitData

QUERY_STATS = ("auto", "queries", "corpus")


def check_query_stats(value: str) -> str:
    if value not in QUERY_STATS:
        raise InputError(f"query_stats must be one of {', '.join(QUERY_STATS)}, got {value!r}", item="query_stats")
    return value


def fit_stats(data: FitData, who: str, *, query_stats: str = "auto", min_queries: int = 20,
              with_std: bool = False, eps: float = 1e-6) -> dict[str, Any]:
    """Means (and per-dimension standard deviations) per item modality and per query modality.

    Returns:
        ``{"item_mean": {m: (d,)}, "query_mean": {m: (d,)}, "query_source": {m: "queries"|"corpus"}}``
        plus ``"item_std"`` / ``"query_std"`` with ``with_std``. Keys are modality values.
    """
    check_query_stats(query_stats)
    corpus = {Modality.parse(m).value: np.asarray(x, np.float32) for m, x in (data.corpus or {}).items() if len(x)}
    if not corpus:
        raise InputError(f"{who} is fitted on a corpus sample: the fitting data has none "
                         "(is the store empty?)", item="corpus")
    need = 2 if with_std else 1
    if query_stats == "queries" and (data.queries is None or len(data.queries) == 0):
        raise InputError(f"{who}: query_stats='queries' but the fitting data has no queries", item="queries")
    for m, x in corpus.items():
        if len(x) < need:
            raise InputError(f"{who} needs at least {need} {m} embeddings in the corpus sample, got {len(x)}",
                             item="corpus")
    out: dict[str, Any] = {"item_mean": {}, "query_mean": {}, "query_source": {}}
    if with_std:
        out["item_std"], out["query_std"] = {}, {}
    for m, x in corpus.items():
        out["item_mean"][m] = x.mean(0)
        if with_std:
            out["item_std"][m] = np.maximum(x.std(0), eps)
    for mod in MODALITIES:
        m = mod.value
        qs = None if query_stats == "corpus" else data.query_sample(m, min_rows=min_queries if query_stats == "auto" else need)
        if qs is None and query_stats == "queries" and m in corpus and data.query_sample(m) is not None:
            raise InputError(f"{who}: too few {m} fitting queries for query statistics", item="queries")
        if qs is not None:
            src, x = "queries", qs
        elif m in corpus:
            src, x = "corpus", corpus[m]
        else:
            continue
        out["query_source"][m] = src
        out["query_mean"][m] = x.mean(0)
        if with_std:
            out["query_std"][m] = np.maximum(x.std(0), eps)
    return out


def lookup(table: dict[str, np.ndarray] | None, modality: Modality | str, who: str, side: str) -> np.ndarray:
    """``table[modality]`` or a clear :class:`NotFittedError`."""
    if table is None:
        raise NotFittedError(f"gap corrector {who!r} is not fitted; run `mindgap fit-gap` first", item=who)
    m = Modality.parse(modality).value
    if m not in table:
        raise NotFittedError(f"{who} has no {side} statistics for {m} (fitted: {', '.join(sorted(table)) or 'none'}); "
                             f"refit with a corpus sample containing {m} items", item=who)
    return np.asarray(table[m], np.float32)
