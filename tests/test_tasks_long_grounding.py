"""Long-video grounding engine (task nlq): grid <-> seconds in predictions, windowed evaluation, the MLVTG adapter,
and train -> evaluate through the CLI for the HieraMamba configs and MLVTG on tiny generated data."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import data_section, make_snag
from torch import nn
from torch.utils.data import DataLoader

from vidmamba.cli import main
from vidmamba.tasks.long_grounding import (build_dataset, data_options, ground_truth_rows, moment_batch,
                                            predict_rows, predict_windowed, video_batches)
from vidmamba.metrics.evaluate import evaluate_predictions
from vidmamba.metrics.validation import read_jsonl

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Oracle(nn.Module):
    """Predicts each query's ground truth (score 0.9) and a window 20 grid steps later (score 0.5), timed with the
    batch's ``clip_length`` / ``clip_offset`` / ``duration`` as the grounding contract says."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def predict(self, batch):
        g = batch["segments_grid"].float()
        length, offset, end = batch["clip_length"][0], batch["clip_offset"][0], batch["duration"][0]
        t = lambda x: min(max(x * length + offset, 0.0), end)  # noqa: E731
        return [{"pred_relevant_windows": [[t(a), t(b), 0.9], [t(a + 20), t(b + 20), 0.5]], "pred_saliency_scores": []}
                for a, b in g.tolist()]


def test_predictions_are_converted_to_seconds_and_scored(tmp_path):
    root = make_snag(tmp_path, 6, 4)
    data = data_options(data_section(root))  # the checked section, defaults filled in
    ds = build_dataset(data, "val")
    rows = predict_rows(Oracle(), DataLoader(ds, batch_size=2, collate_fn=ds.collate), data)
    gt = ground_truth_rows(ds)
    assert [r["qid"] for r in rows] == [g["qid"] for g in gt] and len(rows) == 9
    for r, g in zip(rows, gt):
        (s, e, c), (s2, e2, c2) = r["pred_relevant_windows"]
        assert (c, c2) == (pytest.approx(0.9), pytest.approx(0.5))
        np.testing.assert_allclose([s, e], g["relevant_windows"][0], atol=1e-4)  # grid -> seconds inverts
        assert s2 == pytest.approx(min(s + 20 * 16 / 30, g["duration"]), abs=1e-4)  # 20 steps of 16 frames
    metrics = evaluate_predictions("nlq", rows, gt)["brief"]
    assert metrics["R1@0.5"] == 100.0 and metrics["avg"] == 100.0


def test_moment_batch_hand_case():
    batch = {"video": torch.zeros(1, 8, 2), "video_mask": torch.tensor([[True] * 6 + [False] * 2]),
             "text": torch.zeros(2, 3, 4), "text_mask": torch.ones(2, 3, dtype=torch.bool),
             "query_index": torch.tensor([0, 0]), "segments_grid": torch.tensor([[1.5, 3.5], [-0.5, 7.0]])}
    mb = moment_batch(batch)
    assert mb["video"].shape == (2, 8, 2) and mb["duration"].tolist() == [6.0, 6.0]
    # clip i spans [i, i + 1] = grid [i - .5, i + .5]; the second span is clipped to the 6 valid clips
    assert mb["windows"][:, 0].tolist() == [[2.0, 4.0], [0.0, 6.0]]
    assert mb["foreground"].tolist() == [[False, False, True, True, False, False, False, False],
                                         [True] * 6 + [False] * 2]


class Peak(nn.Module):
    """Predicts the clip where feature 0 peaks (score = the feature) and the clip where it is lowest (score 0), in
    grid units of ``stride`` input clips."""

    def __init__(self, stride=1):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.stride = stride

    def predict(self, batch):
        x, m = batch["video"][0, :, 0], batch["video_mask"][0]
        i, j = int(x.masked_fill(~m, -1e9).argmax()), int(x.masked_fill(~m, 1e9).argmin())
        one = torch.tensor([[i - 0.5, i + 0.5, float(x[i])], [j - 0.5, j + 0.5, 0.0]])
        one[:, :2] /= self.stride
        row = {"pred_relevant_windows": one.tolist(), "pred_saliency_scores": x[::self.stride].tolist()}
        return [row] * batch["text"].shape[0]


@pytest.mark.parametrize("vid_stride", [1, 2])
@pytest.mark.parametrize("peak", [23, 30])
def test_windowed_prediction_shifts_and_merges(vid_stride, peak):
    T = 31
    video = torch.zeros(1, T, 1)
    video[0, peak, 0], video[0, 4, 0], video[0, 12, 0] = 5.0, 3.0, -2.0
    batch = {"video": video, "video_mask": torch.ones(1, T, dtype=torch.bool), "text": torch.zeros(2, 1, 1)}
    model = Peak(vid_stride)
    preds = predict_windowed(model, batch, window=8, vid_stride=vid_stride)
    assert len(preds) == 2 and preds[0] == preds[1]
    # the global peak, found in the windows holding it, shifted back to the video's grid and merged into one by NMS;
    # then the second peak (clip 4) from other windows; as many detections as one window gives (2)
    expected = [[(peak - 0.5) / vid_stride, (peak + 0.5) / vid_stride, 5.0],
                [3.5 / vid_stride, 4.5 / vid_stride, 3.0]]
    np.testing.assert_allclose(preds[0]["pred_relevant_windows"], expected, atol=1e-6)
    # every window sees the same clip values: the mean saliency over the windows covering a step is that value
    np.testing.assert_allclose(preds[0]["pred_saliency_scores"], video[0, ::vid_stride, 0].numpy(), atol=1e-6)
    # a window covering the whole video is the plain prediction
    assert predict_windowed(model, batch, window=31)[0] == model.predict(batch)[0]


def test_trunc_thresh_reaches_the_training_windows(tmp_path):
    """data.trunc_thresh (the official HieraMamba crop rule) is a checked key that the training dataset receives."""
    root = make_snag(tmp_path, 6, 4)
    train = build_dataset(data_options(data_section(root, max_clips=20, trunc_thresh=0.5)), "train", train=True)
    assert train.trunc_thresh == 0.5
    assert build_dataset(data_options(data_section(root, max_clips=20)), "train", train=True).trunc_thresh is None
    with pytest.raises(ValueError, match="trunc_thresh"):
        build_dataset(data_options(data_section(root, trunc_thresh=1.5)), "train", train=True)


def test_video_batches_split_queries_per_video(tmp_path):
    root = make_snag(tmp_path, 6, 4, lengths=(12, 20))
    ds = build_dataset(data_options(data_section(root)), "val")
    batch = ds.collate([ds[0], ds[1]])
    ones = list(video_batches(batch))
    assert [o["video"].shape for o in ones] == [(1, 6, 6), (1, 10, 6)]  # downsample 2
    assert [o["text_ids"] for o in ones] == [["val0_s0", "val0_s1", "val0_s2"], ["val1_s0", "val1_s1", "val1_s2"]]
    for o, item in zip(ones, (ds[0], ds[1])):
        assert torch.equal(o["video"][0], item["video"])
        assert [int(m.sum()) for m in o["text_mask"]] == [len(t) for t in item["texts"]]


# ------------------------------------------------------------------ train -> evaluate through the CLI
def _check_evaluation(out: Path, anno: Path, split: str, max_windows: int):
    """The written predictions cover every query of ``split``, in seconds inside the video, sorted by score, and
    the written metrics are the nlq protocol's on them."""
    videos = json.loads(anno.read_text())[split]
    gt = [{"qid": a["sentence_id"], "relevant_windows": [a["segment"]], "duration": v["duration"]}
          for v in videos.values() for a in v["annotations"]]
    preds = read_jsonl(out / f"{split}_preds.jsonl")
    assert [p["qid"] for p in preds] == [g["qid"] for g in gt]
    for p, g in zip(preds, gt):
        w = p["pred_relevant_windows"]
        assert len(w) <= max_windows and [x[2] for x in w] == sorted((x[2] for x in w), reverse=True)
        assert all(0 <= s <= e <= g["duration"] for s, e, _ in w)
    written = json.loads((out / f"{split}_metrics.json").read_text())
    assert written == json.loads(json.dumps(evaluate_predictions("nlq", preds, gt)))
    assert set(written["brief"]) >= {"R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "avg"}


TINY_HIERAMAMBA = ["model.embd_dim=16", "model.num_blocks=3", "model.max_seq_len=32", "model.d_state=8",
                   "model.headdim=8", "model.text_embd_dim=16", "model.text_layers=1", "model.proj_dim=8",
                   "model.fusion_layers=1", "train.batch_size=1", "train.epochs=1", "train.warmup_epochs=0",
                   "train.progress=false"]


@pytest.mark.parametrize("name,video_dim,text_dim,fps,clip_frames", [
    ("ego4d", 256, 768, 30.0, 8), ("mad", 512, 512, 5.0, 1), ("tacos", 4096, 300, 30.0, 4)])
def test_hieramamba_config_trains_and_evaluates(tmp_path, name, video_dim, text_dim, fps, clip_frames):
    root = make_snag(tmp_path / "data", video_dim, text_dim, lengths=(40, 72), queries=3, fps=fps,
                     clip_frames=clip_frames)
    sets = [f"data.annotations={root / 'anno.json'}", f"data.video_features=[{root / 'video'}]",
            f"data.text_features={root / 'text'}", "data.max_clips=48"]
    config = CONFIGS / f"hieramamba_{name}.yaml"
    run = tmp_path / "run"
    args = [a for s in sets + TINY_HIERAMAMBA + [f"train.out_dir={run}"] for a in ("--set", s)]
    assert main(["train", str(config), *args]) == 0
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in log] == ["train", "val"] and np.isfinite(log[0]["loss"]) and "avg" in log[1]
    out = tmp_path / "eval"
    eval_args = [a for s in sets for a in ("--set", s)]
    assert main(["evaluate", str(config), "--ckpt", str(run), "--out", str(out), *eval_args]) == 0
    _check_evaluation(out, root / "anno.json", "val", {"ego4d": 5, "mad": 50, "tacos": 5}[name])


TINY_LONG = dict(num_train=6, num_val=3, min_clips=120, max_clips=600, video_dim=24, text_dim=16, latent_dim=8,
                 hidden_dim=16, queries_per_video=3, seed=5)


@pytest.mark.parametrize("model", ["mlvtg", "hieramamba"])
def test_synthetic_long_config_trains_and_evaluates(tmp_path, monkeypatch, model):
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path / "cache"))
    config = CONFIGS / "hieramamba_synthetic_long.yaml"
    sets = [f"data.synthetic={json.dumps(TINY_LONG)}", "data.max_clips=128", "data.eval_window=256"]
    model_sets = TINY_HIERAMAMBA[:-3] if model == "hieramamba" else [
        "model={name: mlvtg, hidden_dim: 16, num_layers: 1, score_mode: fg, w_sal_intra: 0, w_sal_inter: 0}"]
    run = tmp_path / "run"
    args = [a for s in sets + model_sets + ["train.epochs=1", "train.warmup_epochs=0", "train.progress=false",
                                             f"train.out_dir={run}"] for a in ("--set", s)]
    assert main(["train", str(config), *args]) == 0
    stored = json.loads((run / "last" / "config.json").read_text())["experiment"]
    assert stored["model"]["name"] == model and stored["data"]["video_dims"] == [24]
    out = tmp_path / "eval"
    assert main(["evaluate", str(config), "--ckpt", str(run), "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    anno = Path(stored["data"]["annotations"])
    assert anno.parent.parent == tmp_path / "cache" / "synthetic_long"
    _check_evaluation(out, anno, "val", 10)


def test_predict_from_feature_files_matches_evaluation(tmp_path, cli_error):
    """`vidmamba predict --video-features --query-features --fps` on an nlq checkpoint gives the windows that
    `vidmamba evaluate` wrote for the same video and query; without --fps it is a clear error."""
    root = make_snag(tmp_path / "data", 256, 768, lengths=(40, 72), queries=2, fps=30.0, clip_frames=8)
    sets = [f"data.annotations={root / 'anno.json'}", f"data.video_features=[{root / 'video'}]",
            f"data.text_features={root / 'text'}", "data.max_clips=48"]
    config, run = CONFIGS / "hieramamba_ego4d.yaml", tmp_path / "run"
    args = [a for s in sets + TINY_HIERAMAMBA + [f"train.out_dir={run}"] for a in ("--set", s)]
    assert main(["train", str(config), *args]) == 0
    assert main(["evaluate", str(config), "--ckpt", str(run), "--out", str(tmp_path / "eval"),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    row = read_jsonl(tmp_path / "eval" / "val_preds.jsonl")[-1]
    video = json.loads((root / "anno.json").read_text())["val"][row["vid"]]
    base = ["predict", "--ckpt", str(run), "--video-features", str(root / "video" / f"{row['vid']}.npy"),
            "--query-features", str(root / "text" / f"{row['qid']}.npy"), "--query", row["query"]]
    assert "--fps" in cli_error(base)
    out = tmp_path / "pred.json"
    assert main(base + ["--fps", "30", "--duration", str(video["duration"]), "--out", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["query"] == row["query"] and got["windows"]
    np.testing.assert_allclose(got["windows"], row["pred_relevant_windows"], rtol=1e-5, atol=1e-5)
