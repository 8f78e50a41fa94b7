"""Hybrid lexical + dense search (issue 15): BM25 evidence fused through the calibrated layer.

Per text query and item modality M the candidates are the union of the dense top ``depth``
(the store's index) and the BM25 top ``lex_depth`` of M (:class:`~mindgap.lexical.LexicalIndex`).
Every candidate gets its dense probability ``P_d`` from the probability corrector
(``calibrated``, the store's ``auto``: the list posterior of METHODS §6, computed over the
candidates' cosines). Then, rule ``calibrated`` (the default):

* an item **with text**: ``P = σ(w_M · [logit P_d, s / s_max, log(1 + s), ℓ] + b_M)`` — ``s``
  its BM25 score (``0`` when its text does not match), ``s_max`` the query's best BM25 score
  over both modalities, ``ℓ`` its *linked* evidence: ``s_p / s_max`` of the best of the query's
  top :data:`LINK_PASSAGES` BM25 passages that mention the item's name
  (:meth:`~mindgap.lexical.LexicalIndex.linked`; 0 when none does) — the second hop of a
  question that reaches an image through a passage; such items join the candidates;
  ``w_M, b_M`` a logistic regression fitted per item modality on the
  candidates of fitting queries (labelled: the benchmark's fit split; the model's held-out
  calib captions) — :func:`fit_fusion`;
* an item **without text** (a photo with no title, caption, alt text or file-name words):
  its lexical signal is *missing*, not zero: ``P = P_d``, the dense probability, calibrated
  on the same event, so it stays comparable with the texts' fused probability.

With ``w = (1, 0, 0), b = 0`` the rule is the dense ranking itself, which is what a modality
gets when it has too few fitting positives. Items are then ranked by ``P`` with the dense
corrector's coverage term (``λ · log((S_j + ε)/(S_{j−1} + ε))`` over each modality's list by
``P``), and ``min_prob`` cuts on ``P``.

The peers' rules, on the same two lists (the dense list ranked by the dense corrector's score
across modalities, the BM25 list across modalities; an item absent from a list contributes
nothing, which is how they treat an image without text):

* ``weighted`` — ``0.7 · minmax(dense) + 0.3 · minmax(BM25)`` (LanceDB's linear combination);
* ``rrf`` — ``Σ 1 / (60 + rank)`` (Qdrant, LanceDB, Weaviate's ranked fusion);
* ``minmax`` — ``minmax(dense) + minmax(BM25)`` (Weaviate's relative score fusion);
* ``dbsf`` — each list normalised by ``(s − (μ − 3σ)) / 6σ``, clipped to [0, 1], summed (Qdrant);
* ``lexical`` — BM25 alone (items that match, best first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .stores.base import best_first
from .types import MODALITIES, Hit, Modality

RULES = ("calibrated", "weighted", "rrf", "minmax", "dbsf", "lexical")
#: BM25 candidates per modality added to the dense ones
LEX_DEPTH = 50
#: the query's best BM25 passages whose mentions of item names count as linked evidence
LINK_PASSAGES = 5
#: the fusion's features for an item with text
FEATURES = ("logit P_dense", "bm25 / max", "log(1 + bm25)", "linked")
_EPS = 1e-6
#: Fusion weights of a store that has none fitted: one fit over the fit candidates of both
#: benchmarks (MMQA fit split, Flickr8k calib) with the label-free dense corrector ``auto`` that
#: ``mindgap index`` fits — fit data only, never test data; docs/results/hybrid/results.json
#: ("default_fusion") records it and the "hybrid on auto, default weights" rows of report.md measure it.
DEFAULT_FUSION: dict[str, Any] | None = {
    "coef": {"text": [0.710135, 1.311272, 0.048988, -0.140016], "image": [0.52064, 0.604991, 0.925147, 3.121303]},
    "intercept": {"text": -1.255576, "image": -2.853335},
    "no_text": {"text": [1.0, 0.0], "image": [0.654539, -0.433812]},
    "fitted_on": "default: MMQA fit split + Flickr8k calib fit (gold labels), dense auto",
}


def parse_rule(hybrid: bool | str | None) -> str | None:
    """``True`` / ``"calibrated"`` → ``"calibrated"``; a peer rule name; ``False``/``None`` → ``None``."""
    if hybrid is None or hybrid is False:
        return None
    if hybrid is True:
        return "calibrated"
    rule = str(hybrid).strip().lower()
    if rule in ("", "false", "0", "no", "off", "dense"):
        return None
    if rule in ("true", "1", "yes", "on", "hybrid"):
        return "calibrated"
    if rule not in RULES:
        raise InputError(f"unknown hybrid rule {hybrid!r}; use one of: {', '.join(RULES)}", item="hybrid")
    return rule


@dataclass
class FusionModel:
    """Per item modality: for items with text, logistic weights on :data:`FEATURES`
    (``[logit P_d, s/s_max, log1p(s), linked]``; a model saved with the first three reads the
    fourth as 0) and an intercept; for items without text (a missing lexical signal), ``σ(a · logit P_d + b)``
    — the dense evidence alone, recalibrated on the same candidates so the two stay comparable."""

    coef: dict[str, list[float]] = field(default_factory=lambda: {m.value: [1.0, 0.0, 0.0, 0.0] for m in MODALITIES})
    intercept: dict[str, float] = field(default_factory=lambda: {m.value: 0.0 for m in MODALITIES})
    no_text: dict[str, list[float]] = field(default_factory=lambda: {m.value: [1.0, 0.0] for m in MODALITIES})
    fitted_on: str = "identity (dense only)"
    positives: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a model saved before a feature existed reads that feature's weight as 0
        n = len(FEATURES)
        self.coef = {k: ([float(x) for x in v] + [0.0] * n)[:n] for k, v in self.coef.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "intercept": self.intercept, "no_text": self.no_text, "fitted_on": self.fitted_on,
                "positives": self.positives}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "FusionModel":
        if not d:
            return cls()
        return cls(coef=dict(d["coef"]),
                   intercept={k: float(v) for k, v in d["intercept"].items()},
                   no_text={k: [float(x) for x in v] for k, v in (d.get("no_text") or {}).items()}
                   or {m.value: [1.0, 0.0] for m in MODALITIES},
                   fitted_on=str(d.get("fitted_on", "")), positives=dict(d.get("positives") or {}))

    def prob(self, m: Modality, p_dense: np.ndarray, bm25: np.ndarray, s_max: float,
             link: np.ndarray | None = None) -> np.ndarray:
        """Fused P for candidates of modality ``m``; NaN ``bm25`` (no text): the no-text model."""
        x = features(p_dense, bm25, s_max, link)
        w = np.asarray(self.coef.get(m.value, [1.0] + [0.0] * (len(FEATURES) - 1)), np.float64)
        z = x @ w + float(self.intercept.get(m.value, 0.0))
        a, b = self.no_text.get(m.value, [1.0, 0.0])
        z = np.where(np.isnan(bm25), a * x[:, 0] + b, z)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def features(p_dense: np.ndarray, bm25: np.ndarray, s_max: float, link: np.ndarray | None = None) -> np.ndarray:
    """The :data:`FEATURES` of candidates (``link``: their linked evidence, ``None`` = none)."""
    p = np.clip(np.asarray(p_dense, np.float64), 1e-7, 1 - 1e-7)
    s = np.nan_to_num(np.asarray(bm25, np.float64), nan=0.0)
    rel = s / s_max if s_max > 0 else np.zeros_like(s)
    ln = np.zeros_like(s) if link is None else np.nan_to_num(np.asarray(link, np.float64), nan=0.0)
    return np.stack([np.log(p) - np.log1p(-p), rel, np.log1p(s), ln], axis=1)


@dataclass
class Candidates:
    """One query's candidates over the modalities searched."""

    ids: list[str]
    modality: list[Modality]
    cosine: np.ndarray
    p_dense: np.ndarray  # the dense corrector's probability (its score when it gives none)
    dense_score: np.ndarray  # the dense corrector's ranking score
    in_dense: np.ndarray  # bool: in the dense top depth
    bm25: np.ndarray  # NaN = the item carries no text (missing); 0 = has text, no match
    s_max: float
    link: np.ndarray | None = None  # linked evidence (LexicalIndex.linked, / s_max); None = not computed
    mod_values: np.ndarray | None = None  # ``modality`` as an array of values ("text"/"image"); None = derive

    def mods(self) -> np.ndarray:
        """The candidates' modality values as an array (cached)."""
        if self.mod_values is None or len(self.mod_values) != len(self.ids):
            self.mod_values = np.asarray([m.value for m in self.modality])
        return self.mod_values


def gather(retr: Any, q: np.ndarray, qmod: Modality, texts: Sequence[str], *, gap_name: str, corr: Any,
           depth: int, mods: Sequence[Modality], lex_depth: int = LEX_DEPTH,
           dense_score: bool = True, link: bool = True) -> list[Candidates]:
    """Dense + lexical (+ linked) candidates of each query (``q`` rows, ``texts`` their strings).

    ``dense_score=False`` (the calibrated rule needs only probabilities) skips the corrector's
    ranking score (``Candidates.dense_score`` is then the probability). ``link=False`` skips the
    linked evidence (``Candidates.link`` stays ``None``)."""
    lex = retr.lexical_index(sync=True)
    no_text = lex.no_text_ids()
    # per query: one block of candidates per modality (ids, modality, cos, p_dense, dense score, in dense, bm25, link)
    blocks: list[list[tuple[Any, ...]]] = [[] for _ in q]

    def lexical_side(t: str) -> tuple[dict[Modality, dict[str, float]], dict[str, tuple[float, str]]]:
        full = {m: lex.search(t, lex_depth, m, with_body=LINK_PASSAGES if link and m == Modality.TEXT else False)
                for m in mods}
        hits = {m: {h[0]: h[1] for h in hs} for m, hs in full.items()}
        if not link:
            return hits, {}
        top = full[Modality.TEXT] if Modality.TEXT in full else lex.search(t, LINK_PASSAGES, Modality.TEXT,
                                                                           with_body=LINK_PASSAGES)
        return hits, lex.linked(top[:LINK_PASSAGES])

    # the BM25 side runs on worker threads while the dense search scans (tantivy and BLAS both
    # release the GIL): a batch split over the pool (one chunk each), a short batch as one job when
    # a core is likely free (_spare_core); else in line: on 2 cores a BM25 thread beside BLAS's two
    # slowed a single 100K-item search (4.8 ms in line vs 5.0 ms threaded)
    n_jobs = min(_WORKERS, len(texts) // 8) or (1 if _spare_core() else 0)
    cuts = [len(texts) * j // n_jobs for j in range(n_jobs + 1)] if n_jobs else []
    lex_jobs = [_pool().submit(lambda a=a, b=b: [lexical_side(t) for t in texts[a:b]])
                for a, b in zip(cuts[:-1], cuts[1:])]
    dense_res: dict[Modality, Any] = {}
    for m in mods:
        if retr.store.count(m) == 0:
            continue
        dense_res[m] = retr.dense_candidates(corr, gap_name, q, qmod, m, depth)
    sides = ([side for job in lex_jobs for side in job.result()] if lex_jobs
             else [lexical_side(t) for t in texts])
    lex_hits = [h for h, _ in sides]
    links = [ln for _, ln in sides]
    # the candidates each query adds beyond its dense list: BM25 hits, then linked items, per modality
    more = [{m: list(dict.fromkeys([*lex_hits[qi][m], *(i for i, (_, lm) in links[qi].items() if lm == m.value)]))
             for m in mods} for qi in range(len(q))]
    gives_p = getattr(corr, "gives_probability", False)
    for m, (qm, res) in dense_res.items():
        in_dense = [{c[0] for c in r} for r in res]
        extra_ids = sorted({i for qi in range(len(q)) for i in more[qi][m] if i not in in_dense[qi]})
        got, emat = retr.store.vectors(m, extra_ids) if extra_ids else ([], np.zeros((0, q.shape[1]), np.float32))
        if corr.transforms_items and len(got):
            emat = corr.transform_items(emat, m)
        # calibrated:hub ranks cosine − a per-item term (the dense lists come corrected already)
        eoff = (np.asarray(corr.item_offsets(emat, m, ids=got), np.float64) if len(got) and getattr(corr, "adjusts_items", False)
                else np.zeros(len(got)))
        row_of = {i: j for j, i in enumerate(got)}
        for qi in range(len(q)):
            dense = res[qi]
            seen = in_dense[qi]
            ex = [i for i in more[qi][m] if i not in seen and i in row_of]
            ids_q = [c[0] for c in dense] + ex
            n = len(ids_q)
            if not n:
                continue
            sims = np.empty(n, np.float64)
            cos = np.empty(n, np.float64)  # the raw cosines (sims: what the corrector scores)
            sims[: len(dense)] = [c[1] for c in dense]
            cos[: len(dense)] = [c[-1] for c in dense]
            if ex:
                rows = [row_of[i] for i in ex]
                cos[len(dense):] = emat[rows] @ qm[qi]
                sims[len(dense):] = cos[len(dense):] - eoff[rows]
            order = best_first(sims, lambda o, ids_q=ids_q: [ids_q[j] for j in o])
            ids_s = [ids_q[j] for j in order]
            ss = sims[order][None]
            pd = np.asarray(corr.probability(ss, q[qi : qi + 1], qmod, m))[0] if gives_p else None
            ds = pd if (pd is not None and not dense_score) else np.asarray(
                corr.score_query(ss, q[qi : qi + 1], qmod, m))[0]
            lh, lk = lex_hits[qi][m], links[qi]
            bm = np.asarray([lh.get(i, math.nan if i in no_text else 0.0) for i in ids_s], np.float64)
            ln = np.asarray([lk[i][0] if i in lk else 0.0 for i in ids_s], np.float64) if lk else np.zeros(n)
            blocks[qi].append((ids_s, m, cos[order], ds if pd is None else pd, ds, order < len(dense), bm, ln))
    out = []
    for qi, bl in enumerate(blocks):
        s_max = max([sc for m in mods for sc in lex_hits[qi][m].values()]
                    + [sc for sc, _ in links[qi].values()], default=0.0)
        if not bl:
            out.append(Candidates([], [], *(np.zeros(0) for _ in range(3)), np.zeros(0, bool), np.zeros(0),
                                  float(s_max), np.zeros(0) if link else None, np.zeros(0, "<U5")))
            continue
        cat = (lambda k, dt: np.concatenate([b[k] for b in bl]).astype(dt, copy=False))
        ln = cat(7, np.float64)
        out.append(Candidates([i for b in bl for i in b[0]], [b[1] for b in bl for _ in b[0]], cat(2, np.float64),
                              cat(3, np.float64), cat(4, np.float64), cat(5, bool), cat(6, np.float64),
                              float(s_max), (ln / s_max if s_max > 0 else np.zeros(len(ln))) if link else None,
                              np.asarray([b[1].value for b in bl for _ in b[0]])))
    return out


_POOL: Any = None
#: BM25 worker threads: a batch's queries are split over them (tantivy releases the GIL)
_WORKERS = 2


_BLAS: Any = None


def _spare_core() -> bool:
    """Whether a BM25 thread beside the dense scan is likely to find a core: more than 2 cores
    (not measured: no such machine here), or numpy's BLAS limited below the core count (read per
    call, ~1 µs: a caller may limit it with threadpoolctl; measured: 1.22× dense at 100K items with
    BLAS on 1 of 2 cores). On 2 cores with BLAS on both, a BM25 thread slowed single 100K-item
    searches (benchmarks/search.py --hybrid), so it runs in line there."""
    global _BLAS
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores > 2:
        return True
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # noqa: BLE001 - threadpoolctl is optional here
            _BLAS = []
    return bool(_BLAS) and max(lib.num_threads for lib in _BLAS) < cores


def _pool() -> Any:
    """The worker threads for the BM25 side of hybrid searches (created on first use)."""
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="mindgap-bm25")
    return _POOL


def _minmax(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    if present.any():
        v = x[present]
        lo, hi = v.min(), v.max()
        out[present] = (v - lo) / (hi - lo) if hi > lo else 1.0
    return out


def _dbsf(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    if present.any():
        v = x[present]
        mu, sd = v.mean(), v.std()
        out[present] = np.clip((v - (mu - 3 * sd)) / (6 * sd), 0, 1) if sd > 0 else 0.5
    return out


def _ranks(x: np.ndarray, present: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    r = np.full(len(x), np.inf)
    idx = [j for j in np.flatnonzero(present)]
    idx.sort(key=lambda j: (-x[j], ids[j]))
    for rank, j in enumerate(idx, 1):
        r[j] = rank
    return r


def fuse(c: Candidates, rule: str, model: FusionModel | None = None, *, coverage: float = 0.0,
         eps: float = 0.01) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores for one query's candidates (higher first) and, for ``calibrated``, the probabilities."""
    n = len(c.ids)
    if n == 0:
        return np.zeros(0), None
    bm = np.nan_to_num(c.bm25, nan=0.0)
    lex_present = bm > 0
    if rule == "calibrated":
        model = model or FusionModel()
        P = np.zeros(n)
        mods = c.mods()
        for m in MODALITIES:
            sel = mods == m.value
            if sel.any():
                P[sel] = model.prob(m, c.p_dense[sel], c.bm25[sel], c.s_max,
                                    None if c.link is None else c.link[sel])
        score = P.copy()
        if coverage > 0:
            for m in MODALITIES:
                sel = np.flatnonzero(mods == m.value)
                if len(sel):
                    order = sel[np.argsort(-P[sel], kind="stable")]
                    cum = np.cumsum(P[order])
                    score[order] = P[order] + coverage * np.log((cum + eps) / (cum - P[order] + eps))
        return score, P
    if rule == "lexical":
        return np.where(lex_present, bm, -np.inf), None
    dense = c.dense_score
    if rule == "rrf":
        rd, rl = _ranks(dense, c.in_dense, c.ids), _ranks(bm, lex_present, c.ids)
        return 1.0 / (60 + rd) + 1.0 / (60 + rl), None
    if rule == "weighted":
        return 0.7 * _minmax(dense, c.in_dense) + 0.3 * _minmax(bm, lex_present), None
    if rule == "minmax":
        return _minmax(dense, c.in_dense) + _minmax(bm, lex_present), None
    if rule == "dbsf":
        return _dbsf(dense, c.in_dense) + _dbsf(bm, lex_present), None
    raise InputError(f"unknown hybrid rule {rule!r}; use one of: {', '.join(RULES)}", item="hybrid")


def rank_hits(c: Candidates, score: np.ndarray, k: int, probs: np.ndarray | None = None,
              min_prob: float | None = None) -> list[Hit]:
    """The top ``k`` candidates by ``score`` (ties by id) as hits."""
    ok = np.isfinite(score)
    if min_prob is not None and probs is not None:
        ok &= np.asarray(probs) >= min_prob
    keep = np.flatnonzero(ok)
    top = keep[best_first(score[keep], lambda o: [c.ids[j] for j in keep[o]], k)]
    if not len(top):
        return []
    mods = c.mods()
    cos = c.cosine
    # each hit's rank within its modality by cosine (ties by id), among the candidates: one
    # (hits × candidates) comparison
    same = mods[None, :] == mods[top][:, None]
    mrank = 1 + (same & (cos[None, :] > cos[top][:, None])).sum(1)
    ties = np.flatnonzero((same & (cos[None, :] == cos[top][:, None])).sum(1) > 1)
    for r in ties.tolist():
        j = top[r]
        mrank[r] += sum(1 for i in np.flatnonzero((cos == cos[j]) & (mods == mods[j])).tolist() if c.ids[i] < c.ids[j])
    return [Hit(id=c.ids[j], modality=c.modality[j], cosine=float(cos[j]), score=float(score[j]), rank=r + 1,
                modality_rank=int(mr)) for r, (j, mr) in enumerate(zip(top.tolist(), mrank.tolist()))]


def fit_fusion(cands: Sequence[Candidates], relevant: Sequence[Sequence[str]], *, fitted_on: str,
               min_pos: int = 3, l2: float = 1.0, pooled: bool = False) -> FusionModel:
    """Fit the fusion on fitting queries' candidates (label: the candidate is in ``relevant``).

    Per item modality: the with-text model on the candidates that carry text, the no-text model
    on those that carry none. A part with fewer than ``min_pos`` positives keeps the identity
    (the dense probability). ``pooled`` (the ablation): one with-text model for both
    modalities, every item treated as carrying text (a missing signal read as a BM25 zero).
    """
    from .gap.calibrated import fit_logistic

    model = FusionModel(fitted_on=fitted_on)
    groups = [(None, list(MODALITIES))] if pooled else [(m, [m]) for m in MODALITIES]
    for key, mods in groups:
        for part in ("text", "no_text"):
            if pooled and part == "no_text":
                continue
            X, y = [], []
            for c, rel in zip(cands, relevant):
                rs = set(rel)
                sel = [j for j in range(len(c.ids)) if c.modality[j] in mods
                       and (pooled or np.isnan(c.bm25[j]) == (part == "no_text"))]
                if not sel:
                    continue
                bm = np.nan_to_num(c.bm25[sel], nan=0.0) if pooled else c.bm25[sel]
                f = features(c.p_dense[sel], bm, c.s_max, None if c.link is None else c.link[sel])
                X.append(f if part == "text" else f[:, :1])
                y.extend(float(c.ids[j] in rs) for j in sel)
            npos = int(sum(y))
            name = "all" if key is None else key.value
            model.positives[name if part == "text" else f"{name} (no text)"] = npos
            if npos < min_pos or npos == len(y):
                continue
            coef, b = fit_logistic(np.concatenate(X), np.asarray(y), l2=l2)
            for m in mods:
                if part == "text":
                    model.coef[m.value] = [round(float(v), 6) for v in coef]
                    model.intercept[m.value] = round(float(b), 6)
                else:
                    model.no_text[m.value] = [round(float(coef[0]), 6), round(float(b), 6)]
    return model


def fit_store_fusion(retr: Any, queries: Sequence[tuple[str, Sequence[str]]], *, gap: str | None = None,
                     fitted_on: str = "", save: bool = True) -> FusionModel:
    """Fit a store's hybrid fusion weights on labelled text queries (``[(query, [gold ids])]``) and,
    with ``save``, record them in its manifest (``mindgap fit-hybrid``; the store's searches then
    use them instead of :data:`DEFAULT_FUSION`).

    The candidates are the ones a hybrid search of the store scores — dense top ``max(20, depth)``
    per modality from the probability corrector ``gap`` (default: the store's), the BM25 top
    :data:`LEX_DEPTH` per modality and the linked items — so the weights are fitted on what they
    will rank. A modality with fewer than three gold candidates keeps the identity (its dense
    probability); :attr:`FusionModel.positives` says how many each part had.
    """
    if not queries:
        raise InputError("no labelled queries to fit the hybrid weights on", item="pairs")
    gap_name = retr.gap_name(gap)
    corr = retr.gap(gap_name)
    if not getattr(corr, "gives_probability", False):
        raise InputError(f"hybrid weights fuse probabilities: use a probability corrector (calibrated, the store's "
                         f"'auto'), not {gap_name!r}", item="gap")
    texts = [t for t, _ in queries]
    qv = np.asarray(retr.encoder.encode_text(texts, show_progress=False), np.float32)
    depth = max(int(getattr(corr, "list_depth", None) or 0), 20)
    cands = gather(retr, qv, Modality.TEXT, texts, gap_name=gap_name, corr=corr, depth=depth, mods=list(MODALITIES),
                   dense_score=False)
    model = fit_fusion(cands, [list(g) for _, g in queries],
                       fitted_on=fitted_on or f"{len(queries)} labelled queries, dense {gap_name}")
    if save:
        retr.save_fusion_model(model)
    return model


def hybrid_search(retr: Any, q: np.ndarray, qmod: Modality, texts: Sequence[str] | None, *, k: int, rule: str,
                  gap_name: str, corr: Any, modality: Modality | str | None = None,
                  min_prob: float | None = None) -> list[list[Hit]]:
    """The retriever's hybrid path (``Retriever.search_vectors(..., hybrid=...)``)."""
    if texts is None or len(texts) != len(q):
        raise InputError("hybrid search needs the query text (lexical evidence); image queries search dense only",
                         item="hybrid")
    if min_prob is not None and rule != "calibrated":
        raise InputError(f"min_prob needs the calibrated hybrid rule, not {rule!r}", item="min_prob")
    if rule == "calibrated" and not getattr(corr, "gives_probability", False):
        raise InputError(f"hybrid search fuses probabilities: use a probability corrector (calibrated, the store's "
                         f"'auto'), not {gap_name!r}, or a peer rule (weighted, rrf, minmax, dbsf)", item="gap")
    depth = max(int(k), int(getattr(corr, "list_depth", None) or 0), 20)
    mods = [Modality.parse(modality)] if modality else list(MODALITIES)
    cands = gather(retr, q, qmod, texts, gap_name=gap_name, corr=corr, depth=depth, mods=mods,
                   dense_score=rule != "calibrated")
    model = retr.fusion_model()
    cov = float(getattr(corr, "coverage", 0.0) or 0.0)
    eps = float(getattr(corr, "eps", 0.01) or 0.01)
    out = []
    for c in cands:
        score, probs = fuse(c, rule, model, coverage=cov, eps=eps)
        out.append(rank_hits(c, score, k, probs, min_prob))
    return out


__all__ = ["Candidates", "FEATURES", "FusionModel", "LINK_PASSAGES", "RULES", "fit_fusion", "fit_store_fusion", "fuse",
           "gather", "hybrid_search", "parse_rule", "rank_hits"]
