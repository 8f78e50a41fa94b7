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
