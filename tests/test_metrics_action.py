"""Action recognition / anticipation metrics (EK100 style)."""
import numpy as np
import pytest

from vidmamba.metrics.action import (
    action_topk_hits,
    action_topk_pairs,
    ek100_metrics,
    mean_class_recall,
    mean_topk_recall,
    softmax,
    topk_accuracy,
    topk_indices,
)


def test_topk_accuracy_hand_computed():
    scores = np.array([[4, 3, 2, 1], [1, 2, 3, 4], [0, 0, 0, 0]], dtype=float)
    labels = np.array([1, 3, 0])
    np.testing.assert_array_equal(topk_indices(scores, 2), [[0, 1], [3, 2], [0, 1]])  # ties -> lower index
    acc = topk_accuracy(scores, labels, ks=(1, 2))
    assert acc[1] == pytest.approx(2 / 3) and acc[2] == 1.0
    with pytest.raises(ValueError, match="labels must lie"):
        topk_accuracy(scores, np.array([1, 3, 4]))
    with pytest.raises(ValueError, match="NaN"):
        topk_accuracy(np.full((1, 2), np.nan), np.array([0]))


def test_mean_topk_recall_is_class_averaged():
    scores = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=float)
    labels = np.array([0, 0, 0, 1])  # class 0: 2/3 recalled at top-1, class 1: 0
    assert mean_topk_recall(scores, labels, k=1) == pytest.approx(1 / 3)
    assert topk_accuracy(scores, labels, ks=(1,))[1] == 0.5
    assert mean_topk_recall(scores, labels, k=2) == 1.0
    # classes absent from the labels do not count
    assert mean_class_recall([1, 0], [[3, 1], [3, 2]]) == 0.5


def test_action_outer_product_pairs():
    pv, pn = np.array([[0.75, 0.25]]), np.array([[0.5, 0.25, 0.25]])
    # products: (0,0) .375, (0,1) .1875, (0,2) .1875, (1,0) .125, (1,1) .0625, (1,2) .0625
    np.testing.assert_array_equal(action_topk_pairs(pv, pn, 4, logits=False)[0], [[0, 0], [0, 1], [0, 2], [1, 0]])
    np.testing.assert_array_equal(action_topk_pairs(np.log(pv), np.log(pn), 2)[0], [[0, 0], [0, 1]])
    # label (1, 1): not in the top-3 products, but verb and noun are each in their top-3
    v, n = np.array([1]), np.array([1])
    assert not action_topk_hits(pv, pn, v, n, 3, mode="outer", logits=False)[0]
    assert action_topk_hits(pv, pn, v, n, 3, mode="both_in_topk", logits=False)[0]
    with pytest.raises(ValueError, match="unknown action mode"):
        action_topk_hits(pv, pn, v, n, 3, mode="x")
    with pytest.raises(ValueError, match="non-negative"):
        action_topk_pairs(-pv, pn, 1, logits=False)


def test_action_pairs_match_full_outer_product():
    rng = np.random.default_rng(0)
    v, n = rng.normal(size=(50, 7)), rng.normal(size=(50, 11))
    full = (softmax(v)[:, :, None] * softmax(n)[:, None, :]).reshape(50, -1)
    order = np.argsort(-full, axis=1, kind="stable")[:, :5]
    pairs = action_topk_pairs(v, n, 5)
    np.testing.assert_array_equal(pairs[..., 0] * 11 + pairs[..., 1], order)


def test_ek100_metrics():
    verb = np.array([[3, 1, 0], [0, 3, 1], [1, 0, 3]], dtype=float)
    noun = np.array([[2, 1], [1, 2], [2, 1]], dtype=float)
    vl, nl = np.array([0, 1, 1]), np.array([0, 0, 0])
    m = ek100_metrics(verb, noun, vl, nl, ks=(1, 2), recall_k=2)
    # verb: sample 2 (label 1) ranks [2, 0]: a miss even at top-2
    assert m["verb"] == {"top1": 66.67, "top2": 66.67, "mean_top2_recall": 75.0}
    assert m["noun"] == {"top1": 66.67, "top2": 100.0, "mean_top2_recall": 100.0}
    # action top-1: sample 0 only (sample 1 misses the noun, sample 2 the verb)
    assert m["action"]["top1"] == 33.33
    # top-2 pairs: s0 (0,0),(0,1) hit; s1 (1,1),(1,0) hit; s2 (2,0),(2,1) miss -> classes (0,0): 1, (1,0): 1/2
    assert m["action"]["top2"] == 66.67 and m["action"]["mean_top2_recall"] == 75.0
    top1 = action_topk_hits(verb, noun, vl, nl, 1)
    np.testing.assert_array_equal(top1, action_topk_hits(verb, noun, vl, nl, 1, mode="both_in_topk"))
