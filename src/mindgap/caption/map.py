"""The caption model: an image→text linear map (from :mod:`mindgap.maps`) + a caption store.

``fit_caption_model`` embeds every training image–caption pair (one sample per pair: an
image with 5 captions is 5 samples), L2-normalises, mean-centres each modality and fits
``W`` (OLS closed form, optional ridge, or orthogonal Procrustes) with
:mod:`mindgap.maps`. Retrieval then happens in the centred text space: a mapped image is
compared with training captions centred with the same text mean (the store's ``mapped``
index).

Directory layout (written atomically: a temp dir renamed into place)::

    caption_model.json   encoder spec + dim, map kind / ridge / centring, data + split,
                         fitted image ids, counts, refinement history
    map.npz              the fitted linear map (``LinearMap.to_dict`` arrays)
    images.npy           raw L2-normalised embeddings of the fitted images (for refits)
    store/               the :class:`~mindgap.caption.store.CaptionStore`
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import EncoderMismatch, InputError, StoreError
from .store import CaptionEntry, CaptionStore

FORMAT = "mindgap-caption-model/1"
KINDS = ("ols", "procrustes")


# -- the seam to mindgap.maps (owned elsewhere) -------------------------------------------
def fit_linear_map(x: np.ndarray, y: np.ndarray, *, kind: str = "ols", ridge: float = 0.0,
                   center: bool = True) -> Any:
    """Fit the image→text map on paired raw embeddings with :mod:`mindgap.maps`."""
    from .. import maps

    if kind not in KINDS:
        raise InputError(f"unknown map kind {kind!r}; expected one of: {', '.join(KINDS)}", item="kind")
    fit = maps.fit_ols if kind == "ols" else maps.fit_procrustes
    kw: dict[str, Any] = {"center": center}
    if kind == "ols":
        kw["ridge"] = ridge
    return fit(x, y, **kw)


RIDGE_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def _single_blas_thread() -> Any:
    """Limit BLAS to one thread for loops of small solves (a no-op without ``threadpoolctl``).

    Why: multi-threaded OpenBLAS on a few hundred dimensions gains nothing and, when the
    cores are shared with other work, its spinning threads stall badly — measured 7.8 s vs
    0.9 s for the 50 CV fits of a 1,500-pair ridge selection on a busy 2-core machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def select_ridge(image_vectors: np.ndarray, caption_vectors: np.ndarray, owner: np.ndarray, *,
                 grid: Sequence[float] = RIDGE_GRID, folds: int = 5, center: bool = True,
                 seed: int = 0) -> tuple[float, dict[float, float]]:
    """Pick the OLS ridge λ by image-grouped K-fold CV on the training pairs only.

    The criterion is the task itself: for held-out images, nDCG@10 of retrieving their
    own captions (among the held-out captions) through the map. With 5 captions per image
    the OLS design has only as many distinct rows as images, so λ = 0 over-fits easily
    (and is singular below ``dim`` images).

    Args:
        image_vectors: ``(n_images, d)`` raw image embeddings.
        caption_vectors: ``(n_captions, d)`` raw caption embeddings.
        owner: ``(n_captions,)`` row of ``image_vectors`` each caption belongs to.

    Returns:
        ``(best λ, {λ: mean CV nDCG@10})``.
    """
    owner = np.asarray(owner)
    n = image_vectors.shape[0]
    if n < 2 * folds:
        raise InputError(f"too few images ({n}) for {folds}-fold ridge selection", item="ridge")
    perm = np.random.default_rng(seed).permutation(n)
    fold_of = np.empty(n, int)
    fold_of[perm] = np.arange(n) % folds
    scores: dict[float, list[float]] = {float(lam): [] for lam in grid}
    with _single_blas_thread():
        _cv_folds(image_vectors, caption_vectors, owner, fold_of, folds, scores, center)
    mean = {lam: float(np.mean(v)) for lam, v in scores.items()}
    best = max(mean, key=lambda lam: (round(mean[lam], 6), lam))  # ties → the stronger ridge
    return best, mean


def _cv_folds(image_vectors: np.ndarray, caption_vectors: np.ndarray, owner: np.ndarray, fold_of: np.ndarray,
              folds: int, scores: dict[float, list[float]], center: bool) -> None:
    from .metrics import ndcg_at_k

    for f in range(folds):
        tr_img = fold_of != f
        tr, te = tr_img[owner], ~tr_img[owner]
        te_imgs = np.flatnonzero(~tr_img)
        local = {g: i for i, g in enumerate(te_imgs)}
        te_owner = np.array([local[o] for o in owner[te]])
        n_rel = np.bincount(te_owner, minlength=len(te_imgs))
        for lam in scores:
            lm = fit_linear_map(image_vectors[owner[tr]], caption_vectors[tr], kind="ols", ridge=lam, center=center)
            q = l2_normalize(lm.transform(l2_normalize(image_vectors[te_imgs])))
            tm = getattr(lm, "target_mean_", None)
            c = l2_normalize(l2_normalize(caption_vectors[te]) - (0 if tm is None else tm))
            top = np.argsort(-(q @ c.T), axis=1)[:, :10]
            rel = te_owner[top] == np.arange(len(te_imgs))[:, None]
            scores[lam].append(float(ndcg_at_k(rel, n_rel, 10).mean()))


def _map_state(lm: Any) -> dict[str, Any]:
    return lm.to_dict()


def _map_from_state(state: dict[str, Any]) -> Any:
    from .. import maps

    return maps.LinearMap.from_dict(state)


class CaptionModel:
    """A fitted mRAG-gim caption model.

    Args:
        lmap: the fitted :class:`mindgap.maps.LinearMap`.
        store: captions (references + accepted synthetic ones) and their embeddings.
        image_ids: fitted training images, in the row order of ``image_vectors``.
        image_vectors: their raw L2-normalised embeddings.
        meta: encoder spec/dim, map settings, data and split, history.
    """

    def __init__(self, lmap: Any, store: CaptionStore, image_ids: Sequence[str], image_vectors: np.ndarray,
                 meta: dict[str, Any]) -> None:
        self.lmap, self.store, self.meta = lmap, store, dict(meta)
        self.image_ids = list(image_ids)
        self.image_vectors = l2_normalize(image_vectors)
        self._row = {iid: i for i, iid in enumerate(self.image_ids)}
        self._encoder: Any = None

    # -- mapping ----------------------------------------------------------------------------
    @property
    def text_mean(self) -> np.ndarray:
        """Mean of the training caption embeddings (zero when fitted with ``center=False``)."""
        m = getattr(self.lmap, "target_mean_", None)
        return np.zeros(self.store.dim, np.float32) if m is None else np.asarray(m, np.float32)

    def map_images(self, image_vectors: np.ndarray) -> np.ndarray:
        """Raw image embeddings → unit vectors in the centred text space (the store's ``mapped`` index)."""
        return l2_normalize(self.lmap.transform(l2_normalize(np.atleast_2d(image_vectors))))

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The OLS training samples: one (image, caption) row pair per stored caption."""
        rows = [self._row[e.image_id] for e in self.store.entries]
        return self.image_vectors[rows], self.store.vectors

    def refit(self) -> "CaptionModel":
        """Refit the map on every stored caption (references + synthetic); re-centre the store."""
        x, y = self.pairs()
        self.lmap = fit_linear_map(x, y, kind=self.meta["kind"], ridge=float(self.meta.get("ridge", 0.0)),
                                   center=bool(self.meta.get("center", True)))
        self.store.set_text_mean(self.text_mean)
        self.meta["n_pairs"] = int(x.shape[0])
        return self

    def copy(self) -> "CaptionModel":
        """An independent copy (refinement tries a candidate and may throw it away)."""
        st = CaptionStore(list(self.store.entries), self.store.vectors.copy(), self.text_mean.copy())
        m = CaptionModel(_map_from_state(_map_state(self.lmap)), st, self.image_ids, self.image_vectors.copy(),
                         json.loads(json.dumps(self.meta)))
        m._encoder = self._encoder
        return m

    # -- encoder -----------------------------------------------------------------------------
    def encoder(self) -> Any:
        """The encoder that built the model (loaded once, on first use)."""
        if self._encoder is None:
            from ..encoders import load_encoder

            self._encoder = load_encoder(self.meta["encoder"])
        return self._encoder

    def use_encoder(self, encoder: Any) -> None:
        """Use an already-loaded encoder; it must be the one the model was fitted with."""
        if getattr(encoder, "name", None) != self.meta["encoder"] or int(encoder.dim) != self.store.dim:
            raise EncoderMismatch(
                f"model was fitted with encoder {self.meta['encoder']!r} (dim {self.store.dim}), "
                f"got {getattr(encoder, 'name', '?')!r} (dim {encoder.dim})", item="encoder")
        self._encoder = encoder

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the model atomically: everything goes to a temp dir that is renamed into place."""
        out = Path(directory).expanduser().resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            (tmp / "store").mkdir()
            self.store.save(tmp / "store")
            np.save(tmp / "images.npy", self.image_vectors)
            state = _map_state(self.lmap)
            arrays = {k: np.asarray(v) for k, v in state.items() if isinstance(v, (list, np.ndarray))}
            scalars = {k: v for k, v in state.items() if k not in arrays}
            np.savez(tmp / "map.npz", **arrays)
            meta = dict(self.meta, format=FORMAT, map_scalars=scalars, image_ids=self.image_ids,
                        n_captions=len(self.store), n_images=len(self.image_ids), saved=time.strftime("%Y-%m-%dT%H:%M:%S"))
            (tmp / "caption_model.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), "utf-8")
            old = None
            if out.exists():
                if not (out / "caption_model.json").exists() and any(out.iterdir()):
                    raise StoreError("refusing to replace a non-empty directory that is not a caption model",
                                     item=str(out))
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                out.rename(old)
            tmp.rename(out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> "CaptionModel":
        """Read a model written by :meth:`save` (clear errors for missing / foreign dirs)."""
        d = Path(directory).expanduser()
        f = d / "caption_model.json"
        if not f.is_file():
            raise StoreError("not a caption model directory (no caption_model.json); "
                             "create one with `mindgap caption fit`", item=str(d))
        try:
            meta = json.loads(f.read_text("utf-8"))
            with np.load(d / "map.npz") as z:
                state = {k: z[k] for k in z.files}
            state.update(meta.pop("map_scalars", {}))
            image_vectors = np.load(d / "images.npy")
        except (ValueError, OSError, KeyError) as exc:
            raise StoreError(f"corrupt caption model ({exc})", item=str(d)) from None
        if meta.get("format") != FORMAT:
            raise StoreError(f"unsupported caption model format {meta.get('format')!r}", item=str(d))
        lmap = _map_from_state(state)
        model = cls(lmap, CaptionStore.load(d / "store", np.zeros(image_vectors.shape[1], np.float32)),
                    meta.pop("image_ids"), image_vectors, meta)
        model.store.set_text_mean(model.text_mean)
        return model


def fit_caption_model(records: Sequence[Any], encoder: Any, *, kind: str = "ols", ridge: float | str = 0.0,
                      center: bool = True, data: str = "", split: str = "",
                      image_vectors: np.ndarray | None = None, caption_vectors: np.ndarray | None = None,
                      show_progress: bool | None = None) -> CaptionModel:
    """Embed ``records`` (:class:`~mindgap.datasets.CaptionedImage`) and fit map + store.

    Args:
        records: training images with their reference captions.
        encoder: the dual encoder (its ``name`` is recorded).
        kind / ridge / center: map settings (see :func:`fit_linear_map`); ``ridge="auto"``
            picks λ by :func:`select_ridge` (CV on these training images only).
        data / split: recorded provenance.
        image_vectors / caption_vectors: precomputed raw embeddings (one row per record /
            per caption in record order) to skip encoding.
    """
    if not records:
        raise InputError("no training images", item="records")
    caps = [(r.image_id, j, c) for r in records for j, c in enumerate(r.captions)]
    if not caps:
        raise InputError("the training images have no captions", item="records")
    t0 = time.perf_counter()
    from .cache import encode_images, encode_texts

    iv = encode_images(encoder, [r.path for r in records], show_progress=show_progress) \
        if image_vectors is None else l2_normalize(image_vectors)
    cv = encode_texts(encoder, [c for _, _, c in caps], show_progress=show_progress) \
        if caption_vectors is None else l2_normalize(caption_vectors)
    t_enc = time.perf_counter() - t0
    entries = [CaptionEntry(f"{iid}#{j}", iid, c) for iid, j, c in caps]
    ids = [r.image_id for r in records]
    row = {iid: i for i, iid in enumerate(ids)}
    owner = np.array([row[e.image_id] for e in entries])
    x = iv[owner]
    t1 = time.perf_counter()
    cv_table = None
    if isinstance(ridge, str):
        if ridge != "auto":
            try:
                ridge = float(ridge)
            except ValueError:
                raise InputError(f"ridge must be a number or 'auto', got {ridge!r}", item="ridge") from None
        elif kind != "ols":
            ridge = 0.0
        else:
            ridge, cv_table = select_ridge(iv, cv, owner, center=center)
    if ridge < 0:
        raise InputError("ridge must be >= 0", item="ridge")
    lmap = fit_linear_map(x, cv, kind=kind, ridge=ridge, center=center)
    t_fit = time.perf_counter() - t1
    meta = {"encoder": encoder.name, "dim": int(encoder.dim), "kind": kind, "ridge": float(ridge),
            "center": bool(center), "data": str(data), "split": split, "n_pairs": len(entries),
            "seconds": {"encode": round(t_enc, 2), "fit": round(t_fit, 4)}, "refinement": []}
    if cv_table is not None:
        meta["ridge_cv"] = {"criterion": "5-fold image-grouped CV nDCG@10 (own captions)",
                            "scores": {str(k): round(v, 5) for k, v in cv_table.items()}}
    model = CaptionModel(lmap, CaptionStore(entries, cv, np.zeros(cv.shape[1], np.float32)), ids, iv, meta)
    model.store.set_text_mean(model.text_mean)
    model._encoder = encoder
    return model
