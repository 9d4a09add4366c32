"""YouTube Highlights: UMT's release layout and lighthouse's jsonl layout (small generated fixtures), the foreground /
window targets derived from the labels, and the YouTube evaluation on the reader's ground truth."""
import json

import numpy as np
import pytest
import torch

from vidmamba.data import DataFormatError, MomentDataset
from vidmamba.data.lighthouse import foreground_windows, label_foreground, label_targets, windows_to_foreground
from vidmamba.data.youtube import (YOUTUBE_DOMAINS, YOUTUBE_SPLITS, YouTubeUMTDataset, domain_query_features,
                                   read_youtube_annotations)
from vidmamba.metrics.evaluate import evaluate_predictions

from tiny_data import DOG_TRAIN, DOG_VAL, MATCH, write_umt_youtube

def test_foreground_windows_hand_computed():
    np.testing.assert_array_equal(foreground_windows([0, 1, 1, 0, 1], 2.0), [[2, 6], [8, 10]])
    np.testing.assert_array_equal(foreground_windows([1, 1, 1], 0.5), [[0, 1.5]])
    assert foreground_windows([0, 0], 1.0).shape == (0, 2) and foreground_windows([], 1.0).shape == (0, 2)
    fg = np.array([1, 0, 0, 1, 1, 0, 1, 1, 1, 0], dtype=bool)   # runs back to clips: the inverse on the clip grid
    np.testing.assert_array_equal(windows_to_foreground(foreground_windows(fg, 1.5), len(fg), 1.5), fg)


def test_label_foreground_rules():
    assert label_foreground([[0], [1], [0.0]], "positive").tolist() == [False, True, False]
    # TVSum rule: mean annotator score above the median of the means (2 annotators: means 1, 3, 2, 5, 4 -> median 3)
    lab = [[1, 1], [2, 4], [2, 2], [5, 5], [3, 5]]
    assert label_foreground(lab, "median").tolist() == [False, False, False, True, True]
    with pytest.raises(ValueError, match="unknown label_foreground rule 'x'"):
        label_foreground(lab, "x")
    t = label_targets([[0], [1], [1], [0]], "positive", 2.0)
    assert t["foreground"].tolist() == [False, True, True, False] and t["windows"].tolist() == [[2.0, 6.0]]
    np.testing.assert_allclose(t["windows_norm"].numpy(), [[0.25, 0.75]])


def test_builtin_umt_splits():
    assert tuple(YOUTUBE_SPLITS) == YOUTUBE_DOMAINS
    sizes = {d: (len(s["train"]), len(s["val"])) for d, s in YOUTUBE_SPLITS.items()}
    assert sizes == {"dog": (44, 24), "gymnastics": (34, 28), "parkour": (21, 11), "skating": (24, 11),
                     "skiing": (68, 51), "surfing": (56, 47)}          # counted in UMT's static.py
    every = [v for s in YOUTUBE_SPLITS.values() for part in s.values() for v in part]
    assert len(set(every)) == len(every) == 419
    assert YOUTUBE_SPLITS["dog"]["val"][:2] == ("a2nj7XCo2Rk", "9rP5yF9EC3Y")
    assert YOUTUBE_SPLITS["surfing"]["val"][-1] == "L09Qo1ql0nM"


def test_domain_query_is_a_fixed_one_hot():
    q = domain_query_features("parkour", 8)
    assert q.shape == (1, 8) and q.dtype == np.float32 and q[0].tolist() == [0, 0, 1, 0, 0, 0, 0, 0]
    with pytest.raises(ValueError, match="text_dim must be at least 6"):
        domain_query_features("dog", 4)
    with pytest.raises(ValueError, match="unknown YouTube Highlights domain 'cat'"):
        domain_query_features("cat", 8)


def test_umt_dataset_items_targets_and_collate(tmp_path):
    root = write_umt_youtube(tmp_path / "yt")
    ds = YouTubeUMTDataset(root, "dog", "train", normalize=True, audio=True, text_dim=16)
    assert ds.vids == DOG_TRAIN and len(ds.missing) == 42 and ds.sample_lengths() == [6, 4]
    a = ds[0]
    cl = 50 / 30                                                # one clip every 50 frames at 30 fps
    assert a["qid"] == a["vid"] == "BsjTtq337mM" and a["query"] == a["domain"] == "dog"
    assert a["clip_length"] == pytest.approx(cl) and a["duration"] == pytest.approx(6 * cl)
    assert a["video"].shape == (6, 2056)                        # rgb + flow + audio (7 rows, the extra one cut)
    np.testing.assert_allclose(np.linalg.norm(a["video"][:, :1024].numpy(), axis=1), 1, rtol=1e-5)
    assert a["text"].tolist() == [[1.0] + [0.0] * 15]           # the one-hot of "dog"
    assert a["saliency"].tolist() == [0, 0, 1, 1, 0, 1]         # match > 0: -1 and 0 are both negatives
    assert a["saliency_annotators"].shape == (6, 1)
    assert a["foreground"].tolist() == [False, False, True, True, False, True]
    np.testing.assert_allclose(a["windows"].numpy(), [[2 * cl, 4 * cl], [5 * cl, 6 * cl]], rtol=1e-6)
    np.testing.assert_allclose(a["windows_norm"].numpy(), [[2 / 6, 4 / 6], [5 / 6, 1]], rtol=1e-6)
    batch = YouTubeUMTDataset.collate([a, ds[1]])
    assert batch["video_mask"].sum(1).tolist() == [6, 4] and batch["windows_mask"].tolist() == [[True, True],
                                                                                               [True, False]]
    val = YouTubeUMTDataset(root, "dog", "val")
    assert val.vids == DOG_VAL and val[0]["windows"].shape == (0, 2) and val[0]["text"].shape == (1, 512)


def test_umt_dataset_without_fps_uses_clip_units_and_query_dir(tmp_path):
    root = write_umt_youtube(tmp_path / "yt", fps=None)
    (tmp_path / "q").mkdir()
    np.savez(tmp_path / "q" / "a2nj7XCo2Rk.npz", last_hidden_state=np.ones((3, 4)))
    item = YouTubeUMTDataset(root, "dog", "val", query_dir=tmp_path / "q")[0]
    assert item["clip_length"] == 1.0 and item["duration"] == 3.0 and item["text"].shape == (3, 4)


def test_umt_ground_truth_rows_score_a_perfect_prediction_100(tmp_path):
    ds = YouTubeUMTDataset(write_umt_youtube(tmp_path / "yt"), "dog", "train")
    gt = ds.gt_rows()
    assert gt[1] == {"qid": "eGCD1F74iy8", "vid": "eGCD1F74iy8", "domain": "dog", "match": [1, 1, -1, -1]}
    preds = [{"qid": it["qid"], "pred_saliency_scores": it["saliency"].tolist()} for it in ds]
    assert evaluate_predictions("youtube", preds, gt)["brief"] == {"HL-mAP": 100.0}


@pytest.mark.parametrize("extra, pattern", [
    ({"BsjTtq337mM": {"match": [0, 2]}}, r"youtube_anno.json: video BsjTtq337mM: field 'match': bad value \(expected "
                                         r"a non-empty list of -1 / 0 / 1"),
    ({"BsjTtq337mM": {"match": []}}, r"video BsjTtq337mM: field 'match': bad value"),
    ({"BsjTtq337mM": {"fps": 0}}, r"video BsjTtq337mM: field 'fps': bad value \(expected a positive number"),
    ({"BsjTtq337mM": {"domain": "surfing"}}, r"video BsjTtq337mM: field 'domain': domain disagrees with UMT's split "
                                            r"\(expected dog, found surfing\)"),
    ({"BsjTtq337mM": {"domain": "cats"}}, r"field 'domain': unknown domain"),
])
def test_umt_annotation_errors(tmp_path, extra, pattern):
    root = write_umt_youtube(tmp_path / "yt", extra=extra)
    with pytest.raises(DataFormatError, match=pattern) as ei:
        read_youtube_annotations(root)
    assert "\n" not in str(ei.value)


def test_umt_file_level_errors(tmp_path):
    root = write_umt_youtube(tmp_path / "yt", match={"not-a-split-vid": [1, 0]})
    with pytest.raises(DataFormatError, match="video not-a-split-vid: field 'domain': video is in no UMT split"):
        read_youtube_annotations(root)
    root = write_umt_youtube(tmp_path / "y2", match={"x": [1]}, extra={"x": {"domain": "dog"}})
    assert read_youtube_annotations(root)["x"].domain == "dog"      # a video outside the splits, with its domain
    with pytest.raises(DataFormatError, match=r"youtube_anno.json: domain dog \(train\): dataset is empty"):
        YouTubeUMTDataset(root, "dog", "train")
    with pytest.raises(ValueError, match="unknown YouTube Highlights domain 'cat'"):
        YouTubeUMTDataset(root, "cat", "train")
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        YouTubeUMTDataset(root, "dog", "test")
    (tmp_path / "y3").mkdir()
    (tmp_path / "y3" / "youtube_anno.json").write_text("{oops")
    with pytest.raises(DataFormatError, match="youtube_anno.json: invalid JSON"):
        read_youtube_annotations(tmp_path / "y3")
    with pytest.raises(DataFormatError, match="youtube_anno.json: file not found"):
        read_youtube_annotations(tmp_path / "nowhere")


def test_umt_feature_length_must_match_the_labels(tmp_path):
    root = write_umt_youtube(tmp_path / "yt", audio_extra=2)
    ds = YouTubeUMTDataset(root, "dog", "train", audio=True)
    with pytest.raises(DataFormatError) as ei:
        ds[0]
    msg = str(ei.value)
    assert "audio_features/BsjTtq337mM.npy" in msg and "expected 6 rows (or 7" in msg and "found 8 rows" in msg


# ---------------------------------------------------------------------------------------------------------------------
# lighthouse layout: data/youtube_highlight/*.jsonl + <root>/<feat_type>/<vid>.npz + <root>/<text_type>/<qid>.npz
# ---------------------------------------------------------------------------------------------------------------------
def write_lighthouse_youtube(root, rows=None, dim=6):
    """Lines as in lighthouse's youtube_highlight_val_release.jsonl (label (T, 1) = match > 0, query = domain)."""
    rows = rows if rows is not None else [("vA", "dog", [-1, 1, 1, 0, 1]), ("vB", "dog", [0, 0, 1]),
                                          ("vC", "surfing", [1, 1])]
    (root / "i3d").mkdir(parents=True, exist_ok=True)
    (root / "clip_text").mkdir(exist_ok=True)
    lines = []
    for i, (vid, domain, match) in enumerate(rows):
        frames = 50 * len(match) + 50
        lines.append({"qid": vid, "query": domain, "duration": frames / 30.0, "vid": vid, "relevant_clip_ids": None,
                      "relevant_windows": None, "label": [[int(m > 0)] for m in match], "domain": domain,
                      "frames": float(frames), "fps": 30.0, "clip": [[50.0 * k, 50.0 * k + 100] for k in range(len(match))],
                      "match": match})
        np.savez(root / "i3d" / f"{vid}.npz", features=np.random.default_rng(i).normal(size=(len(match), dim)))
        np.savez(root / "clip_text" / f"{vid}.npz", last_hidden_state=np.ones((2, 4), np.float32) * (i + 2))
    path = root / "youtube_highlight_val_release.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def test_lighthouse_youtube_items_carry_label_targets(tmp_path):
    path = write_lighthouse_youtube(tmp_path)
    ds = MomentDataset(path, tmp_path, ["i3d"], "clip_text", dataset="youtube", domain="dog", use_tef=True,
                       require_targets=True)
    assert [a.qid for a in ds.annotations] == ["vA", "vB"] and ds.annotations[0].extra["match"][0] == -1
    a = ds[0]
    assert a["query"] == "dog" and a["clip_length"] == 1.0 and a["video"].shape == (5, 8)
    assert a["text"].tolist() == [[2.0] * 4] * 2                # lighthouse: <qid>.npz, last_hidden_state, not L2-normed
    assert a["saliency"].tolist() == [0, 1, 1, 0, 1] and a["saliency_annotators"].shape == (5, 1)
    assert a["foreground"].tolist() == [False, True, True, False, True]
    assert a["windows"].tolist() == [[1.0, 3.0], [4.0, 5.0]]    # runs of label > 0 on lighthouse's 1-s clip grid
    np.testing.assert_allclose(a["windows_norm"].numpy(), [[0.2, 0.6], [0.8, 1.0]])
    batch = MomentDataset.collate([a, ds[1]])
    assert batch["foreground"].shape == (2, 5) and batch["windows"].shape == (2, 2, 2)


def test_lighthouse_youtube_training_line_without_label_is_named(tmp_path):
    path = write_lighthouse_youtube(tmp_path)
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["label"] = None
    path.write_text("\n".join([lines[0], json.dumps(row), lines[2]]) + "\n")
    with pytest.raises(DataFormatError) as ei:
        MomentDataset(path, tmp_path, ["i3d"], "clip_text", dataset="youtube", require_targets=True)
    msg = str(ei.value)
    assert msg.startswith(str(path)) and "line 2 (qid 'vB')" in msg and "field 'label'" in msg
    assert "expected it on every line of youtube_highlight training data" in msg


def test_label_targets_give_mlvtg_aligner_and_heads_a_gradient(tmp_path):
    """Highlight-only data: with the derived fg / window targets, MLVTG's loss reaches the aligner and the fg head."""
    from vidmamba.models import create_model

    path = write_lighthouse_youtube(tmp_path)
    ds = MomentDataset(path, tmp_path, ["i3d"], "clip_text", dataset="youtube", domain="dog")
    batch = MomentDataset.collate([ds[0], ds[1]])
    torch.manual_seed(0)
    model = create_model("mlvtg", video_dim=6, text_dim=4, hidden_dim=16, num_layers=1, d_state=4, w_span=1.0,
                         w_giou=1.0)
    out = model(batch)
    assert {"loss_fg", "loss_span", "loss_giou"} <= set(out)
    out["loss"].backward()

    def grad_norm(prefix):  # without the derived targets both are exactly 0 (only the HD branch has a loss)
        return sum(float(p.grad.abs().sum()) for n, p in model.named_parameters()
                   if n.startswith(prefix) and p.grad is not None)

    assert grad_norm("aligner.") > 0 and grad_norm("head.") > 0


@pytest.mark.slow
def test_youtube_task_trains_evaluates_and_scores_through_the_cli(tmp_path):
    """configs/mlvtg_youtube.yaml end to end on the UMT fixture: train, evaluate the checkpoint (HL-mAP of the val
    video), and score the written predictions again with `vidmamba evaluate youtube --submission --gt`."""
    from pathlib import Path

    from vidmamba.cli import main

    root = write_umt_youtube(tmp_path / "yt", match={**MATCH, "a2nj7XCo2Rk": [0, 1, 1, 0, -1]})
    config = Path(__file__).resolve().parents[1] / "configs" / "mlvtg_youtube.yaml"
    sets = [f"data.feature_root={root}", "model.hidden_dim=16", "model.num_layers=1", "train.epochs=2",
            "train.eval_every=2", "train.batch_size=2", "train.progress=false", f"train.out_dir={tmp_path / 'run'}"]
    args = [a for s in sets for a in ("--set", s)]
    assert main(["train", str(config), *args]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["split"] == "val"] == [2] and "HL-mAP" in log[-1]
    out = tmp_path / "eval"
    assert main(["evaluate", str(config), "--ckpt", str(tmp_path / "run"), "--out", str(out), *args]) == 0
    metrics = json.loads((out / "val_metrics.json").read_text())
    assert list(metrics["per_video"]) == ["a2nj7XCo2Rk"] and 0 < metrics["brief"]["HL-mAP"] <= 100
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": "a2nj7XCo2Rk", "match": [0, 1, 1, 0, -1]}) + "\n")
    rescored = tmp_path / "rescored.json"
    assert main(["evaluate", "youtube", "--submission", str(out / "val_preds.jsonl"), "--gt", str(gt),
                 "--out", str(rescored)]) == 0
    assert json.loads(rescored.read_text())["brief"] == metrics["brief"]
