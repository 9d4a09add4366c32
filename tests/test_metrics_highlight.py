"""Highlight metrics: sklearn-equivalent saliency AP, Hit1, TVSum top-5 mAP, YouTube mAP, the tvsum file task."""
import json

import numpy as np
import pytest

from vidmamba.metrics.evaluate import evaluate_prediction_files
from vidmamba.metrics.highlight import (
    fit_length,
    hl_hit1,
    mk_gt_scores,
    saliency_ap,
    trapezoid_ap,
    tvsum_map,
    youtube_highlights_map,
)
from vidmamba.metrics.validation import GroundTruthError, SubmissionError


def test_saliency_ap_hand_computed():
    # ranks 1,0,1,0: precision 1 at recall 1/2, 2/3 at recall 1
    assert saliency_ap([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)
    # interpolation: raw precisions 1/2, 2/3, 3/4 at recalls 1/3, 2/3, 1; the envelope lifts all to 3/4
    assert saliency_ap([0, 1, 1, 1, 0], [5, 4, 3, 2, 1]) == 0.75
    # tied scores share one threshold
    assert saliency_ap([1, 0], [0.5, 0.5]) == 0.5
    assert saliency_ap([1, 0], [0.6, 0.5]) == 1.0
    assert saliency_ap([0, 0, 0], [3, 2, 1]) == 0.0
    assert saliency_ap([1, 1], [0, 1]) == 1.0


def test_saliency_ap_matches_sklearn_definition():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        y = (rng.random(n) < rng.random()).astype(float)
        s = rng.integers(0, 5, n).astype(float) if rng.random() < 0.5 else rng.normal(size=n)
        if len(set(y)) == 1:
            ref = float(y[0])
        else:
            precision, recall, _ = metrics.precision_recall_curve(y, s)
            recall = recall.astype(np.float32)
            precision = np.maximum.accumulate(precision)
            ref = np.mean(precision[np.nonzero(np.diff(recall))])
        assert saliency_ap(y, s) == ref


def test_mk_gt_scores_and_fit_length():
    gt = mk_gt_scores(7, [0, 2], [[1, 2, 3], [4, 4, 4]])  # int(7 / 2) = 3 clips
    np.testing.assert_array_equal(gt, [[1, 2, 3], [0, 0, 0], [4, 4, 4]])
    with pytest.raises(ValueError, match="relevant_clip_ids"):
        mk_gt_scores(4, [2], [[1, 1, 1]])
    np.testing.assert_array_equal(fit_length([1, 2], 4), [1, 2, 0, 0])
    np.testing.assert_array_equal(fit_length([1, 2, 3], 2), [1, 2])


def test_hit1_ties_and_out_of_range():
    gt = [np.array([[0, 1, 0], [1, 0, 0]]), np.array([[0, 0, 0], [1, 1, 1]])]
    assert hl_hit1([[5, 5], [1, 2, 9]], gt) == 0.5  # tie -> clip 0 (one annotator: hit); argmax 2 beyond 2 clips


def test_trapezoid_ap_hand_computed():
    assert trapezoid_ap([1, 0, 1, 0, 0]) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert trapezoid_ap([0, 1, 0]) == pytest.approx(0.25)
    assert trapezoid_ap([0, 0]) == 0.0
    assert trapezoid_ap([1, 1, 0]) == 1.0


def test_tvsum_top5_hand_computed():
    pred = np.array([6, 5, 4, 3, 2, 1.0])  # ranks clips 0..5; top-5 = clips 0..4
    labels = np.array([[3, 1], [1, 3], [3, 1], [1, 1], [1, 1], [5, 1]], dtype=float)
    # annotator 0: median 2 -> [1,0,1,0,0,1], top-5 [1,0,1,0,0]; annotator 1: median 1 -> top-5 [0,1,0,0,0]
    mean_ap, per_video = tvsum_map([pred], [labels])
    expected = (0.5 + 0.5 * (0.5 + 2 / 3) / 2 + 0.25) / 2
    assert mean_ap == pytest.approx(expected) and per_video == pytest.approx([expected])
    # ties in the prediction keep the earlier clip first
    assert tvsum_map([np.zeros(6)], [labels])[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="do not match"):
        tvsum_map([pred[:5]], [labels])


def test_youtube_highlights_map():
    assert youtube_highlights_map([[0.9, 0.8, 0.1], [0, 1]], [[1, -1, 1], [1, -1]]) == pytest.approx(
        (0.5 + 0.5 * (0.5 + 2 / 3) / 2 + 0.25) / 2)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tvsum_file_task(shared_data, tmp_path):
    gt = shared_data / "annotations" / "tvsum_val_release.jsonl"
    rows = [json.loads(line) for line in gt.read_text().splitlines()]
    # the mean annotator score ranks clips well; appended extra clips are truncated
    sub = _write(tmp_path / "p.jsonl", [{"qid": r["qid"], "pred_saliency_scores": list(np.mean(r["label"], 1)) + [99]}
                                       for r in rows])
    m = evaluate_prediction_files("tvsum", sub, gt)
    ref, _ = tvsum_map([np.mean(r["label"], 1) for r in rows], [np.array(r["label"]) for r in rows])
    assert m["brief"]["HL-top5-mAP"] == float(f"{100 * ref:.2f}") and m["brief"]["HL-top5-mAP"] > 60
    assert set(m["per_video"]) == {r["qid"] for r in rows}
    rnd = _write(tmp_path / "r.jsonl", [{"qid": r["qid"], "pred_saliency_scores": list(
        np.random.default_rng(0).random(len(r["label"])))} for r in rows])
    assert evaluate_prediction_files("tvsum", rnd, gt)["brief"]["HL-top5-mAP"] < m["brief"]["HL-top5-mAP"]
    short = _write(tmp_path / "s.jsonl", [{"qid": r["qid"], "pred_saliency_scores": [0.0] * 3} for r in rows])
    with pytest.raises(SubmissionError, match=rf"qid '{rows[0]['qid']}'.*pred_saliency_scores.*3 scores"):
        evaluate_prediction_files("tvsum", short, gt)


def test_youtube_file_task_hand_computed(tmp_path):
    """UMT protocol: per video, trapezoid AP of the binary labels over all clips ranked by score; mean over videos."""
    gt = _write(tmp_path / "gt.jsonl", [
        {"qid": "A", "domain": "dog", "label": [[0], [1], [1], [0]]},       # lighthouse layout, (T, 1)
        {"qid": "B", "domain": "dog", "match": [-1, 1, 0]},                 # UMT layout: positive = match > 0
        {"qid": "C", "domain": "surfing", "label": [0, 0]},                 # no highlight: AP 0, as UMT
    ])
    sub = _write(tmp_path / "p.jsonl", [
        {"qid": "A", "pred_saliency_scores": [0.9, 0.8, 0.1, 0.5]},   # ranked labels 0 1 0 1: AP 1/8 + 5/24 = 1/3
        {"qid": "B", "pred_saliency_scores": [0.1, 0.9, 0.5, 7.0]},   # one extra score: cut; ranked 1 0 0: AP 1
        {"qid": "C", "pred_saliency_scores": [0.3, 0.2]},
    ])
    m = evaluate_prediction_files("youtube", sub, gt)
    assert m["brief"] == {"HL-mAP": 44.44}                          # (1/3 + 1 + 0) / 3
    assert m["per_domain"] == {"dog": 66.67, "surfing": 0.0}
    assert m["per_video"] == {"A": 33.33, "B": 100.0, "C": 0.0}
    # ties keep clip order (stable): labels 0 1 under equal scores give AP 0 + (1 - 0) * (0 + 1/2) / 2 = 1/4
    _write(gt, [{"qid": "A", "label": [0, 1]}])
    _write(sub, [{"qid": "A", "pred_saliency_scores": [0.5, 0.5]}])
    assert evaluate_prediction_files("youtube", sub, gt) == {"brief": {"HL-mAP": 25.0}, "per_video": {"A": 25.0}}


@pytest.mark.parametrize("gt_row, sub_row, error, pattern", [
    ({"qid": "A", "label": [0, 1, 1]}, {"qid": "A", "pred_saliency_scores": [0.1, 0.2]}, SubmissionError,
     r"submission file '.*p.jsonl' line 1, qid 'A', field 'pred_saliency_scores': 2 scores for 3 labelled clips"),
    ({"qid": "A", "label": [0, 1]}, {"qid": "A"}, SubmissionError, r"qid 'A', field 'pred_saliency_scores': missing"),
    ({"qid": "A"}, {"qid": "A", "pred_saliency_scores": [0.1]}, GroundTruthError,
     r"ground-truth file '.*gt.jsonl' line 1, qid 'A', field 'match': missing field: a YouTube GT row needs"),
    ({"qid": "A", "label": [[0, 1], [1, 0]]}, {"qid": "A", "pred_saliency_scores": [0.1, 0.2]}, GroundTruthError,
     r"field 'label': label must be .* one value per clip .* got shape \(2, 2\)"),
    ({"qid": "A", "match": [1, "x"]}, {"qid": "A", "pred_saliency_scores": [0.1, 0.2]}, GroundTruthError,
     r"field 'match': match must be a list of numbers"),
    ({"qid": "A", "label": [0, 1]}, {"qid": "B", "pred_saliency_scores": [0.1, 0.2]}, SubmissionError,
     r"have no prediction"),
])
def test_youtube_file_task_errors(tmp_path, gt_row, sub_row, error, pattern):
    gt, sub = _write(tmp_path / "gt.jsonl", [gt_row]), _write(tmp_path / "p.jsonl", [sub_row])
    with pytest.raises(error, match=pattern) as exc:
        evaluate_prediction_files("youtube", sub, gt)
    assert "\n" not in str(exc.value)
