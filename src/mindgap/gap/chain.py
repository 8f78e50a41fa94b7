"""``a+b``: combinations of gap correctors (``linear+zscore``, ``center+zscore``, ``modal-clf+linear``).

Semantics (documented choices):

* ``prepare_query`` and ``transform_items`` compose left → right: ``linear+zscore`` maps
  the query, ``center+linear`` centres then maps.
* ``score`` is the one score-level step's (``zscore``); identity without one. A chain with
  two score-level steps is refused: the second would be fitted on raw cosines, not on the
  first one's scores.
* ``calibrated`` in a chain runs without its hubness term (``hub=0``): that term needs each
  candidate's vector, and a chain's score step gets cosines only.
* ``route`` is the one router's (``modal-clf``), on the *raw* query (and its text); a chain
  with two routers is refused.
* ``fit`` fits the steps in order, each non-router on the fitting data *as transformed by
  the steps before it* (queries through ``prepare_query`` towards their gold's modality,
  gold and corpus items through ``transform_items``), so ``linear+zscore`` standardises the
  cosines of mapped queries — exactly what it scores at search time. Routers are fitted on
  the raw data (they route raw queries).
* **Cross-fitting.** A step fitted on the pairs (``linear``) fits its own training pairs
  far better than new queries (an OLS map reaches cos ≈ 0.9 on the pairs it was fitted
  on, ≈ 0.3 on others), so statistics of the *next* step computed in-sample would be
  badly optimistic. The data handed on is therefore transformed out-of-fold: ``cv_folds``
  copies of the step, each fitted without one fold (folds grouped by gold item), transform
  that fold — standard stacking. The step itself is fitted on all pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..types import Modality
from .base import FitData, GapCorrector, corrector_from_dict

log = logging.getLogger(__name__)

def _overrides(step: GapCorrector, hook: str) -> bool:
    return getattr(type(step), hook) is not getattr(GapCorrector, hook)


class Chain(GapCorrector, composite=True):
    """Several correctors applied as one (see the module docstring for the semantics).

    Args:
        steps: the correctors, left to right (nested chains are flattened).
        spec: the spec string it was built from (for display).
        cv_folds: folds for cross-fitting pair-fitted steps (< 2: transform in-sample).
    """

    name = "chain"

    def __init__(self, steps: Sequence[GapCorrector], spec: str | None = None, cv_folds: int = 5) -> None:
        flat: list[GapCorrector] = []
        for s in steps:
            flat.extend(s.steps if isinstance(s, Chain) else [s])
        if not flat:
            raise InputError("an empty gap-corrector chain", item="gap")
        scorers = [s.name for s in flat if _overrides(s, "score")]
        routers = [s.name for s in flat if _overrides(s, "route")]
        if len(scorers) > 1:
            raise InputError(f"at most one score-level corrector per chain, got {' and '.join(scorers)}", item="gap")
        if len(routers) > 1:
            raise InputError(f"at most one routing corrector per chain, got {' and '.join(routers)}", item="gap")
        for s in flat:  # a chain's score step sees cosines only: calibrated runs without its hubness term
            if getattr(s, "hub", 0) and s.name == "calibrated":
                s.hub = 0.0
        self.steps = flat
        self.spec = spec or "+".join(s.name for s in flat)
        self.cv_folds = int(cv_folds)

    # -- flags are the steps' ------------------------------------------------------------
    @property
    def transforms_items(self) -> bool:  # type: ignore[override]
        return any(s.transforms_items for s in self.steps)

    @property
    def needs_pairs(self) -> bool:  # type: ignore[override]
        return any(s.needs_pairs for s in self.steps)

    @property
    def uses_query_text(self) -> bool:  # type: ignore[override]
        return any(s.uses_query_text for s in self.steps)

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, data: FitData) -> "Chain":
        cur = data
        for i, step in enumerate(self.steps):
            router = _overrides(step, "route")
            step.fit(data if router else cur)
            if i < len(self.steps) - 1:
                if step.needs_pairs and not router and self.cv_folds > 1:
                    cur = _cross_fitted(step, cur, self.cv_folds)
                else:
                    cur = _transformed(step, cur)
        return self

    # -- hooks -----------------------------------------------------------------------------
    def prepare_query(self, q: np.ndarray, query_modality: Modality, target: Modality) -> np.ndarray:
        for s in self.steps:
            q = s.prepare_query(q, query_modality, target)
        return q

    def transform_items(self, x: np.ndarray, modality: Modality) -> np.ndarray:
        for s in self.steps:
            if s.transforms_items:
                x = s.transform_items(x, modality)
        return x

    def score(self, sim: np.ndarray, query_modality: Modality, modality: Modality) -> np.ndarray:
        for s in self.steps:
            if _overrides(s, "score"):
                return s.score(sim, query_modality, modality)
        return sim

    def route(self, q: np.ndarray, query_modality: Modality,
              texts: Sequence[str] | None = None) -> list[list[Modality]] | None:
        for s in self.steps:
            if _overrides(s, "route"):
                return s.route(q, query_modality, texts=texts) if s.uses_query_text else s.route(q, query_modality)
        return None

    # -- persistence -----------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {"spec": self.spec, "cv_folds": self.cv_folds}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.get_params(), "state": {},
                "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Chain":
        steps = d.get("steps")
        if not isinstance(steps, list) or not steps:
            raise InputError("gap-corrector chain entry without 'steps'", item="gap")
        params = d.get("params") or {}
        return cls([corrector_from_dict(s) for s in steps], spec=params.get("spec"),
                   cv_folds=int(params.get("cv_folds", 5)))

    def summary(self) -> dict[str, Any]:
        return {s.name: (s.summary() if hasattr(s, "summary") else {}) for s in self.steps}

    def __repr__(self) -> str:
        return f"Chain({self.steps!r})"


def _transformed(step: GapCorrector, d: FitData) -> FitData:
    """``d`` as seen after ``step``: queries prepared towards their gold's modality, items moved."""
    queries, gold = d.queries, d.gold
    if queries is not None and len(queries):
        qm = d.qmod()
        tm = qm if d.gold_modality is None else np.asarray([Modality.parse(m).value for m in d.gold_modality])
        queries = np.array(queries, dtype=np.float32, copy=True)
        out_q = None
        for a in np.unique(qm):
            for b in np.unique(tm):
                sel = (qm == a) & (tm == b)
                if sel.any():
                    moved = np.asarray(step.prepare_query(queries[sel], Modality.parse(a), Modality.parse(b)), np.float32)
                    if out_q is None:
                        out_q = np.zeros((len(queries), moved.shape[1]), np.float32)
                    out_q[sel] = moved
        queries = out_q
        if gold is not None and step.transforms_items:
            out_g = None
            for b in np.unique(tm):
                sel = tm == b
                moved = np.asarray(step.transform_items(np.asarray(gold)[sel], Modality.parse(b)), np.float32)
                if out_g is None:
                    out_g = np.zeros((len(gold), moved.shape[1]), np.float32)
                out_g[sel] = moved
            gold = out_g
    corpus = dict(d.corpus)
    if step.transforms_items:
        corpus = {m: np.asarray(step.transform_items(np.asarray(x), Modality.parse(m)), np.float32) for m, x in corpus.items()}
    return FitData(queries=queries, gold=gold, gold_modality=d.gold_modality, query_modality=d.query_modality,
                   corpus=corpus, pairs=d.pairs)


def _cross_fitted(step: GapCorrector, d: FitData, folds: int) -> FitData:
    """``d`` after ``step``, each pair transformed by a copy of ``step`` fitted without its fold."""
    from ..errors import MindgapError

    full = _transformed(step, d)  # corpus (and a fallback) from the step fitted on everything
    if d.queries is None or d.gold is None or len(d.queries) < 2 * folds:
        return full
    _, group = np.unique(np.asarray(d.gold, np.float32), axis=0, return_inverse=True)
    group = np.asarray(group).reshape(-1)
    perm = np.random.default_rng(0).permutation(int(group.max()) + 1)
    fold = perm[group] % folds
    queries = np.array(full.queries, copy=True)
    gold = None if full.gold is None else np.array(full.gold, copy=True)
    for f in range(folds):
        held = fold == f
        if not held.any() or held.all():
            continue
        clone = type(step)(**step.get_params())
        try:
            clone.fit(d.take(~held))
        except (MindgapError, ValueError, np.linalg.LinAlgError) as exc:
            log.warning("cross-fitting %s: fold %d cannot be fitted (%s); using in-sample transforms", step.name, f, exc)
            return full
        part = _transformed(clone, d.take(held))
        queries[held] = part.queries
        if gold is not None and part.gold is not None:
            gold[held] = part.gold
    return FitData(queries=queries, gold=gold, gold_modality=d.gold_modality, query_modality=d.query_modality,
                   corpus=full.corpus, pairs=d.pairs)
