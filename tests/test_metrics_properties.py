"""Property-based checks of the metrics (hypothesis, kept small and fast)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vidmamba.metrics.action import mean_topk_recall, topk_accuracy
from vidmamba.metrics.highlight import saliency_ap, trapezoid_ap
from vidmamba.metrics.moment_retrieval import average_precision_detection, recall_at_k_iou, temporal_iou
from vidmamba.metrics.qvhighlights import eval_qvhighlights

FAST = settings(max_examples=50, deadline=None)


@st.composite
def windows(draw, max_n=5, duration=150):
    """Non-empty list of [st, ed] on a 2-s grid inside [0, duration]."""
    n = draw(st.integers(1, max_n))
    out = []
    for _ in range(n):
        a = draw(st.integers(0, duration // 2 - 1))
        b = draw(st.integers(a + 1, duration // 2))
        out.append([2 * a, 2 * b])
    return out


@st.composite
def qvh_dataset(draw, max_queries=6):
    """QVHighlights-like GT rows (3 annotators that agree) and perfect predictions."""
    n_q = draw(st.integers(1, max_queries))
    gt, pred = [], []
    for qid in range(n_q):
        wins = draw(windows(max_n=4))
        n_clips = 75
        ids = sorted(set(draw(st.lists(st.integers(0, n_clips - 1), min_size=1, max_size=10))))
        sal = [draw(st.integers(0, 4)) for _ in ids]
        sal[0] = 4  # every threshold has a positive clip
        gt.append({"qid": qid, "duration": 150, "relevant_windows": wins, "relevant_clip_ids": ids,
                   "saliency_scores": [[s] * 3 for s in sal]})
        full = np.zeros(n_clips)
        full[ids] = sal
        pred.append({"qid": qid, "pred_relevant_windows": [w + [1.0 - 0.01 * i] for i, w in enumerate(wins)],
                     "pred_saliency_scores": (full + 0.001 * np.arange(n_clips)[::-1]).tolist()})
    return pred, gt


@FAST
@given(windows(max_n=6), windows(max_n=6))
def test_iou_symmetric_and_bounded(a, b):
    iou = temporal_iou(a, b)
    assert np.all((iou >= 0) & (iou <= 1))
    np.testing.assert_allclose(iou, temporal_iou(b, a).T, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(np.diag(temporal_iou(a, a)), 1.0)


@FAST
@given(qvh_dataset())
def test_perfect_predictions_score_100(data):
    pred, gt = data
    m = eval_qvhighlights(pred, gt)
    assert set(m["full"]["MR-mAP"].values()) == {100.0}
    assert set(m["full"]["MR-R1"].values()) == {100.0}
    for name in ("HL-min-Fair", "HL-min-Good", "HL-min-VeryGood"):
        assert m[name] == {"HL-mAP": 100.0, "HL-Hit1": 100.0}


@FAST
@given(qvh_dataset(), st.randoms(use_true_random=False))
def test_query_order_does_not_matter(data, rnd):
    pred, gt = data
    perm = list(range(len(pred)))
    rnd.shuffle(perm)
    # degrade predictions so that metrics are not trivially 100
    for p in pred:
        p["pred_relevant_windows"] = [[max(0, s - 4), e, sc] for s, e, sc in p["pred_relevant_windows"]] + [
            [0, 10, 0.5]]
        p["pred_saliency_scores"] = [rnd.random() for _ in p["pred_saliency_scores"]]
    shuffled = [pred[i] for i in perm]
    gt_shuffled = [gt[i] for i in reversed(perm)]
    a, b = eval_qvhighlights(pred, gt), eval_qvhighlights(shuffled, gt_shuffled)
    assert a.keys() == b.keys()
    for key in a:
        for sub in a[key]:
            assert a[key][sub] == pytest.approx(b[key][sub], abs=0.0101)  # last-digit rounding of a reordered sum
    pw = [np.array(p["pred_relevant_windows"]) for p in pred]
    gw = [np.array(g["relevant_windows"], dtype=float) for g in gt]
    ap = average_precision_detection(pw, gw)
    np.testing.assert_array_equal(average_precision_detection([pw[i] for i in perm], [gw[i] for i in perm]), ap[perm])


@FAST
@given(qvh_dataset(), st.lists(windows(max_n=1), min_size=1, max_size=5))
def test_windows_after_the_tenth_are_ignored(data, junk):
    pred, gt = data
    for p in pred:
        wins = p["pred_relevant_windows"]
        p["pred_relevant_windows"] = (wins + [[140, 150, -1.0]] * 10)[:10]
    base = eval_qvhighlights(pred, gt)
    for p in pred:
        p["pred_relevant_windows"] = p["pred_relevant_windows"] + [w[0] + [5.0] for w in junk]
    assert eval_qvhighlights(pred, gt) == base


@FAST
@given(st.lists(st.tuples(windows(max_n=2), windows(max_n=12)), min_size=1, max_size=6),
       st.randoms(use_true_random=False))
def test_recall_monotone_in_k_and_threshold(queries, rnd):
    gts = [np.array(g, dtype=float) for g, _ in queries]
    preds = [np.array([w + [rnd.random()] for w in p]) for _, p in queries]
    rec = recall_at_k_iou(preds, gts, ks=(1, 2, 5, 10, 50), iou_thresholds=(0.1, 0.3, 0.5, 0.7))
    assert np.all(np.diff(rec, axis=0) >= 0) and np.all(np.diff(rec, axis=1) <= 0)
    assert np.all((rec >= 0) & (rec <= 1))
    # perfect: the GT windows themselves, ranked first
    perfect = [np.vstack([np.c_[g, np.full(len(g), 2.0)], p]) for g, p in zip(gts, preds)]
    np.testing.assert_array_equal(recall_at_k_iou(perfect, gts, ks=(1,), iou_thresholds=(0.99,)), 1.0)


@FAST
@given(st.lists(st.integers(0, 1), min_size=1, max_size=30), st.data())
def test_saliency_ap_bounds_and_perfect_ranking(labels, data):
    y = np.array(labels, dtype=float)
    scores = np.array(data.draw(st.lists(st.integers(0, 3), min_size=len(y), max_size=len(y))), dtype=float)
    ap = saliency_ap(y, scores)
    assert 0 <= ap <= 1
    if y.any():
        assert saliency_ap(y, y + 0.5 * scores / 4) == 1.0  # positives strictly above negatives
        ranked = y[np.argsort(-(y + 0.5 * scores / 4), kind="stable")]
        assert trapezoid_ap(ranked) == pytest.approx(1.0)
    assert 0 <= trapezoid_ap(y) <= 1 + 1e-12


@FAST
@given(st.integers(1, 40), st.integers(2, 12), st.randoms(use_true_random=False))
def test_topk_accuracy_and_recall_monotone(n, c, rnd):
    rng = np.random.default_rng(rnd.randrange(2 ** 32))
    scores, labels = rng.normal(size=(n, c)), rng.integers(0, c, n)
    acc = topk_accuracy(scores, labels, ks=range(1, c + 1))
    values = [acc[k] for k in range(1, c + 1)]
    assert values == sorted(values) and values[-1] == 1.0
    rec = [mean_topk_recall(scores, labels, k) for k in range(1, c + 1)]
    assert rec == sorted(rec) and rec[-1] == 1.0
