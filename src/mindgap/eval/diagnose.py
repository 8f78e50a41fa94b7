"""``mindgap diagnose``: modality-gap diagnostics of an encoder on an image–caption split (METHODS §2).

Measures, on L2-normalised image and caption embeddings:

* **centroid gap**: ``g = mean(image) − mean(text)``, its norm, and the cosine between
  the two centroids;
* **gap concentration**: the squared per-dimension contributions ``g_d² / ‖g‖²`` sorted
  descending — how many dimensions carry 50 % / 90 % of the gap, against the same count
  for a random isotropic direction (≈ 32 / 115 of 256 dims: a random vector is uneven too,
  so "few dimensions" means far fewer than that baseline, not fewer than d/2);
* **linear separability**: held-out accuracy of a logistic-regression probe (on
  standardised features) telling image from text embeddings (images split into probe-train / probe-test groups with their
  captions, one caption per image so classes are balanced);
* **matched vs. unmatched cosines**: cos(caption, its image) vs. cos(caption, another
  image), their means and the AUC (probability a matched pair scores above an unmatched one);
* **logit entropy**: mean entropy of softmax(scale · cos(image, captions)) for image →
  text classification over one caption per image, with the encoder's own logit scale
  (1/temperature; 100 when unknown), raw and normalised by log n.

and repeats them after the ``center`` and ``linear`` fixes (mindgap.gap correctors,
fitted on data disjoint from the measured split — the encoder's calib images when it
records them, else a seeded hold-out). Text embeddings are treated as queries
(``prepare_query(·, text → image)``) and images as items (``transform_items``). A
corrector not yet available falls back to the plain textbook fix (per-modality mean
removal; an OLS text → image map) and is labelled ``(fallback)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders.base import l2_normalize
from ..errors import InputError, MindgapError
from ..types import Modality

log = logging.getLogger(__name__)


@dataclass
class DiagnoseConfig:
    """Options of ``mindgap diagnose``.

    Attributes:
        data: image–caption folder or shared data-set name.
        split: split measured.
        limit: a seeded subset of this many images (``None`` = all).
        fit_split: split the fixes are fitted on (default: the encoder's calib images of ``val``).
        fit_limit: at most this many fitting images.
        fixes: fixes to apply (``center``, ``linear``).
        captions_per_image: use only the first N captions of each image (``None`` = all).
        seed: subsets, probe split, unmatched pairing.
    """

    data: str = "flickr8k_224"
    split: str = "test"
    limit: int | None = None
    fit_split: str | None = None
    fit_limit: int | None = None
    fixes: tuple[str, ...] = ("center", "linear")
    captions_per_image: int | None = None
    seed: int = 0


def centroid_gap(img: np.ndarray, txt: np.ndarray) -> dict[str, Any]:
    """Centroid gap vector stats and how many dimensions carry 50 % / 90 % of ‖g‖²."""
    mi, mt = img.mean(0), txt.mean(0)
    g = mi - mt
    sq = g.astype(np.float64) ** 2
    tot = float(sq.sum())
    share = np.sort(sq)[::-1] / tot if tot > 0 else np.zeros_like(sq)
    cum = np.cumsum(share)
    d = len(g)
    top = np.argsort(-sq)[:5]
    return {
        "gap_norm": float(np.sqrt(tot)),
        "centroid_cosine": float(mi @ mt / (np.linalg.norm(mi) * np.linalg.norm(mt) + 1e-12)),
        "image_centroid_norm": float(np.linalg.norm(mi)),
        "text_centroid_norm": float(np.linalg.norm(mt)),
        "dims": d,
        "dims_50": int(np.searchsorted(cum, 0.5) + 1) if tot > 0 else 0,
        "dims_90": int(np.searchsorted(cum, 0.9) + 1) if tot > 0 else 0,
        "top5_dims": [int(i) for i in top],
        "top5_share": float(share[:5].sum()),
        **random_direction_dims(d),
        "_cumulative_share": cum,
    }


def random_cumulative_share(d: int, n: int = 500, seed: int = 0) -> np.ndarray:
    """Expected cumulative share of ‖v‖² in the top-n components of a random isotropic
    (Gaussian) ``d``-dim vector — the baseline for "the gap is carried by few dimensions".

    Even a random direction is uneven: in 256 dims its top 32 components carry half its
    energy, so ``dims_50`` means something only against this baseline, not against d/2.
    """
    sq = np.random.default_rng(seed).normal(size=(n, d)) ** 2
    sq = -np.sort(-sq, axis=1)
    return (np.cumsum(sq, axis=1) / sq.sum(1, keepdims=True)).mean(0)


def random_direction_dims(d: int) -> dict[str, int]:
    """``dims_50`` / ``dims_90`` of a random isotropic direction in ``d`` dims (see above)."""
    c = random_cumulative_share(d)
    return {"dims_50_random": int(np.searchsorted(c, 0.5) + 1), "dims_90_random": int(np.searchsorted(c, 0.9) + 1)}


def separability(img: np.ndarray, txt_one: np.ndarray, seed: int = 0, test_frac: float = 0.3) -> dict[str, Any]:
    """Held-out accuracy of a logistic-regression image-vs-text probe (grouped by image)."""
    from ..errors import require

    require("sklearn", "ml")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = len(img)
    if n < 10:
        raise InputError("need at least 10 images for the separability probe", item="limit")
    perm = np.random.default_rng(seed).permutation(n)
    n_te = max(2, int(round(test_frac * n)))
    te, tr = perm[:n_te], perm[n_te:]
    x_tr = np.concatenate([img[tr], txt_one[tr]])
    y_tr = np.r_[np.ones(len(tr)), np.zeros(len(tr))]
    x_te = np.concatenate([img[te], txt_one[te]])
    y_te = np.r_[np.ones(len(te)), np.zeros(len(te))]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(x_tr, y_tr)
    return {"probe_accuracy": float(clf.score(x_te, y_te)), "probe_train": int(len(x_tr)), "probe_test": int(len(x_te))}


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def matched_unmatched(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """cos(caption, its image) vs. cos(caption, a random other image); AUC of the separation."""
    n = len(img)
    matched = np.einsum("ij,ij->i", txt, img[owner])
    rng = np.random.default_rng(seed)
    other = (owner + rng.integers(1, n, size=len(owner))) % n  # never the own image
    unmatched = np.einsum("ij,ij->i", txt, img[other])
    first = np.array([np.flatnonzero(owner == i)[0] for i in range(n)])
    second = np.array([np.flatnonzero(owner == i)[min(1, (owner == i).sum() - 1)] for i in range(n)])
    tt = np.einsum("ij,ij->i", txt[first], txt[second])
    return {"matched_mean": float(matched.mean()), "matched_std": float(matched.std()),
            "unmatched_mean": float(unmatched.mean()), "unmatched_std": float(unmatched.std()),
            "margin": float(matched.mean() - unmatched.mean()), "auc": _auc(matched, unmatched),
            "text_text_same_image_mean": float(tt.mean()),
            "_matched": matched, "_unmatched": unmatched}


def logit_entropy(img: np.ndarray, txt_one: np.ndarray, scale: float) -> dict[str, Any]:
    """Entropy of softmax(scale · cos) for image → caption classification (one caption per image)."""
    logits = scale * (img @ txt_one.T).astype(np.float64)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    ent = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    n = len(txt_one)
    return {"entropy_mean": float(ent.mean()), "entropy_normalised": float(ent.mean() / np.log(n)),
            "classes": int(n), "logit_scale": float(scale),
            "top1_accuracy": float((p.argmax(1) == np.arange(len(img))).mean())}


def measure(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, scale: float, seed: int = 0) -> dict[str, Any]:
    """All diagnostics for one (image, caption) embedding set."""
    first = np.array([np.flatnonzero(owner == i)[0] for i in range(len(img))])
    return {"centroid": centroid_gap(img, txt), "separability": separability(img, txt[first], seed),
            "cosines": matched_unmatched(img, txt, owner, seed), "logit_entropy": logit_entropy(img, txt[first], scale)}


def _apply_fix(name: str, fit_img: np.ndarray, fit_txt: np.ndarray, fit_owner: np.ndarray,
               img: np.ndarray, txt: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Fit ``name`` on the fitting set, apply to (img, txt). Returns (img', txt', how)."""
    from ..gap import FitData, make_corrector

    try:
        corr = make_corrector(name)
        data = FitData(queries=fit_txt, gold=fit_img[fit_owner], gold_modality=np.array(["image"] * len(fit_txt)),
                       query_modality="text", corpus={"text": fit_txt, "image": fit_img}, pairs="gold")
        corr.fit(data)
        t2 = corr.prepare_query(txt, Modality.TEXT, Modality.IMAGE)
        i2 = corr.transform_items(img, Modality.IMAGE) if corr.transforms_items else img
        return l2_normalize(i2), l2_normalize(t2), f"mindgap.gap {name}"
    except (ImportError, ModuleNotFoundError) as exc:
        log.warning("gap corrector %r not available (%s); using the textbook fallback", name, exc)
    except (MindgapError, ValueError, np.linalg.LinAlgError) as exc:
        log.warning("gap corrector %r failed (%s); using the textbook fallback", name, exc)
    if name == "center":
        return (l2_normalize(img - fit_img.mean(0)), l2_normalize(txt - fit_txt.mean(0)),
                "fallback: subtract per-modality fit means, renormalise")
    if name == "linear":
        mt, mi = fit_txt.mean(0), fit_img.mean(0)
        w, *_ = np.linalg.lstsq(fit_txt - mt, fit_img[fit_owner] - mi, rcond=None)
        return img, l2_normalize((txt - mt) @ w + mi), "fallback: OLS text → image map on centred embeddings"
    raise InputError(f"unknown fix {name!r}; use center or linear", item="fixes")


def _fit_records(enc: Any, cfg: DiagnoseConfig, measured_ids: set[str]) -> tuple[list[Any], str]:
    from ..datasets import load_caption_set

    cfg_json = getattr(enc, "config", None)
    calib: list[str] = []
    src_split = None
    if isinstance(cfg_json, dict):
        calib = list(((cfg_json.get("training") or {}).get("data") or {}).get("calib_images") or [])
        src_split = ((cfg_json.get("training") or {}).get("data") or {}).get("split")
    split = cfg.fit_split or (src_split if calib else None)
    if calib and split:
        recs = [r for r in load_caption_set(cfg.data, split=split) if r.image_id in set(calib)]
        how = f"encoder calib images ({split})"
    elif split:
        recs = load_caption_set(cfg.data, split=split)
        how = f"split {split}"
    else:
        return [], "held-out 30% of the measured split"
    recs = [r for r in recs if r.image_id not in measured_ids]
    if cfg.fit_limit and len(recs) > cfg.fit_limit:
        rng = np.random.default_rng(cfg.seed + 1)
        recs = [recs[i] for i in sorted(rng.choice(len(recs), cfg.fit_limit, replace=False))]
    return recs, how


def run_diagnose(encoder: str | Any, cfg: DiagnoseConfig | None = None, out_dir: str | Path | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Embed a split, measure the gap before and after the fixes; optionally write md/JSON/PNGs.

    Args:
        encoder: encoder spec or instance.
        cfg: options.
        out_dir: report folder (``report.md``, ``diagnose.json``, PNGs) or ``None``.
        progress: show encoding progress bars.
    """
    from ..datasets import load_caption_set
    from ..encoders import load_encoder

    cfg = cfg or DiagnoseConfig()
    enc = load_encoder(encoder, show_progress=progress) if isinstance(encoder, str) else encoder
    recs = load_caption_set(cfg.data, split=cfg.split)
    if cfg.limit and cfg.limit < len(recs):
        rng = np.random.default_rng(cfg.seed)
        recs = [recs[i] for i in sorted(rng.choice(len(recs), cfg.limit, replace=False))]
    fit_recs, fit_how = _fit_records(enc, cfg, {r.image_id for r in recs})
    if cfg.captions_per_image:
        recs = [replace(r, captions=r.captions[: cfg.captions_per_image]) for r in recs]
        fit_recs = [replace(r, captions=r.captions[: cfg.captions_per_image]) for r in fit_recs]
    train_ids = set((((getattr(enc, "config", None) or {}).get("training") or {}).get("data") or {}).get("train_images") or [])
    if train_ids & {r.image_id for r in recs}:
        log.warning("%d measured images are in the encoder's training set", len(train_ids & {r.image_id for r in recs}))
    img, txt, owner = embed_caption_set(enc, recs, progress)
    if fit_recs:
        f_img, f_txt, f_owner = embed_caption_set(enc, fit_recs, progress)
        m_img, m_txt, m_owner = img, txt, owner
    else:  # seeded 30% hold-out of the measured images for fitting
        perm = np.random.default_rng(cfg.seed + 2).permutation(len(recs))
        fit_i = np.sort(perm[: int(0.3 * len(recs))])
        keep = np.sort(perm[int(0.3 * len(recs)):])
        f_img, f_txt, f_owner = _subset(img, txt, owner, fit_i)
        m_img, m_txt, m_owner = _subset(img, txt, owner, keep)
    temp = getattr(enc, "temperature", None)
    scale = float(1.0 / temp) if temp else 100.0
    variants: dict[str, dict[str, Any]] = {"raw": measure(m_img, m_txt, m_owner, scale, cfg.seed)}
    variants["raw"]["how"] = "encoder output"
    emb = {"raw": (m_img, m_txt)}
    for fix in cfg.fixes:
        i2, t2, how = _apply_fix(fix, f_img, f_txt, f_owner, m_img, m_txt)
        variants[fix] = measure(i2, t2, m_owner, scale, cfg.seed)
        variants[fix]["how"] = how
        emb[fix] = (i2, t2)
    res: dict[str, Any] = {
        "encoder": getattr(enc, "name", str(encoder)), "data": str(cfg.data), "split": cfg.split,
        "images": int(len(m_img)), "captions": int(len(m_txt)), "limit": cfg.limit, "seed": cfg.seed,
        "captions_per_image": cfg.captions_per_image,
        "fit": {"how": fit_how, "images": int(len(f_img)), "captions": int(len(f_txt))},
        "variants": variants,
    }
    if out_dir is not None:
        res["files"] = write_diagnose_outputs(res, emb, Path(out_dir))
    return public(res)


def embed_caption_set(enc: Any, recs: list[Any], progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images and all captions of ``recs`` → ``(img, txt, owner)``, through the on-disk
    embedding cache (:mod:`mindgap.caption.cache`), so a re-run does not re-encode."""
    from ..caption.cache import encode_images, encode_texts

    img = encode_images(enc, [r.path for r in recs], show_progress=progress)
    caps = [c for r in recs for c in r.captions]
    owner = np.array([i for i, r in enumerate(recs) for _ in r.captions])
    txt = encode_texts(enc, caps, show_progress=progress)
    return np.asarray(img, np.float32), np.asarray(txt, np.float32), owner


def _subset(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    remap = -np.ones(len(img), int)
    remap[idx] = np.arange(len(idx))
    sel = remap[owner] >= 0
    return img[idx], txt[sel], remap[owner[sel]]


def public(res: dict[str, Any]) -> dict[str, Any]:
    """The results without private (``_``-prefixed) arrays, rounded, for JSON."""
    if isinstance(res, dict):
        return {k: public(v) for k, v in res.items() if not str(k).startswith("_")}
    if isinstance(res, list):
        return [public(v) for v in res]
    if isinstance(res, float):
        return round(res, 4)
    return res


def write_diagnose_outputs(res: dict[str, Any], emb: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> dict[str, str]:
    """Write ``report.md``, ``diagnose.json`` and the PNGs of ``mindgap diagnose``."""
    from .plots import plot_bars, plot_panels, plot_pca
    from .reports import diagnose_markdown, write_json

    out.mkdir(parents=True, exist_ok=True)
    files = {"report": "report.md", "results": "diagnose.json", "cosines": "matched_unmatched.png",
             "gap_dims": "gap_dims.png", "pca": "embedding_pca.png"}
    v = res["variants"]
    plot_panels({f"{k} (AUC {x['cosines']['auc']:.3f})": {"matched": x["cosines"]["_matched"],
                                                          "unmatched": x["cosines"]["_unmatched"]}
                 for k, x in v.items()}, out / files["cosines"],
                title="cos(caption, image): matched vs. unmatched", xlabel="cosine")
    d = len(next(iter(v.values()))["centroid"]["_cumulative_share"])
    plot_bars({f"{k} (50 %: {x['centroid']['dims_50']} dims, 90 %: {x['centroid']['dims_90']})":
               x["centroid"]["_cumulative_share"] for k, x in v.items()}, out / files["gap_dims"],
              title="share of ‖μ_img − μ_txt‖² carried by the top-n dimensions",
              xlabel="dimensions, largest gap component first", ylabel="cumulative share of ‖gap‖²",
              reference=("a random isotropic direction (baseline)", random_cumulative_share(d)))
    plot_pca(emb, out / files["pca"], {k: x["separability"]["probe_accuracy"] for k, x in v.items()})
    pub = public(dict(res, files=files))
    write_json(out / files["results"], pub)
    (out / files["report"]).write_text(diagnose_markdown(pub), encoding="utf-8")
    return files


__all__ = ["DiagnoseConfig", "run_diagnose", "write_diagnose_outputs", "measure", "centroid_gap", "random_cumulative_share", "separability", "matched_unmatched",
           "logit_entropy", "public"]
