"""The out-of-the-box corrector: fitted label-free on a store's own texts when it is indexed.

``mindgap index`` calls :func:`fit_auto` after ingesting: pseudo queries are the store's
own passages' first sentences (MMQA: the titles; Flickr8k passages: the caption) and the
texts stored with images (titles, captions); for image queries, stored images. Each
query's pseudo gold of a modality is its top-1 item of that modality *other than the item
the query was taken from* (a passage always finds itself). :data:`AUTO_SPEC` is fitted on these pairs and saved as
:data:`AUTO_NAME`, the store's default unless another default was chosen — so a bare
``mindgap search STORE "query"`` returns both modalities; ``--gap naive`` still gives the
raw cosine ranking. No labels are used. Measured in docs/results/fusion/report.md
(``calibrated@corpus``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from ..types import MODALITIES, Modality
from .base import FitData, GapCorrector

log = logging.getLogger(__name__)

#: the recommended label-free corrector (docs/results/fusion/report.md)
AUTO_SPEC = "calibrated"
#: the name it is saved under in the store's manifest
AUTO_NAME = "auto"
_SENT = re.compile(r"(?<=[.!?])\s+")


def pseudo_query_text(text: str | None, max_chars: int = 200) -> str | None:
    """A passage's first sentence (at most ``max_chars``), or ``None`` when empty."""
    t = " ".join((text or "").split())
    if not t:
        return None
    first = _SENT.split(t, maxsplit=1)[0]
    return first[:max_chars].strip() or None


def corpus_queries(store: Any, n: int = 1000, seed: int = 0) -> list[tuple[str, str]]:
    """Up to ``n`` (query text, id of the item it came from), a seeded sample over both modalities."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, str]] = []
    for m in MODALITIES:
        if store.count(m) == 0:
            continue
        ids, _ = store.vectors(m)
        ids = list(ids)
        if len(ids) > n:
            ids = [ids[i] for i in np.sort(rng.choice(len(ids), n, replace=False))]
        for it in store.get(ids):
            q = pseudo_query_text(getattr(it, "text", None)) if it is not None else None
            if q:
                out.append((q, it.id))
    if len(out) > n:
        out = [out[i] for i in np.sort(rng.choice(len(out), n, replace=False))]
    return out


def corpus_fit_data(retr: Any, n: int = 1000, seed: int = 0, batch_size: int = 256) -> FitData | None:
    """Label-free pseudo pairs from the store's own texts (module docstring); ``None`` when the
    store lacks a modality or has no text to make queries from."""
    store = retr.store
    if any(store.count(m) == 0 for m in MODALITIES):
        return None
    qs = corpus_queries(store, n=n, seed=seed)
    if not qs:
        return None
    texts = [t for t, _ in qs]
    src = [s for _, s in qs]
    vecs = np.concatenate([retr.encoder.encode_text(texts[i : i + batch_size], show_progress=False)
                           for i in range(0, len(texts), batch_size)]).astype(np.float32)
    # image queries (search by image): stored images stand in for them, paired like the texts
    rng = np.random.default_rng(seed)
    img_ids, img_vecs = store.vectors(Modality.IMAGE)
    pick = np.sort(rng.choice(len(img_ids), min(n, len(img_ids)), replace=False))
    groups = [(Modality.TEXT, vecs, src), (Modality.IMAGE, np.asarray(img_vecs, np.float32)[pick],
                                           [img_ids[i] for i in pick])]
    rows_q, rows_g, rows_m, rows_qm = [], [], [], []
    for qmod, qv, qsrc in groups:
        for m in MODALITIES:
            res = store.search(qv, 2, m)
            chosen = [next((iid for iid, _ in hits if iid != qsrc[qi]), None) for qi, hits in enumerate(res)]
            got, mat = store.vectors(m, sorted({c for c in chosen if c is not None}))
            lookup = dict(zip(got, mat))
            for qi, c in enumerate(chosen):
                if c is not None and c in lookup:
                    rows_q.append(qv[qi])
                    rows_g.append(lookup[c])
                    rows_m.append(m.value)
                    rows_qm.append(qmod.value)
    if not rows_q:
        return None
    return FitData(queries=np.stack(rows_q), gold=np.stack(rows_g), gold_modality=np.array(rows_m),
                   query_modality=np.array(rows_qm), pairs="pseudo")


def fit_auto(retr: Any, *, make_default: bool | None = None, spec: str = AUTO_SPEC, name: str = AUTO_NAME,
             n: int = 1000, seed: int = 0) -> GapCorrector | None:
    """Fit the out-of-the-box corrector on the store's own texts and save it as ``name``.

    Args:
        retr: a :class:`~mindgap.retriever.Retriever` on the store.
        make_default: make it the store's default; ``None`` = only when the store has no
            default yet (or its default is this automatic one).
        spec: corrector spec; n: pseudo queries; seed: their sample.

    Returns:
        The fitted corrector, or ``None`` (logged) when the store has one modality only or no
        text to make pseudo queries from — searches then stay on the raw cosine.
    """
    from ..errors import MindgapError

    data = corpus_fit_data(retr, n=n, seed=seed)
    if data is None:
        log.info("no automatic gap corrector: the store needs texts and images (and some text)")
        return None
    m = retr.store.manifest
    if make_default is None:
        make_default = m is None or m.default_gap in (None, "naive", name)
    try:
        return retr.fit_gap(spec, data, name=name, make_default=bool(make_default))
    except MindgapError as exc:
        log.warning("automatic gap corrector not fitted: %s", exc)
        return None


__all__ = ["AUTO_SPEC", "AUTO_NAME", "pseudo_query_text", "corpus_queries", "corpus_fit_data", "fit_auto"]
