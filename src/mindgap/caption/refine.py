"""Iterative refinement with CIDEr-D-filtered synthetic captions (mRAG-gim §3.5).

One iteration:

1. describe a sample of *training* images with the current model — leave-one-out: an
   image's own captions are excluded from its retrieval, otherwise the generator would
   just copy a reference;
2. score each synthetic caption against that image's references with CIDEr-D
   (document frequencies over all training references, so single scores are comparable);
3. keep those above the current *validation mean* CIDEr-D;
4. add them to the caption store and to the OLS samples (paired with their image), refit;
5. re-measure the validation CIDEr-D; keep the candidate only if it improved, else stop.

Validation images come from ``val_records``; those that are also training images are
described leave-one-out as well. Synthetic-caption images never overlap the validation
images. Every iteration's numbers are logged (and stored in the model's ``refinement``
history).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .generate import Captioner, Order
from .map import CaptionModel
from .metrics import CiderD, caption_scores, tokenize
from .store import CaptionEntry


@dataclass
class IterationLog:
    """Numbers of one refinement iteration (iteration 0 = the starting model)."""

    iteration: int
    val_cider_d: float
    val_bleu4: float
    val_rouge_l: float
    n_val: int
    n_generated: int = 0
    n_kept: int = 0
    threshold: float = 0.0
    synthetic_mean_cider_d: float = 0.0
    n_captions: int = 0
    accepted: bool = True
    seconds: float = 0.0


@dataclass
class RefineResult:
    """The refined model (the best one seen), the per-iteration log and why it stopped."""

    model: CaptionModel
    log: list[IterationLog]
    stopped: str

    def to_dict(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "iterations": [asdict(x) for x in self.log]}


def _encode_images(model: CaptionModel, records: Sequence[Any]) -> np.ndarray:
    """Raw embeddings of records: fitted images come from the model, others are encoded."""
    rows = [model._row.get(r.image_id) for r in records]
    out = np.zeros((len(records), model.store.dim), np.float32)
    missing = [i for i, j in enumerate(rows) if j is None]
    for i, j in enumerate(rows):
        if j is not None:
            out[i] = model.image_vectors[j]
    if missing:
        out[missing] = model.encoder().encode_image([records[i].path for i in missing], show_progress=False)
    return out


def validate(model: CaptionModel, generator: Any, records: Sequence[Any], vectors: np.ndarray, *,
             k: int, order: Order) -> tuple[dict[str, float], list[str]]:
    """Describe validation images (leave-one-out for fitted ones) → BLEU-4 / ROUGE-L / CIDEr-D."""
    cap = Captioner(model, generator, k=k, order=order)
    fitted = set(model.image_ids)
    res = cap.describe_vectors(vectors, [r.image_id for r in records],
                               exclude_image_ids=[r.image_id if r.image_id in fitted else None for r in records])
    hyps = [r.caption or "" for r in res]
    return caption_scores(hyps, [r.captions for r in records]), hyps


def refine(model: CaptionModel, generator: Any, train_records: Sequence[Any], val_records: Sequence[Any], *,
           k: int = 5, order: Order = "s2d", max_iter: int = 3, train_size: int = 100, val_size: int = 50,
           min_delta: float = 0.0, seed: int = 0, keep_last: bool = False,
           on_iteration: Callable[[IterationLog], None] | None = None) -> RefineResult:
    """Run refinement until the validation CIDEr-D stops improving (or ``max_iter``).

    Args:
        model: a fitted model (not modified; the result holds the best model).
        generator: writes the synthetic captions (and the validation captions).
        train_records: fitted training images (synthetic captions are written for these).
        val_records: validation images with references.
        train_size: training images described per iteration (a fresh sample each time).
        val_size: validation images used (one fixed sample).
        min_delta: an iteration must raise validation CIDEr-D by more than this.
        keep_last: ablation switch — return the last candidate even when validation did not
            improve (e.g. to measure "after one iteration" with ``max_iter=1``).
        on_iteration: called with each iteration's log (e.g. to print JSON lines).
    """
    if max_iter < 1:
        raise InputError("max_iter must be >= 1", item="max_iter")
    rng = random.Random(seed)
    fitted = set(model.image_ids)
    val = list(val_records)
    if len(val) > val_size:
        val = rng.sample(val, val_size)
    val_ids = {r.image_id for r in val}
    pool = [r for r in train_records if r.image_id in fitted and r.image_id not in val_ids]
    if not pool:
        raise InputError("no fitted training images left for synthetic captions", item="train_records")
    if not val:
        raise InputError("no validation images", item="val_records")
    val_vec = _encode_images(model, val)
    cider = CiderD([[tokenize(c) for c in r.captions] for r in train_records], tokenized=True)

    t0 = time.perf_counter()
    best = model.copy()
    scores, _ = validate(best, generator, val, val_vec, k=k, order=order)
    log = [IterationLog(0, scores["cider_d"], scores["bleu4"], scores["rouge_l"], len(val),
                        n_captions=len(best.store), seconds=round(time.perf_counter() - t0, 2))]
    if on_iteration:
        on_iteration(log[-1])
    stopped = f"reached max_iter={max_iter}"
    for it in range(1, max_iter + 1):
        t0 = time.perf_counter()
        sample = rng.sample(pool, min(train_size, len(pool)))
        vec = _encode_images(best, sample)
        cap = Captioner(best, generator, k=k, order=order)
        res = cap.describe_vectors(vec, [r.image_id for r in sample], exclude_image_ids=[r.image_id for r in sample])
        hyps = [tokenize(r.caption or "") for r in res]
        _, per = cider.score(hyps, [[tokenize(c) for c in r.captions] for r in sample], tokenized=True)
        threshold = max(x.val_cider_d for x in log if x.accepted)  # the current model's validation mean
        keep = [i for i, s in enumerate(per) if s > threshold and res[i].caption]
        entry = IterationLog(it, float("nan"), float("nan"), float("nan"), len(val), len(sample), len(keep),
                             round(threshold, 6), round(float(np.mean(per)), 6) if per else 0.0)
        if not keep:
            entry.accepted, entry.n_captions = False, len(best.store)
            entry.seconds = round(time.perf_counter() - t0, 2)
            log.append(entry)
            if on_iteration:
                on_iteration(entry)
            stopped = f"iteration {it}: no synthetic caption scored above the validation mean"
            break
        cand = best.copy()
        texts = [res[i].caption for i in keep]
        ents = [CaptionEntry(f"{sample[i].image_id}#s{it}", sample[i].image_id, res[i].caption, "synthetic", it)
                for i in keep]
        cand.store.add(ents, cand.encoder().encode_text(texts, show_progress=False))
        cand.refit()
        scores, _ = validate(cand, generator, val, val_vec, k=k, order=order)
        entry.val_cider_d, entry.val_bleu4, entry.val_rouge_l = scores["cider_d"], scores["bleu4"], scores["rouge_l"]
        entry.n_captions = len(cand.store)
        best_val = max(x.val_cider_d for x in log if x.accepted)
        entry.accepted = scores["cider_d"] > best_val + min_delta
        entry.seconds = round(time.perf_counter() - t0, 2)
        log.append(entry)
        if on_iteration:
            on_iteration(entry)
        if not entry.accepted:
            stopped = (f"iteration {it}: validation CIDEr-D {scores['cider_d']:.4f} did not improve on "
                       f"{best_val:.4f}; " + ("returned it anyway (keep_last)" if keep_last else "kept the previous model"))
            if keep_last:
                best = cand
            break
        best = cand
    best.meta.setdefault("refinement", []).append(
        {"stopped": stopped, "iterations": [asdict(x) for x in log], "k": k, "order": order,
         "generator": getattr(generator, "name", str(generator)), "train_size": train_size,
         "val_size": len(val), "seed": seed})
    return RefineResult(best, log, stopped)
