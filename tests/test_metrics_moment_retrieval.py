"""Moment retrieval metrics: IoU, detection AP, R1, mIoU, NLQ R@k, and the moment_retrieval / nlq file tasks."""
import json

import numpy as np
import pytest

from vidmamba.metrics.evaluate import evaluate_prediction_files
from vidmamba.metrics.moment_retrieval import (
    average_precision_detection,
    eval_moment_retrieval,
    eval_nlq,
    mr_map,
    mr_recall_at_1,
    recall_at_k_iou,
    temporal_iou,
    temporal_iou_paired,
    top1_ious,
)
from vidmamba.metrics.validation import GroundTruthError, SubmissionError


def test_temporal_iou_values():
    iou = temporal_iou([[0, 10], [5, 15], [20, 30]], [[0, 10], [10, 20]])
    np.testing.assert_allclose(iou, [[1, 0], [5 / 15, 5 / 15], [0, 0]])
    assert temporal_iou([[3, 3]], [[3, 3]])[0, 0] == 0.0  # empty union -> 0
    np.testing.assert_allclose(temporal_iou_paired([[0, 10], [0, 4]], [[5, 15], [6, 8]]), [5 / 15, 0])


def test_ap_hand_computed():
    gts = [np.array([[0.0, 10.0], [20.0, 30.0]])]
    # by score: [40,50] fp, [0,10] tp, [20,30] tp -> precision 0, 1/2, 2/3; envelope 2/3 over both recall steps
    preds = [np.array([[0, 10, 0.5], [40, 50, 0.9], [20, 30, 0.3]])]
    np.testing.assert_allclose(average_precision_detection(preds, gts), np.full((1, 10), 2 / 3))
    # a duplicate detection of an already matched GT is a false positive; recall 1 already reached -> AP 1
    ap = average_precision_detection([np.array([[0, 10, 0.9], [0, 10, 0.8]])], [np.array([[0.0, 10.0]])])
    np.testing.assert_array_equal(ap, np.ones((1, 10)))
    # half the GT found at rank 1 -> AP 1/2
    ap = average_precision_detection([np.array([[0, 10, 0.9]])], gts)
    np.testing.assert_array_equal(ap, np.full((1, 10), 0.5))


def test_ap_threshold_dependence_and_rounding():
    preds, gts = [np.array([[0, 7, 1.0]])], [np.array([[0.0, 10.0]])]  # IoU 0.7
    m = mr_map(preds, gts)
    assert [m[k] for k in ("0.5", "0.65", "0.7", "0.75", "0.95")] == [100.0, 100.0, 100.0, 0.0, 0.0]
    assert m["average"] == 50.0
    assert list(m) == ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95", "average"]


def test_ap_uses_first_ten_windows_by_position():
    gt = [np.array([[0.0, 10.0]])]
    junk = [[50, 60, 0.1]] * 10
    assert average_precision_detection([np.array(junk + [[0, 10, 0.9]])], gt)[0, 0] == 0.0
    assert average_precision_detection([np.array(junk + [[0, 10, 0.9]])], gt, max_pred_windows=None)[0, 0] == 1.0


def test_ap_score_ties_keep_list_order():
    gt = [np.array([[0.0, 10.0]])]
    assert average_precision_detection([np.array([[0, 10, 0.5], [50, 60, 0.5]])], gt)[0, 0] == 1.0
    assert average_precision_detection([np.array([[50, 60, 0.5], [0, 10, 0.5]])], gt)[0, 0] == 0.5


def test_ap_greedy_matching_locks_highest_iou_gt():
    # A=[0,15] has the same IoU (2/3) with both GTs and locks the later one; B=[5,15] then finds its GT taken and
    # only 1/3 IoU with the other -> fp at thresholds <= 2/3. Above 2/3 A is a fp and B a tp.
    gts = [np.array([[0.0, 10.0], [5.0, 15.0]])]
    preds = [np.array([[0, 15, 0.9], [5, 15, 0.8]])]
    ap = average_precision_detection(preds, gts)[0]
    np.testing.assert_array_equal(ap[:4], 0.5)  # 0.5 .. 0.65
    np.testing.assert_array_equal(ap[4:], 0.25)  # tp at rank 2 only: precision 1/2 at recall 1/2


def test_ap_empty_cases():
    assert average_precision_detection([], []).shape == (0, 10)
    np.testing.assert_array_equal(average_precision_detection([np.zeros((0, 3))], [np.array([[0.0, 1.0]])]), 0)
    with pytest.raises(ValueError, match="prediction lists"):
        average_precision_detection([np.zeros((1, 3))], [])


def test_ap_many_gt_windows_matches_pairwise_sum():
    # 9 GT windows, all found: >= 8 summed terms exercises the np.sum (pairwise) path; AP must still be exact
    gt = np.array([[10.0 * i, 10.0 * i + 5] for i in range(9)])
    pred = np.array([[10.0 * i, 10.0 * i + 5, 1 - 0.01 * i] for i in range(9)] + [[200, 210, 0.95]])
    ap = average_precision_detection([pred], [gt])[0, 0]
    order = np.argsort(-pred[:, 2], kind="stable")
    tp = (order < 9).astype(float)
    precision = np.cumsum(tp)[tp == 1] / (np.nonzero(tp)[0] + 1)
    env = np.maximum.accumulate(precision[::-1])[::-1]
    assert ap == pytest.approx(np.mean(env), abs=1e-15)
    assert ap < 1


def test_r1_uses_first_listed_window_and_best_gt():
    preds = [np.array([[20, 30, 0.1], [0, 10, 0.9]]), np.array([[0, 10, 0.2]])]
    gts = [np.array([[0.0, 10.0]]), np.array([[30.0, 40.0], [5.0, 15.0]])]
    np.testing.assert_allclose(top1_ious(preds, gts), [0, 5 / 15])
    r1 = mr_recall_at_1(preds, gts, iou_thresholds=(0.3, 0.5))
    assert r1 == {"0.3": 50.0, "0.5": 0.0}


def test_eval_moment_retrieval_structure_and_values():
    # q1 perfect; q2: top-1 IoU 0.4, second window IoU 0.7 -> AP 1/2 at thresholds 0.5..0.7, else 0
    preds = [np.array([[0, 10, 0.9]]), np.array([[0, 4, 0.9], [0, 7, 0.1]])]
    gts = [np.array([[0.0, 10.0]]), np.array([[0.0, 10.0]])]
    m = eval_moment_retrieval(preds, gts)
    assert m["brief"] == {"MR-full-R1@0.3": 100.0, "MR-full-R1@0.5": 50.0, "MR-full-R1@0.7": 50.0,
                          "MR-full-mIoU": 70.0, "MR-full-mAP": 62.5, "MR-full-mAP@0.5": 75.0,
                          "MR-full-mAP@0.75": 50.0}
    assert set(m["full"]) == {"MR-mAP", "MR-R1", "MR-mIoU"}
    assert list(m["full"]["MR-R1"])[:2] == ["0.3", "0.5"]


def test_nlq_recall_hand_computed():
    preds = [np.array([[50, 60, 0.9], [0, 8, 0.8], [0, 10, 0.1]]), np.array([[0, 4, 0.9]])]
    gts = [np.array([[0.0, 10.0]]), np.array([[0.0, 10.0]])]
    rec = recall_at_k_iou(preds, gts, ks=(1, 2, 5), iou_thresholds=(0.1, 0.3, 0.5, 0.9))
    np.testing.assert_allclose(rec, [[0.5, 0.5, 0, 0], [1, 1, 0.5, 0], [1, 1, 0.5, 0.5]])
    # unsorted input is ranked by score, not list order
    shuffled = [p[::-1] for p in preds]
    ks = (1, 2, 5)
    np.testing.assert_array_equal(recall_at_k_iou(shuffled, gts, ks=ks), recall_at_k_iou(preds, gts, ks=ks))
    out = eval_nlq(preds, gts)
    assert out["brief"]["R1@0.3"] == 50.0 and out["R@5"] == {"0.1": 100.0, "0.3": 100.0, "0.5": 50.0}
    assert out["brief"]["avg"] == float(f"{100 * np.mean([0.5, 0, 1, 0.5]):.2f}")
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k_iou(preds, gts, ks=(0,))


def test_nlq_best_gt_and_empty_predictions():
    preds = [np.array([[30, 40, 1.0]]), np.zeros((0, 3))]
    gts = [np.array([[0.0, 10.0], [30.0, 40.0]]), np.array([[0.0, 1.0]])]
    np.testing.assert_array_equal(recall_at_k_iou(preds, gts, ks=(1,), iou_thresholds=(0.5,)), [[0.5]])


# ---------------------------------------------------------------- file tasks


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_moment_retrieval_and_nlq_files(tmp_path):
    gt = _write(tmp_path / "gt.jsonl", [{"qid": "a_0", "relevant_windows": [[0, 10]]},
                                        {"qid": "a_1", "relevant_windows": [[2.5, 7.5]]}])
    sub = _write(tmp_path / "p.jsonl", [{"qid": "a_1", "pred_relevant_windows": [[2.5, 7.5, 0.3]]},
                                        {"qid": "a_0", "pred_relevant_windows": [[0, 5, 0.9], [0, 10, 0.8]]}])
    m = evaluate_prediction_files("moment_retrieval", sub, gt)
    assert m["brief"]["MR-full-R1@0.3"] == 100.0 and m["brief"]["MR-full-R1@0.5"] == 100.0
    assert m["brief"]["MR-full-R1@0.7"] == 50.0 and m["brief"]["MR-full-mIoU"] == 75.0
    # a_0: [0,5] (IoU 0.5) outranks [0,10]: AP 1 at 0.5, 1/2 above; a_1: AP 1
    assert m["brief"]["MR-full-mAP"] == 77.5
    n = evaluate_prediction_files("nlq", sub, gt)
    assert n["brief"]["R1@0.5"] == 100.0 and n["R@1"]["0.5"] == 100.0
    _write(sub, [{"qid": "a_1", "pred_relevant_windows": [[2.5, 7.5, 0.3]]},
                 {"qid": "a_0", "pred_relevant_windows": []}])
    with pytest.raises(SubmissionError, match="qid 'a_0'.*empty window list"):
        evaluate_prediction_files("moment_retrieval", sub, gt)
    assert evaluate_prediction_files("nlq", sub, gt)["R@50"]["0.1"] == 50.0
    _write(gt, [{"qid": "a_0", "relevant_windows": []}, {"qid": "a_1", "relevant_windows": [[2.5, 7.5]]}])
    with pytest.raises(GroundTruthError, match="qid 'a_0'.*relevant_windows.*empty"):
        evaluate_prediction_files("nlq", sub, gt)


def test_charades_perfect_predictions_score_100(shared_data, tmp_path):
    gt = shared_data / "annotations" / "charades_test_release.jsonl"
    rows = [json.loads(line) for line in gt.read_text().splitlines()[:300]]
    gt_small = _write(tmp_path / "gt.jsonl", rows)
    sub = _write(tmp_path / "p.jsonl", [{"qid": r["qid"], "pred_relevant_windows": [w + [1.0] for w in
                                                                                     r["relevant_windows"]]}
                                       for r in rows])
    m = evaluate_prediction_files("moment_retrieval", sub, gt_small)
    assert set(m["brief"].values()) == {100.0}
    assert set(evaluate_prediction_files("nlq", sub, gt_small)["brief"].values()) == {100.0}
