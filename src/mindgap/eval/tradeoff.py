"""The ImageQ-vs-TextQ trade-off of a mixed store: the uniform image-score shift frontier.

On a store that mixes texts and images, the simplest gap fix adds one constant ``b`` to
every image's cosine before merging (``b > 0`` favours images). Sweeping ``b`` traces the
best ImageQ / TextQ Recall@k pairs any *uniform* shift can reach — the frontier every
per-modality rescoring that is a shift (``zscore`` with equal σ, ``center`` on the
corpus side, …) moves along. A corrector that lands *above* the curve does something a
shift cannot (a per-modality scale, a mapped query, routing); one *below* it gives up
recall for nothing.

The sweep is exact and cheap: for one query with gold cosine ``g`` and rank ``r`` within
its own modality, the gold is in the merged top ``k`` iff at most ``k − r`` items of the
other modality outscore it, i.e.

* ImageQ (gold image): ``b ≥ T₍ₖ₋ᵣ₊₁₎ − g`` where ``T₍ⱼ₎`` is the j-th largest text cosine;
* TextQ (gold text): ``b ≤ g − I₍ₖ₋ᵣ₊₁₎`` with ``I₍ⱼ₎`` the j-th largest image cosine.

So each query has one threshold, and ImageQ R@k(b) / TextQ R@k(b) are step functions of
``b`` read off the sorted thresholds (ties follow :func:`~mindgap.eval.runner.deep_ranks`:
an item outscores the gold only when strictly higher). With several golds a query is a hit
when any gold is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import Modality
from .plots import plot_tradeoff  # noqa: F401 - re-exported (it lives with the other plots)

#: stands in for b = ±∞ (thresholds are cosine differences, |t| ≤ 2, or ±inf)
_BIG = 1e9


@dataclass
class Frontier:
    """Per-query shift thresholds at cut-off ``k``.

    Attributes:
        k: the Recall cut-off.
        image_t: ImageQ thresholds — a hit iff ``b >= t`` (``+inf``: never, ``-inf``: always).
        text_c: TextQ thresholds — a hit iff ``b <= c`` (``-inf``: never, ``+inf``: always).
    """

    k: int
    image_t: np.ndarray
    text_c: np.ndarray

    @property
    def n_image(self) -> int:
        return len(self.image_t)

    @property
    def n_text(self) -> int:
        return len(self.text_c)

    def recall(self, b: float) -> tuple[float, float, float]:
        """(ImageQ, TextQ, overall) Recall@k when ``b`` is added to every image cosine
        (``b = ±inf`` is the limit: the other modality entirely below / above)."""
        b = float(np.clip(b, -_BIG, _BIG))  # a never-hit threshold (±inf) must stay a miss at the ends
        ri = float(np.mean(self.image_t <= b)) if self.n_image else math.nan
        rt = float(np.mean(self.text_c >= b)) if self.n_text else math.nan
        hits = float(np.sum(self.image_t <= b) + np.sum(self.text_c >= b))
        return ri, rt, hits / max(1, self.n_image + self.n_text)

    def breakpoints(self) -> np.ndarray:
        """Every ``b`` at which a recall changes (sorted, finite)."""
        v = np.concatenate([self.image_t, self.text_c])
        return np.unique(v[np.isfinite(v)])

    def curve(self) -> np.ndarray:
        """All reachable (b, ImageQ, TextQ, overall) rows, ``b`` ascending (ends at ∓inf)."""
        bp = self.breakpoints()
        if len(bp):
            mids = (bp[:-1] + bp[1:]) / 2
            bs = np.concatenate([[-_BIG], bp, mids, [_BIG]])
        else:
            bs = np.array([-_BIG, _BIG])
        bs = np.sort(bs)
        it = np.sort(self.image_t)
        tc = np.sort(self.text_c)
        ri = np.searchsorted(it, bs, side="right") / max(1, self.n_image)
        rt = (self.n_text - np.searchsorted(tc, bs, side="left")) / max(1, self.n_text)
        ov = (ri * self.n_image + rt * self.n_text) / max(1, self.n_image + self.n_text)
        bs = np.where(np.abs(bs) >= _BIG, np.sign(bs) * np.inf, bs)
        return np.stack([bs, ri, rt, ov], axis=1)

    def ceilings(self) -> dict[str, float]:
        """Recall with the other modality pushed out of the way (``b → ±∞``)."""
        return {"ImageQ": self.recall(math.inf)[0], "TextQ": self.recall(-math.inf)[1]}

    def text_at(self, image_recall: float) -> float | None:
        """Best TextQ R@k a shift reaches while keeping ImageQ R@k ≥ ``image_recall``
        (``None`` when no shift reaches that ImageQ recall)."""
        if not self.n_image or not self.n_text:
            return None
        need = int(math.ceil(image_recall * self.n_image - 1e-9))
        if need <= 0:
            return self.recall(-math.inf)[1]
        it = np.sort(self.image_t)
        if need > self.n_image or not np.isfinite(it[need - 1]):
            return None
        return self.recall(float(it[need - 1]))[1]

    def best_overall(self) -> dict[str, float]:
        """The shift with the highest overall R@k (an oracle: chosen on the test queries)."""
        c = self.curve()
        finite = c[np.isfinite(c[:, 0])]
        rows = finite if len(finite) else c
        i = int(np.argmax(rows[:, 3]))
        return {"b": float(rows[i, 0]), "ImageQ": float(rows[i, 1]), "TextQ": float(rows[i, 2]),
                "overall": float(rows[i, 3])}

    def grid(self, max_rows: int = 16) -> list[float]:
        """Round ``b`` values spanning every breakpoint (0 included), for a table."""
        bp = self.breakpoints()
        lo = min(0.0, float(bp.min()) if len(bp) else 0.0)
        hi = max(0.0, float(bp.max()) if len(bp) else 0.0)
        span = hi - lo
        if span <= 0:
            return [0.0]
        step = _nice_step(span / max(1, max_rows - 1))
        start = math.floor(lo / step) * step
        n = int(math.ceil((hi - start) / step)) + 1
        return sorted({round(start + i * step, 6) for i in range(n)} | {0.0})


def _nice_step(x: float) -> float:
    exp = math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * 10**exp >= x:
            return m * 10**exp
    return 10 ** (exp + 1)


def shift_frontier(mats: dict[Modality, np.ndarray], pos: dict[str, tuple[Modality, int]], qvecs: np.ndarray,
                   gold_ids: Sequence[Sequence[str]], gold_modality: Sequence[str], k: int = 10,
                   chunk: int = 512) -> Frontier | None:
    """Thresholds of the uniform image-score shift for every TextQ / ImageQ query.

    Args:
        mats: raw item vectors per modality (L2-normalised).
        pos: item id → (modality, row in ``mats``).
        qvecs: (n, d) query embeddings.
        gold_ids: each query's gold ids.
        gold_modality: each query's gold modality (``"text"`` / ``"image"``).
        k: the Recall cut-off.

    Returns:
        The :class:`Frontier`, or ``None`` when the store lacks a modality or there are no
        queries of either kind (no trade-off to trace). Golds missing from the store count
        as never retrieved.
    """
    img, txt = mats.get(Modality.IMAGE), mats.get(Modality.TEXT)
    if img is None or txt is None or not len(img) or not len(txt):
        return None
    gm = np.asarray([Modality.parse(m).value for m in gold_modality])
    if not (gm == "image").any() or not (gm == "text").any():
        return None
    t_out: list[float] = []
    c_out: list[float] = []
    for s in range(0, len(qvecs), chunk):
        q = np.asarray(qvecs[s : s + chunk], np.float32)
        sims = {Modality.IMAGE: q @ img.T, Modality.TEXT: q @ txt.T}
        tops = {m: _top_desc(v, k) for m, v in sims.items()}
        for li in range(len(q)):
            qi = s + li
            is_img = gm[qi] == "image"
            best = math.inf if is_img else -math.inf
            for g in gold_ids[qi]:
                if g not in pos:
                    continue
                m, j = pos[g]
                other = Modality.TEXT if m == Modality.IMAGE else Modality.IMAGE
                gcos = sims[m][li, j]
                r = 1 + int((sims[m][li] > gcos).sum())
                if r > k:
                    continue  # lost within its own modality: no shift helps
                jj = k - r  # 0-based index of the (k − r + 1)-th largest other-modality cosine
                row = tops[other][li]
                if is_img:
                    thr = -math.inf if jj >= len(row) else float(row[jj] - gcos)
                    best = min(best, thr)
                else:
                    thr = math.inf if jj >= len(row) else float(gcos - row[jj])
                    best = max(best, thr)
            (t_out if is_img else c_out).append(best)
    return Frontier(k=k, image_t=np.asarray(t_out, np.float64), text_c=np.asarray(c_out, np.float64))


def _top_desc(sims: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest values of each row, descending (fewer when a row is shorter)."""
    kk = min(k, sims.shape[1])
    part = -np.partition(-sims, kk - 1, axis=1)[:, :kk]
    return -np.sort(-part, axis=1)


def summarize_frontier(fr: Frontier, points: dict[str, dict[str, float]], max_curve: int = 101) -> dict[str, Any]:
    """JSON-ready frontier: a table of round shifts, the oracle best shift, the ceilings, a
    sampled curve and, per corrector, its distance to the frontier.

    Args:
        fr: the frontier.
        points: corrector → ``{"ImageQ": R@k, "TextQ": R@k, "overall": R@k}``.
        max_curve: at most this many curve points (sampled evenly along ImageQ recall).
    """
    c = fr.curve()
    # keep the staircase corners only, then sample
    keep = np.r_[True, (np.diff(c[:, 1]) != 0) | (np.diff(c[:, 2]) != 0)]
    c = c[keep]
    if len(c) > max_curve:
        c = c[np.unique(np.linspace(0, len(c) - 1, max_curve).round().astype(int))]
    rows = []
    for b in fr.grid():
        ri, rt, ov = fr.recall(b)
        rows.append({"b": b, "ImageQ": round(ri, 4), "TextQ": round(rt, 4), "overall": round(ov, 4)})
    corr = {}
    for name, p in points.items():
        ft = fr.text_at(p["ImageQ"])
        corr[name] = {"ImageQ": p["ImageQ"], "TextQ": p["TextQ"], "overall": p.get("overall"),
                      "frontier_TextQ_at_same_ImageQ": None if ft is None else round(ft, 4),
                      "delta_TextQ_vs_frontier": None if ft is None else round(p["TextQ"] - ft, 4)}
    best = {k: (round(v, 4) if k != "b" else round(v, 5)) for k, v in fr.best_overall().items()}
    return {"k": fr.k, "n": {"ImageQ": fr.n_image, "TextQ": fr.n_text},
            "shift": "b added to every image cosine before the merge (b > 0 favours images)",
            "ceilings": {k: round(v, 4) for k, v in fr.ceilings().items()}, "best_overall_oracle": best,
            "table": rows, "correctors": corr,
            "curve": [[None if not np.isfinite(r[0]) else round(float(r[0]), 5), round(float(r[1]), 4),
                       round(float(r[2]), 4)] for r in c]}


__all__ = ["Frontier", "shift_frontier", "summarize_frontier", "plot_tradeoff"]
