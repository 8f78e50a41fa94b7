"""Measure a dual encoder on an image–caption split: cross-modal recall and its modality gap.

Used by ``mindgap train`` for the model card and by the foundation tests.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datasets import CaptionedImage, load_caption_set
from .base import Encoder


def recall_at_k(sim: np.ndarray, gold: list[set[int]] | np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k for each query row of ``sim`` given its gold column(s)."""
    order = np.argsort(-sim, axis=1, kind="stable")[:, : max(ks)]
    res = {}
    for k in ks:
        hits = [bool(set(order[i, :k].tolist()) & (g if isinstance(g, set) else {int(g)})) for i, g in enumerate(gold)]
        res[f"R@{k}"] = round(float(np.mean(hits)), 4)
    return res


def _pairs_stats(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, n_img: int) -> dict[str, float]:
    matched = np.einsum("ij,ij->i", txt, img[owner])
    # two captions of the same image (first vs. second caption of each image)
    firsts = np.array([np.flatnonzero(owner == i)[:2] for i in range(n_img)])
    tt = np.einsum("ij,ij->i", txt[firsts[:, 0]], txt[firsts[:, 1]])
    rng = np.random.default_rng(0)
    shuf = rng.permutation(n_img)
    shuf = np.where(shuf == np.arange(n_img), (shuf + 1) % n_img, shuf)
    unmatched = np.einsum("ij,ij->i", txt[firsts[:, 0]], img[shuf])
    return {
        "matched_text_image_cos": round(float(matched.mean()), 4),
        "unmatched_text_image_cos": round(float(unmatched.mean()), 4),
        "same_image_text_text_cos": round(float(tt.mean()), 4),
    }


def _mixed_index(img: np.ndarray, txt: np.ndarray, owner: np.ndarray, n_img: int,
                 mu_sigma: dict[str, tuple[float, float]] | None) -> dict[str, float]:
    """Images + caption #0 of each image as passages; queries = captions #1.. with gold = image."""
    first = np.array([np.flatnonzero(owner == i)[0] for i in range(n_img)])
    qmask = np.ones(len(owner), bool)
    qmask[first] = False
    q = txt[qmask]
    gold = owner[qmask]
    s_img = q @ img.T
    s_txt = q @ txt[first].T
    out = {}
    for name, (a, b) in {"naive": (s_img, s_txt),
                         "zscore": None if mu_sigma is None else (
                             (s_img - mu_sigma["image"][0]) / mu_sigma["image"][1],
                             (s_txt - mu_sigma["text"][0]) / mu_sigma["text"][1])}.items() if mu_sigma else \
            {"naive": (s_img, s_txt)}.items():
        allsc = np.concatenate([a, b], axis=1)
        top = np.argsort(-allsc, axis=1, kind="stable")[:, :10]
        out[f"{name}_image_share_top10"] = round(float((top < n_img).mean()), 4)
        out[f"{name}_image_R@10"] = round(float(np.mean([gold[i] in top[i] for i in range(len(gold))])), 4)
    top_img = np.argsort(-s_img, axis=1, kind="stable")[:, :10]
    out["image_only_R@10"] = round(float(np.mean([gold[i] in top_img[i] for i in range(len(gold))])), 4)
    return out


def embed_caption_set(enc: Encoder, recs: list[CaptionedImage]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Embed images and all captions; returns ``(img, txt, owner)``."""
    img = enc.encode_image([r.path for r in recs])
    caps = [c for r in recs for c in r.captions]
    owner = np.array([i for i, r in enumerate(recs) for _ in r.captions])
    txt = enc.encode_text(caps)
    return img, txt, owner


def evaluate_encoder(enc: Encoder, data: str, split: str = "test", calib: list[CaptionedImage] | None = None) -> dict[str, Any]:
    """Text→image and image→text Recall@1/5/10 plus modality-gap numbers on ``split``.

    When ``calib`` records are given, per-modality z-score statistics are fitted on them
    (queries = captions #1.., gold text = caption #0, gold image = the image) and the
    mixed-index experiment is reported with and without correction.
    """
    recs = load_caption_set(data, split=split)
    img, txt, owner = embed_caption_set(enc, recs)
    n = len(recs)
    sim = txt @ img.T
    t2i = recall_at_k(sim, owner)
    img_gold = [set(np.flatnonzero(owner == i).tolist()) for i in range(n)]
    i2t = recall_at_k(sim.T, img_gold)
    res: dict[str, Any] = {"split": split, "images": n, "captions": int(len(owner)),
                           "text_to_image": t2i, "image_to_text": i2t}
    res.update(_pairs_stats(img, txt, owner, n))
    mu_sigma = None
    if calib:
        cimg, ctxt, cown = embed_caption_set(enc, calib)
        cfirst = np.array([np.flatnonzero(cown == i)[0] for i in range(len(calib))])
        qm = np.ones(len(cown), bool)
        qm[cfirst] = False
        ci = np.einsum("ij,ij->i", ctxt[qm], cimg[cown[qm]])
        ct = np.einsum("ij,ij->i", ctxt[qm], ctxt[cfirst][cown[qm]])
        mu_sigma = {"image": (float(ci.mean()), float(ci.std())), "text": (float(ct.mean()), float(ct.std()))}
        res["calib_stats"] = {k: {"mu": round(v[0], 4), "sigma": round(v[1], 4)} for k, v in mu_sigma.items()}
        res["calib_matched_text_image_cos"] = round(float(ci.mean()), 4)
    res["mixed_index"] = _mixed_index(img, txt, owner, n, mu_sigma)
    return res
