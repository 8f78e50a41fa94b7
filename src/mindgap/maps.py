"""Linear maps across the modality gap: closed-form OLS and orthogonal Procrustes (METHODS §3).

Plain functions on arrays (faiss-contrib / scikit-learn style). Both fits follow mRAG-gim's
preprocessing: L2-normalise every row, mean-centre each side (the centring matters most),
then solve in closed form:

* **OLS** — ``W = argmin ‖X W − Y‖²  (+ ridge · ‖W‖²)``: ``numpy.linalg.lstsq`` without a
  ridge (minimum-norm solution when ``XᵀX`` is singular), ``solve(XᵀX + ridge·I, XᵀY)``
  with one. ``ridge`` is on the *sum* of squares (scikit-learn's ``Ridge(alpha)``
  convention), so its useful scale grows with the number of pairs.
* **Procrustes** — ``W = U Vᵀ`` from the SVD ``XᵀY = U S Vᵀ``: the orthogonal ``W`` that
  best rotates the centred sources onto the centred targets (needs equal dimensions).

A :class:`LinearMap` maps (L2-normalised) source vectors into the **centred** target
space: ``transform(x) = (l2(x) − source_mean_) @ W_``. Compare its output with targets
centred by ``target_mean_`` (re-normalised for cosine), or add ``target_mean_`` back to land
in the raw target space.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 8)); y = x @ np.linalg.qr(rng.normal(size=(8, 8)))[0] + 1.0
    >>> lm = fit_procrustes(x, y)
    >>> lm.W_.shape, lm.kind
    ((8, 8), 'procrustes')
    >>> same = LinearMap.from_dict(lm.to_dict())
    >>> bool(np.allclose(same.transform(x[:3]), lm.transform(x[:3])))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["LinearMap", "fit_ols", "fit_procrustes", "fit_map", "MAP_KINDS"]

MAP_KINDS = ("ols", "procrustes")


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


class LinearMap:
    """A fitted linear map ``source → centred target`` space.

    Attributes:
        W_: ``(d_source, d_target)`` float32 matrix (orthogonal for ``procrustes``).
        source_mean_: mean of the L2-normalised sources (``None`` when ``center=False``).
        target_mean_: mean of the L2-normalised targets (``None`` when ``center=False``).
        kind: ``"ols"`` or ``"procrustes"``.
        ridge: the OLS ridge used (0 for Procrustes).
        center: whether both sides were mean-centred.
        n_pairs: how many pairs it was fitted on.
    """

    def __init__(self, W: np.ndarray, source_mean: np.ndarray | None = None, target_mean: np.ndarray | None = None,
                 *, kind: str = "ols", ridge: float = 0.0, center: bool = True, n_pairs: int = 0) -> None:
        self.W_ = np.ascontiguousarray(W, dtype=np.float32)
        self.source_mean_ = None if source_mean is None else np.asarray(source_mean, np.float32).reshape(-1)
        self.target_mean_ = None if target_mean is None else np.asarray(target_mean, np.float32).reshape(-1)
        self.kind = str(kind)
        self.ridge = float(ridge)
        self.center = bool(center)
        self.n_pairs = int(n_pairs)

    @property
    def dims(self) -> tuple[int, int]:
        """``(d_source, d_target)``."""
        return int(self.W_.shape[0]), int(self.W_.shape[1])

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map source vectors (rows are L2-normalised first) into the centred target space.

        Returns float32 ``(n, d_target)``, *not* re-normalised (callers normalise for cosine).
        """
        x = np.atleast_2d(np.asarray(x))
        if x.shape[-1] != self.W_.shape[0]:
            raise InputError(f"map expects {self.W_.shape[0]}-d source vectors, got {x.shape[-1]}-d", item="map")
        x = _l2(x).astype(np.float32)
        if self.source_mean_ is not None:
            x = x - self.source_mean_
        return np.ascontiguousarray(x @ self.W_, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A flat dict of numpy arrays and JSON scalars (``None`` means "not centred")."""
        return {"kind": self.kind, "ridge": self.ridge, "center": self.center, "n_pairs": self.n_pairs,
                "W_": self.W_, "source_mean_": self.source_mean_, "target_mean_": self.target_mean_}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LinearMap":
        """Rebuild from :meth:`to_dict` output (arrays may come back as lists or 0-d arrays)."""
        try:
            w = np.asarray(d["W_"], dtype=np.float32)
        except KeyError:
            raise InputError("linear map state has no 'W_'", item="map") from None
        if w.ndim != 2:
            raise InputError(f"linear map 'W_' must be 2-D, got shape {w.shape}", item="map")

        def vec(key: str) -> np.ndarray | None:
            v = d.get(key)
            if v is None:
                return None
            a = np.asarray(v)
            if a.dtype == object or a.ndim == 0:  # a None that went through np.asarray / npz
                return None
            return a.astype(np.float32)

        def scalar(key: str, default: Any) -> Any:
            v = d.get(key, default)
            return v.item() if isinstance(v, np.ndarray) else v

        return cls(w, vec("source_mean_"), vec("target_mean_"), kind=str(scalar("kind", "ols")),
                   ridge=float(scalar("ridge", 0.0)), center=bool(scalar("center", True)),
                   n_pairs=int(scalar("n_pairs", 0)))

    def __repr__(self) -> str:
        return (f"LinearMap(kind={self.kind!r}, dims={self.dims}, ridge={self.ridge}, center={self.center}, "
                f"n_pairs={self.n_pairs})")


def _prepare(x: np.ndarray, y: np.ndarray, center: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 2:
        raise InputError(f"expected 2-D arrays, got shapes {x.shape} and {y.shape}", item="pairs")
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{x.shape[0]} source rows but {y.shape[0]} target rows: pairs must align", item="pairs")
    if x.shape[0] < 2:
        raise InputError(f"need at least 2 pairs to fit a map, got {x.shape[0]}", item="pairs")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("non-finite values in the fitting vectors", item="pairs")
    x, y = _l2(x), _l2(y)
    if not center:
        return x, y, None, None
    mx, my = x.mean(0), y.mean(0)
    return x - mx, y - my, mx, my


def fit_ols(x: np.ndarray, y: np.ndarray, *, center: bool = True, ridge: float = 0.0) -> LinearMap:
    """Least-squares map ``x → y`` (rows are pairs), optionally ridge-regularised.

    Args:
        x: ``(n, d_source)`` source vectors (raw; rows are L2-normalised here).
        y: ``(n, d_target)`` paired target vectors.
        center: mean-centre both sides first (METHODS §3, step 2).
        ridge: L2 penalty on ``W`` (0 = plain OLS via ``lstsq``).

    Returns:
        The fitted :class:`LinearMap`.
    """
    ridge = float(ridge)
    if not np.isfinite(ridge) or ridge < 0:
        raise InputError(f"ridge must be a finite number >= 0, got {ridge}", item="ridge")
    xc, yc, mx, my = _prepare(x, y, center)
    if ridge > 0:
        w = np.linalg.solve(xc.T @ xc + ridge * np.eye(xc.shape[1]), xc.T @ yc)
    else:
        w, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    return LinearMap(w, mx, my, kind="ols", ridge=ridge, center=center, n_pairs=xc.shape[0])


def fit_procrustes(x: np.ndarray, y: np.ndarray, *, center: bool = True) -> LinearMap:
    """Orthogonal Procrustes map ``x → y``: ``W = U Vᵀ`` with ``U S Vᵀ = svd(XᵀY)``.

    Args:
        x: ``(n, d)`` source vectors (raw; rows are L2-normalised here).
        y: ``(n, d)`` paired target vectors (same dimension: ``W`` is a rotation/reflection).
        center: mean-centre both sides first.
    """
    xc, yc, mx, my = _prepare(x, y, center)
    if xc.shape[1] != yc.shape[1]:
        raise InputError(f"Procrustes needs equal dimensions, got {xc.shape[1]} and {yc.shape[1]}", item="pairs")
    u, _, vt = np.linalg.svd(xc.T @ yc)
    return LinearMap(u @ vt, mx, my, kind="procrustes", ridge=0.0, center=center, n_pairs=xc.shape[0])


def fit_map(x: np.ndarray, y: np.ndarray, *, kind: str = "ols", center: bool = True, ridge: float = 0.0) -> LinearMap:
    """Dispatch on ``kind`` (``"ols"`` or ``"procrustes"``; ``ridge`` is OLS-only)."""
    if kind == "ols":
        return fit_ols(x, y, center=center, ridge=ridge)
    if kind == "procrustes":
        return fit_procrustes(x, y, center=center)
    raise InputError(f"unknown map kind {kind!r}; expected one of: {', '.join(MAP_KINDS)}", item="kind")
