"""``calibrated``: P(relevant | cosine, item modality, query modality), then rank (METHODS §6).

Fitting (labelled pairs, or label-free pseudo pairs), per (query modality, item modality M)
(step 0, the hubness term, is described after step 3):

1. **Per-item calibration.** Positives: the fitting pairs whose gold has modality M (their
   cosine). Negatives: the same queries against the corpus sample of M (the store's own
   items; a sample entry identical to the pair's gold is dropped), each weighted so that a
   query has ``N_M − 1`` negatives for one positive, ``N_M`` the store's count of M. So the
   base rate is the store's: ``p(s) = P(this M item is the query's relevant one | cosine s)``.
   ``method=platt``: a 1-D logistic regression on the cosine (monotone by construction when
   the slope is positive, which it is on any data where relevant items score higher);
   ``method=isotonic``: weighted pool-adjacent-violators on binned cosines (a monotone step
   function; ties inside a step are broken by item id).
2. **Query-adaptive list posterior.** A search returns, per modality, the query's top
   ``depth`` candidates. With per-item odds ``o_j = p_j / (1 − p_j)`` the posterior that
   candidate ``j`` is the query's relevant M item, allowing for "none of these" (the
   relevant item is below the list, or the store holds none), is

       P_j = o_j^t / (Σ_{i in list} o_i^t + c)

   ``t`` (a temperature) and ``c`` (the mass of "the relevant item is below the list") are
   fitted by maximum likelihood on the fitting queries' simulated candidate lists (corpus
   sample + gold); pseudo golds are their list's top-1 by construction, so on pseudo pairs
   ``t = 1`` and ``c = 0``. Fitting pairs always have a relevant item, a user's query may
   not: ``c`` also gets ``(1 − π)/π · M₀``, with π (``prior``, default ½) the prior
   probability that the store holds a relevant item of the modality and ``M₀`` the list mass
   ``Σ o_i^t`` of the fitting queries' lists *without* their gold (median) — what a list
   looks like when nothing in it is relevant. A candidate that
   stands out from the rest of *this query's* list gets a high P; a flat list — nothing in
   the store matches — gives every candidate a low one. That is the query-adaptive
   normalisation that survived measurement (docs/results/fusion/report.md); ``P_j`` is what
   ``min_prob`` cuts on.
3. **Soft routing** (``soft_route=true``, labelled pairs only): a logistic regression on the
   query embedding gives P(the query's answer is an M item | q); ``P_j`` is multiplied by
   it instead of searching one modality only (``modal-clf``'s hard route).

0. **Hubness term** (``hub``, default 0.5; ``hub=0`` turns it off). Some items are *hubs*: close
   to the other modality as a whole, they score high for every query (an image near the text
   cone, a passage near the image cone). Before 1 and 2, each candidate's cosine ``s`` becomes
   ``s − hub · r(x)``, with ``r(x)`` the mean cosine of the item ``x`` to its ``hub_k`` (10)
   nearest items of the *other* modality in a sample of the store (``hub_ref``, at most 500,
   kept at fit time): CSLS (Conneau et al., 2018) with the store's other modality standing in
   for the queries, applied per item. The term depends on the item alone, so it is computed
   once per store: ``fit_gap`` (so ``mindgap index``) and the server compute every item's term
   (:meth:`mindgap.retriever.Retriever.warm_gap`), indexing adds new items' terms, and the table
   is saved beside the store (:mod:`mindgap.gap.terms`); each term is checked against a
   fingerprint of its item's vector. The exact store ranks each modality by ``cosine − term``
   over all its items (the terms read by row); a store without that (an ANN index) is asked for
   twice the list's depth by cosine (``HUB_FETCH``), re-ranked by ``cosine − term``. 1 and 2
   are fitted on the corrected cosines of the same pairs and negatives. ``fit`` also fits 1 and 2 on raw cosines (``calib0_``), which
   :meth:`Calibrated.without_hub` uses where only cosines are at hand
   (:func:`mindgap.gap.portable.fuse` without vectors). The weight 0.5 was chosen on the calib
   photos (docs/results/fusion/select_hub_on_calib.md); the gain is measured in
   docs/results/fusion/report.md.

Ranking: ``coverage=0`` ranks by ``P_j`` (the probability ranking principle: the most
likely relevant items first, whatever their modality). ``coverage=λ > 0`` adds
``λ · log((S_j + N + ε) / (S_{j−1} + N + ε))`` where ``S_j = P_1 + … + P_j`` is the probability
that the query's relevant M item is among its first ``j`` candidates and ``N`` the list
posterior's probability that the store holds no relevant M item at all (the prior π's share of
its "none" mass; ``cover_none``): the marginal gain in log P(the top k holds the relevant item of
every modality that has one), so a result list that has found a likely text turns to the best
image before a second, unlikely text — unless no image is likely relevant (a flat image list, a
question only text answers), which then takes no place from the texts. Without ``N``
(``cover_none=false``, the gain as first shipped) the first candidate of every modality gains
``λ · log(1 + P_1/ε)``, however unlikely: on the MMQA slice that put an image above the gold
passage of a text question (docs/results/fusion/cover_none.md). Both terms fall along a
modality's list, so per-modality top-k then merge stays exact.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError, NotFittedError
from ..types import Modality
from .base import FitData, GapCorrector, HeadScorer

try:  # the head scorer in C (src/mindgap/gap/_calibrated_head.c), built at install where a compiler is
    from . import _calibrated_head as _compiled
except ImportError:  # pragma: no cover - depends on the install; the Python head is the same scorer
    _compiled = None

METHODS = ("platt", "isotonic")
#: items per modality whose hubness term :meth:`Calibrated.item_offsets` keeps in memory
HUB_CACHE_MAX = 200_000
_EPS_P = 1e-7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS_P, 1 - _EPS_P)
    return np.log(p) - np.log1p(-p)


def fit_logistic_1d(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-6, iters: int = 50) -> tuple[float, float]:
    """Weighted 1-D logistic regression ``P(y=1|x) = σ(a x + b)`` by Newton's method."""
    x, y, w = (np.asarray(v, np.float64) for v in (x, y, w))
    X = np.stack([x, np.ones_like(x)], 1)
    beta = np.zeros(2)
    wsum = w.sum()
    for _ in range(iters):
        z = X @ beta
        p = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
        g = X.T @ (w * (p - y)) / wsum + l2 * beta
        h = (X * (w * p * (1 - p))[:, None]).T @ X / wsum + l2 * np.eye(2)
        step = np.linalg.solve(h, g)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(beta[0]), float(beta[1])


def fit_isotonic(x: np.ndarray, y: np.ndarray, w: np.ndarray, bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Weighted isotonic (non-decreasing) fit of ``y`` on ``x`` over quantile bins (PAV).

    Bin edges: quantiles of the positives and of the negatives (half of ``bins`` each), so
    the rare positives' range is resolved. Returns bin centres and fitted probabilities.
    """
    x, y, w = (np.asarray(v, np.float64) for v in (x, y, w))
    qs = np.linspace(0, 1, max(2, bins // 2) + 1)
    edges = np.unique(np.concatenate([np.quantile(x[y > 0], qs) if (y > 0).any() else [],
                                      np.quantile(x[y <= 0], qs) if (y <= 0).any() else []]))
    if len(edges) < 2:
        edges = np.array([x.min(), x.max() + 1e-9])
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    wt = np.bincount(b, weights=w, minlength=len(edges) - 1)
    wy = np.bincount(b, weights=w * y, minlength=len(edges) - 1)
    wx = np.bincount(b, weights=w * x, minlength=len(edges) - 1)
    keep = wt > 0
    val, wt, cx = (wy[keep] / wt[keep]), wt[keep], wx[keep] / wt[keep]
    # pool adjacent violators
    blocks: list[list[float]] = []  # [value, weight, n_bins]
    for v, ww in zip(val, wt):
        blocks.append([v, ww, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    fitted = np.concatenate([[v] * int(n) for v, _, n in blocks])
    return cx.astype(np.float32), np.clip(fitted, _EPS_P, 1 - _EPS_P).astype(np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 30) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression on rows of ``x`` (Newton); returns (coef, intercept)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    n, d = x.shape
    X = np.concatenate([x, np.ones((n, 1))], 1)
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, l2 / n)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ beta, -40, 40)))
        g = X.T @ (p - y) / n + reg * beta
        h = (X * (p * (1 - p))[:, None]).T @ X / n + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return beta[:-1].astype(np.float32), float(beta[-1])


def list_nll(ell: np.ndarray, pos: np.ndarray, t: float, log_c: float) -> float:
    """Mean negative log-likelihood of the list posterior (``pos`` = gold's list index, −1 = not listed)."""
    z = t * ell
    lz = np.logaddexp(np.logaddexp.reduce(z, axis=1), log_c)
    got = np.where(pos >= 0, np.take_along_axis(z, np.maximum(pos, 0)[:, None], 1)[:, 0], log_c)
    return float(-(got - lz).mean())


def fit_list_posterior(ell: np.ndarray, pos: np.ndarray) -> tuple[float, float]:
    """(t, log c) minimising :func:`list_nll` (coarse grid, then a finer one around the best)."""
    best = (math.inf, 1.0, 0.0)
    for ts, cs in ((np.geomspace(0.1, 8, 25), np.linspace(-12, 8, 41)), (None, None)):
        if ts is None:
            t0, c0 = best[1], best[2]
            ts = t0 * np.geomspace(0.8, 1.25, 15)
            cs = np.linspace(c0 - 0.6, c0 + 0.6, 25)
        for t in ts:
            for c in cs:
                v = list_nll(ell, pos, float(t), float(c))
                if v < best[0]:
                    best = (v, float(t), float(c))
    return best[1], best[2]


class _TermMemo:
    """Per-item terms of one modality kept by id, each with a 64-bit fingerprint of the vector it
    was computed from (an id re-indexed with another vector is recomputed); at most
    :data:`HUB_CACHE_MAX` items (then it starts over). Lookups are vectorised: a dictionary get
    per id, one fingerprint product for the batch. Thread-safe (a server searches from several
    threads); ``computed`` counts the terms computed here (not looked up or loaded)."""

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.words = (self.dim + 1) // 2  # the vector's bits as 64-bit words (float32 pairs)
        self.mult = np.random.default_rng(0x6D67).integers(1, 2**62, self.words, dtype=np.int64) | 1
        self.slot: dict[str, int] = {}
        self.fp = np.zeros(1024, np.int64)
        self.val = np.zeros(1024, np.float64)
        self.computed = 0
        self.lock = threading.Lock()

    def fingerprint(self, x: np.ndarray) -> np.ndarray:
        """A 64-bit hash of each row's exact bits: its float32 pairs read as 64-bit words, times
        fixed odd random multipliers, summed (wrapping)."""
        x = np.ascontiguousarray(x, np.float32)
        if x.shape[1] % 2:
            x = np.concatenate([x, np.zeros((len(x), 1), np.float32)], axis=1)
        return (x.view(np.int64) * self.mult).sum(1)  # wrap-around is the hash (integer arrays never warn)

    def lookup(self, ids: Sequence[str], x: np.ndarray) -> np.ndarray | None:
        """Every item's kept term, or ``None`` unless all are kept for these exact vectors (the
        search's fast path: a few array operations; :meth:`terms` handles the rest)."""
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != self.dim or self.dim % 2 or not x.flags.c_contiguous:
            return None
        fp = self.fingerprint(x)
        with self.lock:
            get = self.slot.get
            slots = np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))
            if not len(slots) or slots.min() < 0 or not np.array_equal(self.fp[slots], fp):
                return None
            return self.val[slots]

    def terms(self, ids: list[str], x: np.ndarray, compute: Any) -> np.ndarray:
        fp = self.fingerprint(x)
        with self.lock:
            get = self.slot.get
            slots = np.fromiter((get(i, -1) for i in ids), np.int64, len(ids))
            hit = slots >= 0
            hit[hit] = self.fp[slots[hit]] == fp[hit]
            out = np.empty(len(ids), np.float64)
            out[hit] = self.val[slots[hit]]
            miss = np.flatnonzero(~hit)
            if len(miss):
                val = np.asarray(compute(x[miss]), np.float64)
                out[miss] = val
                self.computed += len(miss)
                self._put([ids[j] for j in miss.tolist()], fp[miss], val)
        return out

    def _put(self, ids: list[str], fp: np.ndarray, val: np.ndarray) -> None:
        if len(self.slot) + len(ids) > HUB_CACHE_MAX:
            self.slot.clear()
        for i, f, v in zip(ids, fp.tolist(), val.tolist()):
            k = self.slot.get(i)
            if k is None:
                k = self.slot[i] = len(self.slot)
                if k >= len(self.fp):
                    self.fp = np.resize(self.fp, 2 * len(self.fp))
                    self.val = np.resize(self.val, 2 * len(self.val))
            self.fp[k], self.val[k] = f, v

    def export(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``(ids, fingerprints, terms)`` of every kept item."""
        with self.lock:
            ids = list(self.slot)
            rows = np.fromiter(self.slot.values(), np.int64, len(ids))
            return ids, self.fp[rows].copy(), self.val[rows].copy()

    def load(self, ids: Sequence[str], fp: np.ndarray, val: np.ndarray) -> None:
        """Add terms computed elsewhere (a saved table); ids already kept are overwritten."""
        with self.lock:
            self._put(list(ids), np.asarray(fp, np.int64), np.asarray(val, np.float64))


class Calibrated(GapCorrector):
    """Rank by calibrated P(relevant), query-adaptively normalised over the candidate list.

    Args:
        method: ``platt`` (logistic on the cosine) or ``isotonic``.
        depth: candidates per modality the list posterior is computed over (the retriever
            fetches at least this many).
        coverage: weight λ of the "every modality covered" gain (0 = pure probability ranking).
        eps: ε of that gain (how strongly the first candidate of a modality is preferred).
        cover_none: a modality the store likely holds nothing relevant of for the query counts as
            covered already (its P of "the store holds none", from ``prior``, joins the gain's
            ``S``), so it does not take a place from the other modality's items; ``false``: the
            gain as first shipped (a saved corrector without this parameter keeps that).
        soft_route: multiply by P(modality | query) from a logistic regression (labelled pairs).
        prior: π, the prior probability that the store holds a relevant item of a modality for a
            query (1: always, as in a benchmark; below 1 "nothing here" keeps some mass, so a
            query about something absent gets low probabilities — what ``min_prob`` needs).
        min_pairs: fewest pairs per (query modality, item modality) to fit.
        max_neg: corpus-sample items per modality used as negatives (seeded subsample).
        bins: isotonic bins.
        seed: negatives' subsample seed.

    Attributes:
        calib_: ``{query modality: {item modality: {"a", "b"} | {"x", "y"}, "t", "log_c",
            "n_pos", "n_neg", "N", "nll"}}``.
        route_: ``{query modality: {"coef", "intercept", "classes"}}`` (``route=true``).
        pairs_: "gold" or "pseudo".
    """

    name = "calibrated"
    needs_pairs = True
    gives_probability = True

    def __init__(self, method: str = "platt", depth: int = 20, coverage: float = 0.5, eps: float = 0.01,
                 soft_route: bool = False, prior: float = 0.5, min_pairs: int = 5, max_neg: int = 2000,
                 bins: int = 64, seed: int = 0, hub: float = 0.5, hub_k: int = 10, hub_ref: int = 500,
                 cover_none: bool = True) -> None:
        if method not in METHODS:
            raise InputError(f"calibrated: method must be one of {', '.join(METHODS)}, got {method!r}", item="method")
        if int(depth) < 1:
            raise InputError("calibrated: depth must be >= 1", item="depth")
        for key, v in (("coverage", coverage), ("eps", eps)):
            if not np.isfinite(float(v)) or float(v) < 0:
                raise InputError(f"calibrated: {key} must be a finite number >= 0, got {v!r}", item=key)
        if not np.isfinite(float(hub)) or float(hub) < 0:
            raise InputError(f"calibrated: hub must be a finite number >= 0, got {hub!r}", item="hub")
        for key, v in (("hub_k", hub_k), ("hub_ref", hub_ref)):
            if int(v) < 1:
                raise InputError(f"calibrated: {key} must be >= 1, got {v!r}", item=key)
        self.method = method
        self.depth = int(depth)
        self.coverage = float(coverage)
        self.eps = float(eps)
        self.soft_route = bool(soft_route)
        if not 0 < float(prior) <= 1:
            raise InputError(f"calibrated: prior must be in (0, 1], got {prior!r}", item="prior")
        self.prior = float(prior)
        self.min_pairs = int(min_pairs)
        self.max_neg = int(max_neg)
        self.bins = int(bins)
        self.seed = int(seed)
        self.hub = float(hub)
        self.hub_k = int(hub_k)
        self.hub_ref = int(hub_ref)
        self.cover_none = bool(cover_none)
        self.calib_: dict[str, dict[str, dict[str, Any]]] | None = None
        self.route_: dict[str, dict[str, Any]] | None = None
        self.pairs_: str | None = None
        self.hub_ref_: dict[str, np.ndarray] | None = None
        self.calib0_: dict[str, dict[str, dict[str, Any]]] | None = None  # hub > 0: the raw-cosine calibration too
        self._fast: dict[Any, Any] = {}  # search-time constants

    @property
    def list_depth(self) -> int:  # type: ignore[override]
        return self.depth

    @property
    def adjusts_items(self) -> bool:
        """Whether a candidate's cosine is corrected by a per-item term first (fitted with
        ``hub > 0`` on a store that holds both modalities): the retriever then hands
        :meth:`item_offsets` the candidates' vectors."""
        return self.hub > 0 and bool(self.hub_ref_)

    def without_hub(self) -> "Calibrated":
        """The same corrector without its hubness term: the calibration fitted on raw cosines
        alongside the corrected one (``fit`` fits both), for callers that have cosines but not the
        candidates' vectors (:func:`mindgap.gap.portable.fuse` without vectors)."""
        if not self.adjusts_items:
            return self
        if self.calib0_ is None:
            raise NotFittedError("calibrated: no calibration without the hubness term was fitted; refit the corrector",
                                 item=self.name)
        out = copy.copy(self)
        out.hub, out.calib_, out.calib0_, out.hub_ref_, out._fast = 0.0, self.calib0_, None, None, {}
        return out

    # -- hubness ---------------------------------------------------------------------------
    def _fit_hub_refs(self, corpus: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per item modality M, a sample (at most ``hub_ref``) of the store's items of the *other*
        modality: the reference an M item's hubness is measured against."""
        refs: dict[str, np.ndarray] = {}
        for m, o in ((Modality.TEXT.value, Modality.IMAGE.value), (Modality.IMAGE.value, Modality.TEXT.value)):
            other = corpus.get(o)
            if other is None or len(other) == 0:
                continue
            other = np.asarray(other, np.float32)
            if len(other) > self.hub_ref:
                other = other[np.sort(rng.choice(len(other), self.hub_ref, replace=False))]
            refs[m] = np.ascontiguousarray(other)
        return refs

    def item_offsets(self, vectors: np.ndarray, modality: Modality, ids: Sequence[str] | None = None) -> np.ndarray:
        """``hub · r(x)`` per item vector: ``r(x)`` is the mean cosine of ``x`` to its ``hub_k``
        nearest items of the other modality (the store sample kept at fit time). The search
        ranks ``cosine − offset`` (CSLS-style hubness correction, applied per item). Zeros when
        ``hub`` is 0 or the store held no item of the other modality at fit time.

        With ``ids`` (the retriever's path) each item's term is kept in memory, keyed by id and
        checked against the vector it was computed from (an id re-indexed with another vector is
        recomputed): a frequent candidate costs a dictionary lookup, not a product with the
        reference. At most :data:`HUB_CACHE_MAX` items per modality are kept."""
        if ids is not None and isinstance(vectors, np.ndarray) and len(ids) == len(vectors):  # the search's path
            memo = self._cache().get(("hub terms", modality.value if isinstance(modality, Modality) else modality))
            got = None if memo is None or self.hub <= 0 else memo.lookup(ids, vectors)
            if got is not None:
                return got
        x = np.atleast_2d(np.asarray(vectors, np.float32))
        refs = self.hub_ref_ or {}
        mv = Modality.parse(modality).value
        ref = refs.get(mv)
        if self.hub <= 0 or ref is None or not len(x):
            return np.zeros(len(x), np.float64)
        if x.shape[1] != ref.shape[1]:
            raise InputError(f"calibrated: item vectors have dimension {x.shape[1]}, the hubness reference "
                             f"{ref.shape[1]}", item="vectors")
        cache = self._cache()
        ref64 = cache.get(("hub reference, float64", mv))
        if ref64 is None:
            ref64 = cache[("hub reference, float64", mv)] = np.asarray(ref, np.float64)
        if ids is None:
            return self._hub_term(x, ref64)
        if len(ids) != len(x):
            raise InputError(f"calibrated: {len(ids)} ids for {len(x)} vectors", item="ids")
        memo = self._memo(mv)
        if memo is None:  # pragma: no cover - adjusts_items and the reference were checked above
            return self._hub_term(x, ref64)
        return memo.terms(list(ids), x, lambda rows: self._hub_term(rows, ref64))

    def term_key(self) -> str:
        """A digest of what an item's term depends on (``hub``, ``hub_k``, the reference sample):
        a saved table of terms (:meth:`export_terms`) is valid for a corrector with the same key.
        Empty when the corrector has no per-item term."""
        if not self.adjusts_items:
            return ""
        h = hashlib.sha256(f"calibrated hub terms v1|{self.hub!r}|{self.hub_k}".encode())
        for m in sorted(self.hub_ref_ or {}):
            ref = np.ascontiguousarray((self.hub_ref_ or {})[m], np.float32)
            h.update(f"|{m}|{ref.shape}".encode())
            h.update(ref.tobytes())
        return h.hexdigest()[:32]

    def _memo(self, modality: Modality | str) -> _TermMemo | None:
        mv = Modality.parse(modality).value
        ref = (self.hub_ref_ or {}).get(mv)
        if not self.adjusts_items or ref is None:
            return None
        cache = self._cache()
        memo = cache.get(("hub terms", mv))
        if memo is None:
            memo = cache[("hub terms", mv)] = _TermMemo(ref.shape[1])
        return memo

    def export_terms(self) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
        """The per-item terms kept so far, per item modality: ``(ids, fingerprints, terms)``
        (see :meth:`item_offsets`; saved beside a store by the retriever)."""
        out = {}
        for m in (self.hub_ref_ or {}) if self.adjusts_items else ():
            memo = self._memo(m)
            if memo is not None and memo.slot:
                out[m] = memo.export()
        return out

    def import_terms(self, modality: Modality | str, ids: Sequence[str], fingerprints: np.ndarray,
                     terms: np.ndarray) -> int:
        """Keep terms computed earlier (:meth:`export_terms` of a corrector with the same
        :meth:`term_key`); each is still checked against its item's vector when used. → count."""
        memo = self._memo(modality)
        fp = np.asarray(fingerprints)
        val = np.asarray(terms)
        if memo is None:
            return 0
        if fp.shape != (len(ids),) or val.shape != (len(ids),) or fp.dtype != np.int64 or not np.isfinite(val).all():
            raise InputError(f"calibrated: a table of {len(ids)} item terms needs as many int64 fingerprints "
                             "and finite terms", item="terms")
        if len(ids) > HUB_CACHE_MAX:
            return 0
        memo.load(ids, fp, val)
        return len(ids)

    def terms_computed(self) -> int:
        """How many per-item terms this corrector has computed (not looked up) since it was loaded."""
        return sum(memo.computed for m in (self.hub_ref_ or {}) if (memo := self._memo(m)) is not None)

    # -- fitting -------------------------------------------------------------------------
    def fit(self, data: FitData) -> "Calibrated":
        data.require_pairs(self.name)
        q_all = np.asarray(data.queries, np.float32)
        g_all = np.asarray(data.gold, np.float32)
        cos = np.einsum("ij,ij->i", q_all, g_all)
        qm = data.qmod()
        gm = np.asarray([Modality.parse(m).value for m in data.gold_modality])
        rng = np.random.default_rng(self.seed)
        out: dict[str, dict[str, dict[str, Any]]] = {}
        out0: dict[str, dict[str, dict[str, Any]]] = {}
        refs = self._fit_hub_refs(data.corpus, np.random.default_rng(self.seed + 1)) if self.hub > 0 else {}
        refs64 = {m: r.astype(np.float64) for m, r in refs.items()}
        for q in np.unique(qm):
            for m in (Modality.TEXT.value, Modality.IMAGE.value):
                sel = (qm == q) & (gm == m)
                if not sel.any():
                    continue
                if sel.sum() < self.min_pairs:
                    raise InputError(f"calibrated: only {int(sel.sum())} pairs with {m} gold for {q} queries "
                                     f"(need {self.min_pairs})", item="pairs")
                data.require_corpus(self.name, m)
                corpus = np.asarray(data.corpus[m], np.float32)
                if len(corpus) > self.max_neg:
                    corpus = corpus[np.sort(rng.choice(len(corpus), self.max_neg, replace=False))]
                n_store = int((data.counts or {}).get(m) or len(data.corpus[m]))
                args = (q_all[sel], cos[sel], g_all[sel], corpus, n_store)
                sims = self._negatives(q_all[sel], g_all[sel], corpus)  # shared by both calibrations
                out0.setdefault(str(q), {})[m] = self._fit_one(*args, fit_list=data.pairs != "pseudo", sims=sims)
                if m in refs:  # calibrate the hubness-corrected cosines too
                    out.setdefault(str(q), {})[m] = self._fit_one(
                        *args, fit_list=data.pairs != "pseudo", off_gold=self._hub_term(g_all[sel], refs64[m]),
                        off_corpus=self._hub_term(corpus, refs64[m]), sims=sims)
                else:
                    out.setdefault(str(q), {})[m] = out0[str(q)][m]
        if not out:
            raise InputError("calibrated: no fitting pairs", item="pairs")
        self._fast = {}
        self.calib_ = out
        self.hub_ref_ = refs or None
        self.calib0_ = out0 if refs else None
        self.pairs_ = data.pairs
        self.route_ = self._fit_route(q_all, qm, gm) if self.soft_route else None
        if self.soft_route and data.pairs == "pseudo":
            raise InputError("calibrated:soft_route=true learns which modality a query wants: it needs labelled pairs "
                             "(pseudo pairs give every query both modalities)", item="pairs")
        return self

    def _hub_term(self, x: np.ndarray, ref64: np.ndarray) -> np.ndarray:
        """``hub`` × the mean cosine of each row of ``x`` to its ``hub_k`` nearest rows of ``ref64``
        (the reference sample in float64).

        An item gets the same float whatever else is in the batch (a search alone or in a batch
        ranks alike): a float32 matrix product's rounding depends on the batch's shape, so the
        cosines are taken in float64 and rounded to float32 (a float64 product's batch-dependent
        error, ~1e-16, changes that rounding with probability ~1e-9), and the top ``hub_k`` are
        summed in sorted order."""
        x64 = np.atleast_2d(np.asarray(x, np.float64))
        sims = (x64 @ ref64.T).astype(np.float32)
        k = min(self.hub_k, sims.shape[1])
        top = np.sort(np.partition(sims, sims.shape[1] - k, axis=1)[:, sims.shape[1] - k:], axis=1)
        return self.hub * top.astype(np.float64).mean(axis=1)

    @staticmethod
    def _negatives(queries: np.ndarray, gold: np.ndarray, corpus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The queries' cosines to the corpus sample, and which of them count as negatives."""
        neg = queries @ corpus.T  # (n, s)
        # not negatives: the pair's own gold when it is in the sample (pseudo pairs), and the item a
        # pseudo query was taken from (a passage's first sentence finds the passage itself)
        keep = ~((corpus @ gold.T).T > 1 - 1e-5) & ~(neg > 1 - 1e-4)
        return neg, keep

    def _fit_one(self, queries: np.ndarray, pos: np.ndarray, gold: np.ndarray, corpus: np.ndarray,
                 n_store: int, fit_list: bool = True, off_gold: np.ndarray | None = None,
                 off_corpus: np.ndarray | None = None,
                 sims: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
        """One (query modality, item modality) calibration. ``sims``: :meth:`_negatives` of these
        arrays, when the caller computed them already (``fit`` calibrates raw and corrected
        cosines of the same pairs)."""
        neg, keep = sims if sims is not None else self._negatives(queries, gold, corpus)
        if off_gold is not None and off_corpus is not None:  # hub > 0: calibrate the corrected cosines
            pos = pos - off_gold
            neg = neg - off_corpus[None, :]
        n, s = neg.shape
        w_neg = max(n_store - 1, 1) / max(s, 1)
        x = np.concatenate([pos, neg[keep]])
        y = np.concatenate([np.ones(n), np.zeros(int(keep.sum()))])
        w = np.concatenate([np.ones(n), np.full(int(keep.sum()), w_neg)])
        st: dict[str, Any] = {"n_pos": int(n), "n_neg": int(keep.sum()), "N": int(n_store)}
        if self.method == "platt":
            a, b = fit_logistic_1d(x, y, w)
            if a <= 0:
                raise InputError("calibrated: relevant items do not score higher than the rest on these pairs "
                                 f"(logistic slope {a:.3g}); cannot calibrate", item="pairs")
            st.update(a=a, b=b)
        else:
            cx, py = fit_isotonic(x, y, w, self.bins)
            st.update(x=cx, y=py)
        # simulated candidate lists: the corpus sample (minus the gold) plus the gold, best first
        d = min(self.depth, s + 1)
        negm = np.where(keep, neg, -np.inf)
        top = -np.sort(-negm, axis=1)[:, :d]
        listed = np.concatenate([top, pos[:, None]], 1)
        gcol = top.shape[1]  # the gold's column in ``listed``
        order = np.argsort(-listed, axis=1, kind="stable")[:, :d]
        lst = np.take_along_axis(listed, order, 1)
        gpos = np.where((order == gcol).any(1), (order == gcol).argmax(1), -1)
        ell = self._item_logit(st, np.where(np.isfinite(lst), lst, -1.0))
        ell = np.where(np.isfinite(lst), ell, -1e4)
        if fit_list:
            t, log_c = fit_list_posterior(ell, gpos)
        else:
            # pseudo golds are each list's top-1 by construction: the list likelihood would only say
            # "always the first" (t → ∞); keep t = 1 and no extra "not listed" mass
            t, log_c = 1.0, -30.0
        # the list mass when the store holds nothing relevant: negatives-only lists of the fit queries
        ell0 = self._item_logit(st, np.where(np.isfinite(top), top, -1.0))
        ell0 = np.where(np.isfinite(top), ell0, -1e4)
        log_m0 = float(np.median(np.logaddexp.reduce(t * ell0, axis=1)))
        st.update(t=t, log_c=log_c, log_m0=log_m0, nll=list_nll(ell, gpos, t, log_c),
                  listed=float((gpos >= 0).mean()))
        return st

    def _fit_route(self, q: np.ndarray, qm: np.ndarray, gm: np.ndarray) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for qq in np.unique(qm):
            sel = qm == qq
            # one row per query vector: a query with golds of both modalities counts for both
            y = (gm[sel] == Modality.IMAGE.value).astype(np.float64)
            if y.min() == y.max():
                out[str(qq)] = {"constant": float(y[0])}
                continue
            coef, icpt = fit_logistic(q[sel], y)
            out[str(qq)] = {"coef": coef, "intercept": icpt}
        return out

    # -- scoring -------------------------------------------------------------------------
    def _state(self, query_modality: Modality, modality: Modality) -> dict[str, Any]:
        if self.calib_ is None:
            raise NotFittedError("gap corrector 'calibrated' is not fitted; run `mindgap fit-gap` first", item=self.name)
        st = self.calib_.get(Modality.parse(query_modality).value, {}).get(Modality.parse(modality).value)
        if st is None:
            have = {q: sorted(v) for q, v in self.calib_.items()}
            raise NotFittedError(f"calibrated has no calibration for {Modality.parse(query_modality).value} queries "
                                 f"against {Modality.parse(modality).value} items (fitted: {have})", item=self.name)
        return st

    @staticmethod
    def _item_logit(st: dict[str, Any], sim: np.ndarray) -> np.ndarray:
        sim = np.asarray(sim, np.float64)
        if "a" in st:
            return float(st["a"]) * sim + float(st["b"])
        return _logit(np.interp(sim, np.asarray(st["x"], np.float64), np.asarray(st["y"], np.float64)))

    def item_probability(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        """Per-item calibrated P(relevant | cosine, modality) (before the list posterior)."""
        ell = self._item_logit(self._state(query_modality, modality), sim)
        return 1 / (1 + np.exp(-np.clip(ell, -40, 40)))

    def _route_prior(self, q: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray | None:
        if self.route_ is None:
            return None
        r = self.route_.get(Modality.parse(query_modality).value)
        if r is None:
            return None
        if "constant" in r:
            p_img = np.full(len(q), float(r["constant"]))
        else:
            z = np.asarray(q, np.float64) @ np.asarray(r["coef"], np.float64) + float(r["intercept"])
            p_img = 1 / (1 + np.exp(-np.clip(z, -40, 40)))
        return p_img if Modality.parse(modality) == Modality.IMAGE else 1 - p_img

    @staticmethod
    def _order(sim: np.ndarray) -> np.ndarray | None:
        """``None`` when every row is sorted best first (the retriever's lists), else the sort order."""
        if sim.shape[1] < 2 or bool(np.all(sim[:, :-1] >= sim[:, 1:])):
            return None
        return np.argsort(-sim, axis=1, kind="stable")

    @staticmethod
    def _unsort(val: np.ndarray, order: np.ndarray | None) -> np.ndarray:
        if order is None:
            return val
        out = np.empty_like(val)
        np.put_along_axis(out, order, val, 1)
        return out

    def _posterior(self, sim: np.ndarray, query_modality: Modality,
                   modality: Modality) -> tuple[np.ndarray, np.ndarray]:
        """List posterior of rows sorted best first, and each row's P(the store holds no relevant
        item of the modality) (the prior's share of the "none" mass; 0 with ``prior = 1``); the
        normaliser sums the first ``depth`` candidates (a longer list — k > depth — scores its tail
        against the same normaliser, so results do not depend on k)."""
        st = self._state(query_modality, modality)
        z = float(st["t"]) * self._item_logit(st, sim)
        head = z[:, : self.depth]
        extra = [float(st["log_c"])]
        if self.prior < 1:  # "the store holds no relevant item": prior odds × the list mass it would give
            extra.append(math.log((1 - self.prior) / self.prior) + float(st["log_m0"]))
        top = np.maximum(head.max(axis=1, keepdims=True), max(extra))  # log-sum-exp over the list and "none"
        denom = np.exp(head - top).sum(axis=1, keepdims=True) + sum(np.exp(x - top) for x in extra)
        absent = np.exp(extra[1] - top) / denom if len(extra) > 1 else np.zeros_like(top)
        return np.exp(z - top) / denom, absent

    def probability(self, sim: np.ndarray, q: np.ndarray | None, query_modality: Modality,
                    modality: Modality) -> np.ndarray:
        """List posterior P_j (module docstring) for each row's candidates; rows are one query's list."""
        sim = np.atleast_2d(np.asarray(sim, np.float64))
        order = self._order(sim)
        ss = sim if order is None else np.take_along_axis(sim, order, 1)
        p = self._unsort(self._posterior(ss, query_modality, modality)[0], order)
        prior = None if q is None else self._route_prior(np.atleast_2d(q), query_modality, modality)
        return p if prior is None else p * prior[:, None]

    def _constants(self, query_modality: Modality, modality: Modality) -> np.ndarray:
        """``[[t·a, t·b, log of the "none" mass, log of its "the store holds none" part]]`` for the
        Platt fast path (the last −inf when the coverage gain does not use it: ``cover_none``
        off, or ``prior = 1``), cached per modality pair."""
        key = (query_modality, modality)
        got = self._cache().get(key)
        if got is None:
            st = self._state(query_modality, modality)
            t = float(st["t"])
            lx = float(st["log_c"])
            x0 = -math.inf
            if self.prior < 1:
                x0 = math.log((1 - self.prior) / self.prior) + float(st["log_m0"])
                lx = float(np.logaddexp(lx, x0))
            got = np.array([[t * float(st["a"]), t * float(st["b"]), lx, x0 if self.cover_none else -math.inf]])
            self._cache()[key] = got
        return got

    def _cache(self) -> dict[Any, Any]:
        """The search-time constants (emptied by :meth:`fit`; created here for an instance restored
        without ``__init__``)."""
        return self.__dict__.setdefault("_fast", {})

    @staticmethod
    def _sorted(sim: np.ndarray) -> bool:
        return sim.shape[1] < 2 or bool((sim[:, :-1] >= sim[:, 1:]).all())

    def _fast_scores(self, sim: np.ndarray, ta: Any, tb: Any, lx: Any, x0: Any) -> np.ndarray:
        """The search path (sorted float64 lists, Platt, no routing): the same formulas as
        :meth:`_posterior` and the coverage gain in fewer array operations; ``ta``, ``tb``, ``lx``,
        ``x0`` (:meth:`_constants`) are 0-d arrays or per-row ``(n, 1)`` columns (``ta``, ``tb`` may
        be broadcast to ``sim``'s shape already: numpy is quickest with same-shape or 0-d operands)."""
        fast = self._cache()
        key = ("eps, coverage", self.eps, self.coverage)
        got = fast.get(key)
        if got is None:
            got = fast[key] = (np.array(self.eps), np.array(self.coverage))
        eps, coverage = got
        z = sim * ta
        z += tb
        top = np.maximum(z[:, :1], lx)
        z -= top
        e = np.exp(z, out=z)
        den = np.add.reduce(e[:, : self.depth] if e.shape[1] > self.depth else e, axis=1, keepdims=True)
        den += np.exp(lx - top)
        p = np.divide(e, den, out=e)
        if self.coverage <= 0:
            return p
        base = eps
        if self.cover_none and self.prior < 1:  # + P(the store holds none of this modality)
            base = np.exp(x0 - top)
            base /= den
            base += eps
        cum = np.add.accumulate(p, axis=1)  # = cumsum
        gain = cum + base
        cum -= p
        cum += base
        gain /= cum
        gain = np.log(gain, out=gain)
        gain *= coverage
        gain += p
        return gain

    def score_lists(self, lists: list[tuple[np.ndarray, np.ndarray | None, Modality, Modality]], *,
                    best_first: bool = False) -> list[np.ndarray]:
        """:meth:`score_query` of several ``(sim, q, query modality, item modality)`` batches — one
        search's per-modality lists — in one pass when they share a length (the same floats).

        ``best_first``: the caller vouches that every row is sorted best first (the retriever's
        lists are, by the store contract), which skips the check.
        """
        if len(lists) < 2 or self.method != "platt" or self.route_ is not None:
            return [self.score_query(*job) for job in lists]
        sims = [s if getattr(s, "ndim", 0) == 2 else np.atleast_2d(s) for s, *_ in lists]
        width = sims[0].shape[1]
        if any(s.shape[1] != width for s in sims):
            return [self.score_query(*job) for job in lists]
        sim = np.concatenate(sims, dtype=np.float64)
        if not best_first and not self._sorted(sim):
            return [self.score_query(*job) for job in lists]
        rows = [len(s) for s in sims]
        pairs = tuple((qm, m) for _, _, qm, m in lists)
        if max(rows) == 1:  # one query (the single-search path): its constants cached, full width
            fast = self._cache()
            cols = fast.get((pairs, width))
            if cols is None:
                c = np.concatenate([self._constants(qm, m) for qm, m in pairs])
                cols = fast[(pairs, width)] = (np.repeat(c[:, 0:1], width, 1), np.repeat(c[:, 1:2], width, 1),
                                                c[:, 2:3], c[:, 3:4])
            out = self._fast_scores(sim, *cols)
            return [out[i : i + 1] for i in range(len(rows))]
        c = np.repeat(np.concatenate([self._constants(qm, m) for qm, m in pairs]), rows, axis=0)
        out = self._fast_scores(sim, c[:, 0:1], c[:, 1:2], c[:, 2:3], c[:, 3:4])
        ends = list(itertools.accumulate(rows))
        return [out[e - n : e] for n, e in zip(rows, ends)]

    #: whether :meth:`head_scorer` uses the compiled head where it is built (``False``: the Python
    #: head; the benchmark times both, benchmarks/search.py --gap-overhead)
    compiled_head: bool = True

    def head_scorer(self, query_modality: Modality, modality: Modality) -> HeadScorer | None:
        """The single-query search path (Platt, no routing, a positive slope: scores fall along a
        sorted list): :meth:`_fast_scores`' formulas on one list in scalar floats, only its first
        ``k`` scored — cheaper than array operations on 20 numbers. The floats agree with
        :meth:`score_query`'s to rounding (``exp``/``log`` and a sequential sum instead of
        numpy's; ~1e-13 relative, the coverage gain's log of a ratio near 1 amplifying it). The
        compiled head (``mindgap.gap._calibrated_head``, built at install where there is a C
        compiler) computes the Python head's floats operation for operation; it spares the
        per-query Python work, which was most of ``calibrated``'s cost over ``naive`` on a small
        store (docs/results/fusion/search_overhead.json)."""
        key = ("head scorer", query_modality, modality, self.compiled_head)
        got = self._cache().get(key)
        if got is None:
            head = None
            if self.method == "platt" and self.route_ is None:
                head = self._head_scorer(query_modality, modality, bool(self.compiled_head) and _compiled is not None)
            got = self._cache()[key] = (head,)
        return got[0]

    def _head_scorer(self, query_modality: Modality, modality: Modality, compiled: bool = False) -> HeadScorer | None:
        ta, tb, lx, x0 = (float(v) for v in self._constants(query_modality, modality)[0])
        if not ta > 0:
            return None
        depth, eps, coverage = int(self.depth), float(self.eps), float(self.coverage)
        if compiled:  # (sims, k) → scores, the constants bound (head_scorer: only where it was built)
            return functools.partial(_compiled.head, ta, tb, lx, x0, depth, eps, coverage)
        exp, log = math.exp, math.log

        def head(sims: list[float], k: int) -> list[float]:
            if not sims:
                return []
            top = max(sims[0] * ta + tb, lx)
            c = tb - top
            e = [exp(x * ta + c) for x in sims]
            den = sum(e[:depth]) + exp(lx - top)
            out = [v / den for v in e[:k]]
            if coverage <= 0:
                return out
            base = eps if x0 == -math.inf else exp(x0 - top) / den + eps
            cum = 0.0
            for j, p in enumerate(out):  # p + λ·log((S_j + N + ε) / (S_{j−1} + N + ε))
                cum += p
                out[j] = p + coverage * log((cum + base) / (cum - p + base))
            return out

        return head

    def score_query(self, sim: np.ndarray, q: np.ndarray | None, query_modality: Modality,
                    modality: Modality) -> np.ndarray:
        sim = np.atleast_2d(np.asarray(sim, np.float64))
        if self.method == "platt" and self.route_ is None and self._sorted(sim):
            key = ("0-d", query_modality, modality)
            got = self._cache().get(key)
            if got is None:
                got = self._cache()[key] = tuple(np.array(v) for v in self._constants(query_modality, modality)[0])
            return self._fast_scores(sim, *got)
        order = self._order(sim)
        ss = sim if order is None else np.take_along_axis(sim, order, 1)
        ps, absent = self._posterior(ss, query_modality, modality)
        prior = None if q is None else self._route_prior(np.atleast_2d(q), query_modality, modality)
        w = np.ones((len(sim), 1)) if prior is None else prior[:, None]
        if self.coverage <= 0:
            return self._unsort(w * ps, order)
        base = absent + self.eps if self.cover_none else self.eps
        cum = np.cumsum(ps, axis=1)
        gain = np.log((cum + base) / (cum - ps + base))
        # with soft routing both terms are weighted by P(the query wants this modality)
        return self._unsort(w * (ps + self.coverage * gain), order)

    def score(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        return self.score_query(sim, None, query_modality, modality)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrated":
        """A saved corrector; one saved before ``cover_none`` existed keeps the coverage gain it
        was fitted and measured with (``cover_none=false``)."""
        params = d.get("params", {})
        if "cover_none" not in params:
            d = {**d, "params": {**params, "cover_none": False}}
        return super().from_dict(d)  # type: ignore[return-value]

    def summary(self) -> dict[str, Any]:
        self._require("calib_")
        out: dict[str, Any] = {"method": self.method, "coverage": self.coverage, "depth": self.depth,
                               "pairs": self.pairs_, "soft_route": self.route_ is not None}
        if self.adjusts_items:
            out["hub"] = {"weight": self.hub, "k": self.hub_k,
                          "reference": {m: len(r) for m, r in (self.hub_ref_ or {}).items()}}
        for q, d in (self.calib_ or {}).items():
            for m, st in d.items():
                keep = {k: st[k] for k in ("a", "b", "t", "log_c", "n_pos", "N", "listed") if k in st}
                out[f"{q}->{m}"] = keep
        return out


__all__ = ["Calibrated", "fit_logistic_1d", "fit_isotonic", "fit_logistic", "fit_list_posterior", "list_nll"]
