"""`vidmamba evaluate youtube --gt youtube_anno.json`: UMT's release file is ground truth too (the val videos of the
submitted videos' domains), scored exactly as the same labels in a jsonl ground truth."""
import json

import pytest

from vidmamba.cli import main
from vidmamba.data.youtube import YOUTUBE_SPLITS
from vidmamba.metrics.evaluate import evaluate_prediction_files

DOG_VAL, DOG_TRAIN = YOUTUBE_SPLITS["dog"]["val"][:2], YOUTUBE_SPLITS["dog"]["train"][0]
GYM_VAL = YOUTUBE_SPLITS["gymnastics"]["val"][0]
MATCH = {DOG_VAL[0]: [1, 0, -1, 1], DOG_VAL[1]: [0, 1, 0], DOG_TRAIN: [1, 1], GYM_VAL: [0, 1]}
SCORES = {DOG_VAL[0]: [0.9, 0.1, 0.5, 0.8], DOG_VAL[1]: [0.9, 0.5, 0.1]}


def _write(tmp_path, scores):
    anno = tmp_path / "youtube_anno.json"
    anno.write_text(json.dumps({vid: {"match": m} for vid, m in MATCH.items()}))
    sub = tmp_path / "preds.jsonl"
    sub.write_text("".join(json.dumps({"qid": v, "pred_saliency_scores": s}) + "\n" for v, s in scores.items()))
    return anno, sub


def test_umt_annotation_file_scores_as_the_jsonl_ground_truth(tmp_path):
    anno, sub = _write(tmp_path, SCORES)
    jsonl = tmp_path / "gt.jsonl"
    jsonl.write_text("".join(json.dumps({"qid": v, "domain": "dog", "match": MATCH[v]}) + "\n" for v in DOG_VAL))
    got = evaluate_prediction_files("youtube", sub, anno)
    assert got == evaluate_prediction_files("youtube", sub, jsonl)
    # video 0 ranks both highlights first (AP 100); the train video and the other domain are not scored
    assert got["per_video"][DOG_VAL[0]] == 100.0 and set(got["per_video"]) == set(DOG_VAL)
    assert got["per_domain"] == {"dog": got["brief"]["HL-mAP"]}


def test_cli_reads_the_umt_file(tmp_path, capsys):
    anno, sub = _write(tmp_path, SCORES)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "youtube", "--submission", str(sub), "--gt", str(anno), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == evaluate_prediction_files("youtube", sub, anno)


@pytest.mark.parametrize("scores,message", [
    ({DOG_VAL[0]: SCORES[DOG_VAL[0]]}, DOG_VAL[1]),          # a val video of the domain is missing
    ({"not_a_video": [0.1, 0.2]}, "no submitted qid is a video of UMT's YouTube Highlights splits"),
])
def test_umt_ground_truth_errors(tmp_path, cli_error, scores, message):
    anno, sub = _write(tmp_path, scores)
    assert message in cli_error(["evaluate", "youtube", "--submission", sub, "--gt", anno])
