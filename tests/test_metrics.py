"""Retrieval metrics against hand-computed cases (multiple golds included)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mindgap.errors import InputError
from mindgap.eval.metrics import (first_rank, gold_ranks, ndcg_at_k, recall_at_k, recall_curve, reciprocal_rank,
                                  summarize)


def test_gold_ranks_positions_and_missing() -> None:
    assert gold_ranks(["a", "b", "c", "d"], ["c", "a", "z"]) == [3, 1, None]
    assert gold_ranks([], ["a"]) == [None]
    assert first_rank([None, 7, 3]) == 3
    assert first_rank([None]) is None


def test_recall_hit_rate_and_fraction_with_multiple_golds() -> None:
    ranks = [2, 7, None]  # three golds: one at 2, one at 7, one not retrieved
    assert recall_at_k(ranks, 1) == 0.0
    assert recall_at_k(ranks, 2) == 1.0
    assert recall_at_k(ranks, 1, mode="fraction") == 0.0
    assert recall_at_k(ranks, 5, mode="fraction") == pytest.approx(1 / 3)
    assert recall_at_k(ranks, 10, mode="fraction") == pytest.approx(2 / 3)
    assert recall_at_k([None, None], 100) == 0.0


def test_mrr_first_gold() -> None:
    assert reciprocal_rank([4, 2]) == 0.5
    assert reciprocal_rank([None]) == 0.0
    assert reciprocal_rank([1]) == 1.0


def test_ndcg_multiple_golds_hand_computed() -> None:
    # golds at ranks 1 and 3 of 2 golds: DCG = 1 + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3)
    assert ndcg_at_k([1, 3], 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # 3 golds, one at rank 2, one missing, one beyond the cut-off
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k([2, None, 12], 10) == pytest.approx((1 / math.log2(3)) / idcg)
    assert ndcg_at_k([1], 10) == 1.0
    assert ndcg_at_k([11], 10) == 0.0
    # more golds than k: the ideal list is capped at k
    assert ndcg_at_k([1, 2], 1) == 1.0


def test_summarize_averages_over_queries() -> None:
    per_query = [[1], [3], [None], [2, 60]]
    s = summarize(per_query, ks=(1, 3, 50, 100))
    assert s["n"] == 4
    assert s["R@1"] == 0.25
    assert s["R@3"] == 0.75
    assert s["R@50"] == 0.75
    assert s["R@100"] == 0.75
    assert s["MRR"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    expected_ndcg = np.mean([1.0, 1 / math.log2(4), 0.0, (1 / math.log2(3)) / (1 + 1 / math.log2(3))])
    assert s["nDCG@10"] == pytest.approx(expected_ndcg)
    empty = summarize([], ks=(1,))
    assert empty["n"] == 0 and empty["R@1"] is None


def test_recall_curve_matches_recall_at_k() -> None:
    per_query = [[1], [3], [None], [2, 60]]
    c = recall_curve(per_query, 100)
    assert len(c) == 100
    for k in (1, 2, 3, 59, 60, 100):
        assert c[k - 1] == pytest.approx(summarize(per_query, ks=(k,))[f"R@{k}"])
    assert np.all(np.diff(c) >= 0)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(InputError):
        recall_at_k([0], 5)
    with pytest.raises(InputError):
        recall_at_k([1], 0)
    with pytest.raises(InputError):
        ndcg_at_k([], 10)
    with pytest.raises(InputError):
        recall_at_k([1], 5, mode="bogus")


def _brute_recall(img: np.ndarray, txt: np.ndarray, q: np.ndarray, gold_mod: str, row: int, b: float,
                  k: int) -> bool:
    """Is the gold in the merged top k when ``b`` is added to every image cosine? (ties: strictly higher wins)"""
    s_img, s_txt = img @ q + b, txt @ q
    g = s_img[row] if gold_mod == "image" else s_txt[row]
    return 1 + int((s_img > g).sum() + (s_txt > g).sum()) <= k


def test_shift_frontier_matches_brute_force_merging() -> None:
    from mindgap.encoders.base import l2_normalize
    from mindgap.eval.tradeoff import shift_frontier
    from mindgap.types import Modality

    rng = np.random.default_rng(0)
    d, n_img, n_txt = 16, 40, 60
    img = l2_normalize(rng.normal(size=(n_img, d)) + 1.5 * np.eye(d)[0]).astype(np.float32)  # a gap along dim 0
    txt = l2_normalize(rng.normal(size=(n_txt, d)) - 1.5 * np.eye(d)[0]).astype(np.float32)
    qs, golds, gm = [], [], []
    for i in range(50):
        if i % 2:
            j = int(rng.integers(n_img))
            qs.append(l2_normalize(img[j] * 0.3 + txt.mean(0) + 0.3 * rng.normal(size=d)))
            golds.append([f"i{j}"]), gm.append("image")
        else:
            j = int(rng.integers(n_txt))
            qs.append(l2_normalize(txt[j] * 0.5 + 0.3 * rng.normal(size=d)))
            golds.append([f"t{j}"]), gm.append("text")
    q = np.asarray(qs, np.float32)
    pos = {f"i{j}": (Modality.IMAGE, j) for j in range(n_img)} | {f"t{j}": (Modality.TEXT, j) for j in range(n_txt)}
    k = 5
    fr = shift_frontier({Modality.IMAGE: img, Modality.TEXT: txt}, pos, q, golds, gm, k=k, chunk=7)
    assert fr.n_image == 25 and fr.n_text == 25
    for b in (-0.8, -0.2, 0.0, 0.1, 0.37, 0.9, 2.5):
        hits = [_brute_recall(img, txt, q[i], gm[i], pos[golds[i][0]][1], b, k) for i in range(len(q))]
        img_r = np.mean([h for h, m in zip(hits, gm) if m == "image"])
        txt_r = np.mean([h for h, m in zip(hits, gm) if m == "text"])
        ri, rt, ov = fr.recall(b)
        assert (ri, rt) == pytest.approx((img_r, txt_r)), b
        assert ov == pytest.approx(np.mean(hits))
    # the curve is monotone: more image shift never helps TextQ, never hurts ImageQ
    c = fr.curve()
    assert np.all(np.diff(c[:, 1]) >= 0) and np.all(np.diff(c[:, 2]) <= 0)
    # the oracle best shift is at least as good as b = 0 overall; text_at inverts the curve
    assert fr.best_overall()["overall"] >= fr.recall(0.0)[2]
    ri0, rt0, _ = fr.recall(0.0)
    assert fr.text_at(ri0) >= rt0
    assert fr.text_at(0.0) == fr.ceilings()["TextQ"]
