"""Official QVHighlights evaluation: golden reproduction, CLI, submission validation."""
import json
import math
import re

import numpy as np
import pytest

from vidmamba.cli import main as cli_main
from vidmamba.metrics.evaluate import PROTOCOLS, evaluate_prediction_files
from vidmamba.metrics.qvhighlights import eval_moment_retrieval_buckets, eval_qvhighlights
from vidmamba.metrics.validation import GroundTruthError, SubmissionError

GOLDEN = "qvhighlights_eval"


def _golden_paths(shared_data):
    d = shared_data / GOLDEN
    return d / "sample_val_preds.jsonl", d / "highlight_val_release.jsonl", d / "sample_val_preds_metrics_raw.json"


def test_golden_reproduces_official_metrics_exactly(shared_data):
    sub, gt, raw = _golden_paths(shared_data)
    metrics = evaluate_prediction_files("qvhighlights", sub, gt)
    golden = json.loads(raw.read_text())
    assert metrics == golden
    # same key order at every level, and the same text as the official json.dump(indent=4)
    assert json.dumps(metrics, indent=4) == json.dumps(golden, indent=4)
    assert list(metrics) == ["brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood", "full", "long", "middle",
                             "short"]


def test_cli_writes_golden_json(shared_data, tmp_path, capsys):
    sub, gt, raw = _golden_paths(shared_data)
    out = tmp_path / "m.json"
    assert cli_main(["evaluate", "qvhighlights", "--submission", str(sub), "--gt", str(gt), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(raw.read_text())
    assert json.loads(capsys.readouterr().out) == json.loads(raw.read_text())["brief"]


def test_cli_bad_submission_fails_and_writes_nothing(shared_data, tmp_path, capsys):
    sub, gt, _ = _golden_paths(shared_data)
    lines = sub.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines + [lines[3]]) + "\n")  # qid of line 4 appears twice
    qid = json.loads(lines[3])["qid"]
    out = tmp_path / "m.json"
    assert cli_main(["evaluate", "qvhighlights", "--submission", str(bad), "--gt", str(gt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(rf"vidmamba evaluate: error: submission file '{re.escape(str(bad))}' line {len(lines) + 1}, "
                        rf"qid {qid}, field 'qid': duplicate qid \(first seen on line 4\)\n", err)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_tasks_listed():
    assert {"qvhighlights", "moment_retrieval", "nlq", "tvsum"} <= set(PROTOCOLS)


# ---------------------------------------------------------------- small hand-made QVHighlights example

GT_ROWS = [
    {"qid": 1, "duration": 10, "relevant_windows": [[0, 4]], "relevant_clip_ids": [0, 1],
     "saliency_scores": [[4, 4, 1], [2, 2, 2]]},
    {"qid": 2, "duration": 10, "relevant_windows": [[2, 6], [6, 10]], "relevant_clip_ids": [1, 2, 4],
     "saliency_scores": [[1, 3, 0], [0, 0, 0], [3, 3, 3]]},
]
PRED_ROWS = [
    {"qid": 1, "pred_relevant_windows": [[0, 4, 0.9], [4, 8, 0.1]], "pred_saliency_scores": [0.9, 0.5, 0.1, 0, 0]},
    # first listed window misses (R1 uses list order); mAP sorts by score
    {"qid": 2, "pred_relevant_windows": [[0, 2, 0.1], [6, 10, 0.8], [2, 6, 0.5]],
     "pred_saliency_scores": [0.1, 0.2, 0.3, 0.4, 0.5]},
]


def _copy(rows):
    return json.loads(json.dumps(rows))


def test_hand_computed_example():
    m = eval_qvhighlights(_copy(PRED_ROWS), _copy(GT_ROWS))
    # MR: q1 AP 1 (tp at rank 1; the fp after full recall does not matter); q2: tp, tp, fp -> AP 1; R1: q1 hit, q2 miss
    assert m["full"]["MR-mAP"]["average"] == 100.0
    assert m["full"]["MR-R1"] == {k: 50.0 for k in m["full"]["MR-R1"]}
    # all windows have length 4 -> only the "short" bucket keeps them
    assert m["short"]["MR-mAP"]["0.5"] == 100.0
    assert m["middle"]["MR-mAP"]["average"] is None and m["long"]["MR-R1"]["0.5"] is None
    # HL Fair (>=2): q1 annotators: [1,1,0,0,0],[1,1,0,0,0],[0,1,0,0,0] ; q2: [0,0,0,0,1],[0,1,0,0,1],[0,0,0,0,1]
    # q1 preds rank clips 0>1>2>3=4: APs 1, 1, 1/2 ; q2 ranks 4>3>2>1>0: APs 1, (1 + 2/4)/2, 1
    ap = np.mean([1, 1, 0.5, 1, 0.75, 1])
    assert m["HL-min-Fair"]["HL-mAP"] == float(f"{100 * ap:.2f}")
    assert m["HL-min-Fair"]["HL-Hit1"] == 100.0  # clip 0 for q1, clip 4 for q2
    # VeryGood (>=4): q1 -> [1,0..],[1,0..],[0..] (all-zero column: AP 0); q2 all-zero -> 0; Hit1: q1 hit, q2 miss
    assert m["HL-min-VeryGood"] == {"HL-mAP": float(f"{100 * 2 / 6:.2f}"), "HL-Hit1": 50.0}
    assert list(m["brief"]) == ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5",
                                "MR-full-mAP@0.75", "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP",
                                "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP", "HL-min-Good-Hit1",
                                "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]


def test_only_the_fields_present_are_scored():
    preds = _copy(PRED_ROWS)
    for p in preds:
        del p["pred_saliency_scores"]
    m = eval_qvhighlights(preds, _copy(GT_ROWS))
    assert set(m) == {"brief", "full", "short", "middle", "long"}
    preds = _copy(PRED_ROWS)
    for p in preds:
        del p["pred_relevant_windows"]
    # without windows the MR metrics are not silently dropped: an error, unless highlights-only is asked for
    with pytest.raises(SubmissionError, match=r"qid 1, field 'pred_relevant_windows': missing: the moment-retrieval"):
        eval_qvhighlights(preds, _copy(GT_ROWS))
    hl_only = eval_qvhighlights(preds, _copy(GT_ROWS), highlights_only=True)
    assert set(hl_only) == {"brief", "HL-min-Fair", "HL-min-Good", "HL-min-VeryGood"}
    full = eval_qvhighlights(_copy(PRED_ROWS), _copy(GT_ROWS))  # windows present but ignored: the same HL numbers
    assert eval_qvhighlights(_copy(PRED_ROWS), _copy(GT_ROWS), highlights_only=True) == hl_only
    assert all(hl_only["brief"][k] == full["brief"][k] for k in hl_only["brief"])
    preds = _copy(PRED_ROWS)
    for p in preds:
        del p["pred_saliency_scores"]
    with pytest.raises(SubmissionError, match=r"field 'pred_saliency_scores': missing: highlights-only"):
        eval_qvhighlights(preds, _copy(GT_ROWS), highlights_only=True)


def test_highlights_only_through_the_file_entry_point(files):
    sub, gt = files
    rows = [json.loads(line) for line in sub.read_text().splitlines()]
    sub.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "pred_relevant_windows"}) + "\n"
                           for r in rows))
    with pytest.raises(SubmissionError) as exc:
        evaluate_prediction_files("qvhighlights", sub, gt)
    assert str(sub) in str(exc.value) and "pred_relevant_windows" in str(exc.value) and "\n" not in str(exc.value)
    brief = evaluate_prediction_files("qvhighlights", sub, gt, highlights_only=True)["brief"]
    assert sorted(brief) == sorted(f"HL-min-{t}-{m}" for t in ("Fair", "Good", "VeryGood") for m in ("mAP", "Hit1"))
    with pytest.raises(ValueError, match="highlights_only applies to the qvhighlights task only"):
        evaluate_prediction_files("tvsum", sub, gt, highlights_only=True)


def test_saliency_length_is_padded_or_truncated_like_official():
    preds = _copy(PRED_ROWS)
    preds[0]["pred_saliency_scores"] = [0.9, 0.5]  # zero-padded to 5 clips: [0.9, 0.5, 0, 0, 0]
    preds[1]["pred_saliency_scores"] = [0.1, 0.2, 0.3, 0.4, 0.5, 9.0, 9.0]  # truncated for AP
    m = eval_qvhighlights(preds, _copy(GT_ROWS))
    ref = eval_qvhighlights(_copy(PRED_ROWS), _copy(GT_ROWS))
    for name in ("HL-min-Fair", "HL-min-Good", "HL-min-VeryGood"):
        assert m[name]["HL-mAP"] == ref[name]["HL-mAP"]
    # Hit1 uses the argmax of the unmodified list: index 5 is beyond the 5 GT clips of q2 -> 0
    assert m["HL-min-Fair"]["HL-Hit1"] == 50.0


def test_buckets_drop_windows_and_queries():
    preds = {1: np.array([[0, 8, 0.9]]), 2: np.array([[20, 60, 0.9], [0, 8, 0.5]])}
    gts = {1: np.array([[0.0, 8.0]]), 2: np.array([[0.0, 8.0], [20.0, 60.0]])}
    out = eval_moment_retrieval_buckets(preds, gts)
    # short: both queries with GT [0, 8]; q1 AP 1, q2's fp [20, 60] outranks its tp: AP 1/2
    assert out["short"]["MR-mAP"]["0.5"] == 75.0
    assert out["short"]["MR-R1"]["0.5"] == 50.0
    assert out["long"]["MR-R1"]["0.5"] == 100.0  # only q2, whose first window is the long one
    assert out["middle"]["MR-R1"]["0.5"] is None
    # (lo, hi] is open on the left: a 30-s window is "middle", not "long"
    out = eval_moment_retrieval_buckets({1: np.array([[0, 30, 1.0]])}, {1: np.array([[0.0, 30.0]])})
    assert out["long"]["MR-R1"]["0.5"] is None and out["middle"]["MR-R1"]["0.5"] == 100.0
    assert out["full"]["MR-mAP"]["0.5"] == 100.0


# ---------------------------------------------------------------- validation


def _write(path, rows):
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    return _write(tmp_path / "sub.jsonl", _copy(PRED_ROWS)), _write(tmp_path / "gt.jsonl", _copy(GT_ROWS))


def _mutated(files, mutate):
    sub, gt = files
    rows = _copy(PRED_ROWS)
    rows = mutate(rows) or rows
    _write(sub, rows)
    return sub, gt


@pytest.mark.parametrize("mutate, pattern", [
    (lambda r: r[:1], r"qid 2.*field 'qid'.*have no prediction.*\[2\]"),
    (lambda r: r + [dict(r[0], qid=7)], r"not in the ground truth.*\[7\]"),
    (lambda r: r + [r[1]], r"line 3.*qid 2.*duplicate qid \(first seen on line 2\)"),
    (lambda r: r[1].update(pred_relevant_windows=[[6, 2, 0.5]]), r"qid 2.*pred_relevant_windows.*start 6 > end 2"),
    (lambda r: r[0].update(pred_relevant_windows=[[0, 4, float("nan")]]), r"qid 1.*pred_relevant_windows.*non-finite"),
    (lambda r: r[0].update(pred_relevant_windows=[[0, float("inf"), 1]]), r"qid 1.*non-finite"),
    (lambda r: r[0].update(pred_saliency_scores=[0.1, float("nan")]), r"qid 1.*pred_saliency_scores.*not finite"),
    (lambda r: r[0].update(pred_saliency_scores=[0.1, "0.2"]), r"qid 1.*pred_saliency_scores.*not a number"),
    (lambda r: r[0].update(pred_saliency_scores=[]), r"qid 1.*pred_saliency_scores.*non-empty"),
    (lambda r: r[1].update(pred_relevant_windows=[["0", 2, 1]]), r"qid 2.*non-numeric"),
    (lambda r: r[1].update(pred_relevant_windows=[[0, 2]]), r"qid 2.*must be \[start, end, score\]"),
    (lambda r: r[1].update(pred_relevant_windows=[]), r"qid 2.*empty window list"),
    (lambda r: r[1].pop("pred_relevant_windows") and None, r"qid 2.*pred_relevant_windows.*some entries but not"),
    (lambda r: [{"qid": q["qid"]} for q in r], r"neither"),
    (lambda r: r[0].update(qid="1"), r"qid types differ"),
    (lambda r: r[0].update(qid=1.0), r"qid must be an int or a string"),
])
def test_invalid_submission_names_qid_and_field(files, mutate, pattern):
    sub, gt = _mutated(files, mutate)
    with pytest.raises(SubmissionError, match=pattern) as exc:
        evaluate_prediction_files("qvhighlights", sub, gt)
    assert str(sub) in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_malformed_json_line_names_file_and_line(files):
    sub, gt = files
    lines = sub.read_text().splitlines()
    sub.write_text(lines[0] + "\n" + lines[1][:-3] + "\n")
    with pytest.raises(SubmissionError, match=rf"'{sub}' line 2: malformed JSON"):
        evaluate_prediction_files("qvhighlights", sub, gt)
    sub.write_text(lines[0] + "\n[1, 2]\n")
    with pytest.raises(SubmissionError, match="line 2: expected a JSON object"):
        evaluate_prediction_files("qvhighlights", sub, gt)


def test_missing_files_are_named(files, tmp_path):
    sub, gt = files
    with pytest.raises(SubmissionError, match=r"submission file '.*nope.jsonl'.*not found"):
        evaluate_prediction_files("qvhighlights", tmp_path / "nope.jsonl", gt)
    with pytest.raises(GroundTruthError, match=r"ground-truth file '.*gone.jsonl'.*not found"):
        evaluate_prediction_files("qvhighlights", sub, tmp_path / "gone.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(SubmissionError, match="no entries"):
        evaluate_prediction_files("qvhighlights", tmp_path / "empty.jsonl", gt)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_prediction_files("nope", sub, gt)


def test_invalid_ground_truth_is_reported(files):
    sub, gt = files
    rows = _copy(GT_ROWS)
    rows[1]["relevant_clip_ids"] = [1, 2, 9]  # beyond int(10 / 2) clips
    _write(gt, rows)
    with pytest.raises(GroundTruthError, match=r"qid 2.*saliency_scores.*relevant_clip_ids"):
        evaluate_prediction_files("qvhighlights", sub, gt)
    rows = _copy(GT_ROWS)
    rows[0]["relevant_windows"] = [[4, 0]]
    _write(gt, rows)
    with pytest.raises(GroundTruthError, match=r"qid 1.*relevant_windows.*start 4 > end 0"):
        evaluate_prediction_files("qvhighlights", sub, gt)


def test_nan_literal_in_file_is_rejected(files):
    sub, gt = files
    text = sub.read_text().replace("0.9]", "NaN]", 1)
    assert "NaN" in text
    sub.write_text(text)
    with pytest.raises(SubmissionError, match="qid 1.*non-finite"):
        evaluate_prediction_files("qvhighlights", sub, gt)
    assert math.isnan(json.loads(text.splitlines()[0])["pred_relevant_windows"][0][2])
