"""End to end through the CLI on a tiny synthetic benchmark: train -> evaluate -> predict."""
import re
import json
import pathlib

import numpy as np
import pytest
from tiny_data import GROUNDING_BENCH

from vidmamba.cli import main
from vidmamba.metrics.evaluate import evaluate_prediction_files


def test_train_writes_checkpoints_and_log(grounding_run):
    tmp, _, _ = grounding_run
    run = tmp / "run"
    assert (run / "best" / "model.safetensors").is_file() and (run / "last" / "model.safetensors").is_file()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["split"] == "val"]
    assert [r["epoch"] for r in evals] == [1, 2] and all("MR-full-mAP" in r for r in evals)
    stored = json.loads((run / "last" / "config.json").read_text())["experiment"]
    assert stored["model"]["video_dim"] == GROUNDING_BENCH["video_dim"] and stored["model"]["text_dim"] == GROUNDING_BENCH["text_dim"]


def test_evaluate_checkpoint_writes_official_predictions(grounding_run, tmp_path):
    tmp, bench, config = grounding_run
    assert main(["evaluate", str(config), "--ckpt", str(tmp / "run"), "--out", str(tmp_path)]) == 0
    preds = [json.loads(line) for line in (tmp_path / "val_preds.jsonl").read_text().splitlines()]
    gt = [json.loads(line) for line in (bench / "val.jsonl").read_text().splitlines()]
    assert [p["qid"] for p in preds] == [g["qid"] for g in gt]
    for p, g in zip(preds, gt):
        scores = [w[2] for w in p["pred_relevant_windows"]]
        assert 1 <= len(scores) <= 10 and scores == sorted(scores, reverse=True)
        assert all(0 <= w[0] <= w[1] <= g["duration"] for w in p["pred_relevant_windows"])
        assert len(p["pred_saliency_scores"]) == round(g["duration"] / 2)
    # the metrics file is exactly what the official protocol gives for the written predictions
    written = json.loads((tmp_path / "val_metrics.json").read_text())
    assert written == evaluate_prediction_files("qvhighlights", tmp_path / "val_preds.jsonl", bench / "val.jsonl")


def test_predict_from_feature_files_matches_evaluate(grounding_run, tmp_path, capsys):
    tmp, bench, config = grounding_run
    main(["evaluate", str(config), "--ckpt", str(tmp / "run"), "--out", str(tmp_path)])
    first = json.loads((tmp_path / "val_preds.jsonl").read_text().splitlines()[0])
    capsys.readouterr()
    out = tmp_path / "pred.json"
    assert main(["predict", "--ckpt", str(tmp / "run"), "--video-features", str(bench / "video" / f"{first['vid']}.npz"),
                 "--query-features", str(bench / "text" / f"qid{first['qid']}.npz"), "--query", first["query"],
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["query"] == first["query"]
    np.testing.assert_allclose(result["saliency"], first["pred_saliency_scores"], rtol=1e-3, atol=1e-4)  # batched vs alone: fp32 reduction order
    np.testing.assert_allclose(result["windows"], first["pred_relevant_windows"], rtol=1e-3, atol=1e-3)


def test_predict_rejects_features_of_the_wrong_width(grounding_run, tmp_path, cli_error):
    tmp, bench, _ = grounding_run
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((20, GROUNDING_BENCH["video_dim"] + 1), dtype=np.float32))
    assert re.search(r"bad.npz.*features", cli_error(["predict", "--ckpt", tmp / "run", "--video-features", bad,
                                                      "--query-features", bench / "text" / "qid0.npz"]))


def test_evaluate_needs_ckpt_for_a_config(grounding_run, cli_error):
    _, _, config = grounding_run
    assert "not a metric protocol" in cli_error(["evaluate", config])


def _copy_bench(bench, tmp_path):
    import shutil

    copy = tmp_path / "bench"
    shutil.copytree(bench, copy)
    return copy


@pytest.mark.parametrize("corrupt, match", [
    ("text_dim", r"qid\d+\.npz.*last_hidden_state|qid\d+\.npz.*16"),
    ("nan_video", r"\.npz.*(NaN|non-finite)"),
    ("empty_video", r"\.npz.*empty"),
])
def test_bad_features_name_the_file_and_write_no_checkpoint(grounding_run, tmp_path, corrupt, match, cli_error):
    _, bench, config = grounding_run
    bench = _copy_bench(bench, tmp_path)
    gt = [json.loads(line) for line in (bench / "train.jsonl").read_text().splitlines()]
    victim = gt[5]
    if corrupt == "text_dim":
        np.savez(bench / "text" / f"qid{victim['qid']}.npz", last_hidden_state=np.ones((4, GROUNDING_BENCH["text_dim"] + 3),
                                                                                         np.float32))
    else:
        path = bench / "video" / f"{victim['vid']}.npz"
        feats = np.load(path)["features"]
        feats = feats[:0] if corrupt == "empty_video" else np.where(np.arange(len(feats))[:, None] == 2, np.nan, feats)
        np.savez(path, features=feats.astype(np.float32))
    run = tmp_path / "run"
    overrides = [f"data.feature_root={bench}", f"data.train={bench / 'train.jsonl'}",
                 f"data.val={bench / 'val.jsonl'}", f"train.out_dir={run}"]
    assert re.search(match, cli_error(["train", config, *[arg for o in overrides for arg in ("--set", o)]]))
    assert not (run / "last").exists() and not (run / "best").exists()


def test_evaluate_uses_the_data_of_the_given_config(grounding_run, tmp_path):
    tmp, bench, config = grounding_run
    assert main(["evaluate", str(config), "--ckpt", str(tmp / "run"), "--out", str(tmp_path),
                 "--set", f"data.val={bench / 'train.jsonl'}"]) == 0
    preds = [json.loads(line)["qid"] for line in (tmp_path / "val_preds.jsonl").read_text().splitlines()]
    assert preds == [json.loads(line)["qid"] for line in (bench / "train.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------------------------------------
# TVSum in the UMT layout through the CLI (data.dataset: tvsum_umt)
# ------------------------------------------------------------------------------------------------------------------
UMT_CLIPS = {"v1": 14, "v2": 9, "v3": 17, "v4": 12, "v5": 11}      # v1-v4 train, v5 val (domain BK)


def _write_umt(root):
    """A tiny UMT-layout TVSum: 5 videos of domain BK; clip scores follow the first rgb feature, so they can be
    learned."""
    rng = np.random.default_rng(0)
    (root / "video_features").mkdir(parents=True)
    (root / "query_features").mkdir()
    anno = {}
    for vid, T in UMT_CLIPS.items():
        rgb, opt = rng.normal(size=(T, 1024)), rng.normal(size=(T, 1024))
        scores = np.clip(np.round(3 + 1.5 * rgb[:, :1] + 0.5 * rng.normal(size=(T, 20))), 1, 5)
        np.save(root / "video_features" / f"{vid}_rgb.npy", rgb.astype(np.float32))
        np.save(root / "video_features" / f"{vid}_opt.npy", opt.astype(np.float32))
        np.savez(root / "query_features" / f"{vid}.npz", token=rng.normal(size=(3, 512)).astype(np.float16),
                 text=rng.normal(size=(1, 512)).astype(np.float16))
        anno[vid] = {"fps": 30.0, "frames": str(T * 60 + 7), "domain": "BK", "title": f"title {vid}",
                     "anno": scores.astype(int).tolist()}
    (root / "tvsum_anno.json").write_text(json.dumps(anno))
    (root / "tvsum_domain_splits.json").write_text(json.dumps({"BK": {"train": ["v1", "v2", "v3", "v4"],
                                                                      "val": ["v5"]}}))
    return root


def _umt_train(config, root, out_dir, epochs):
    sets = [f"data.feature_root={root}", f"train.out_dir={out_dir}", f"train.epochs={epochs}", "train.eval_every=1",
            "train.progress=false", "model.hidden_dim=16", "model.num_layers=1"]
    assert main(["train", str(config), *[a for s in sets for a in ("--set", s)]]) == 0


def test_tvsum_umt_train_evaluate_predict(tmp_path):
    from vidmamba.data.tvsum_umt import read_tvsum_annotations

    root = _write_umt(tmp_path / "umt")
    config = pathlib.Path(__file__).resolve().parents[1] / "configs" / "mlvtg_tvsum.yaml"
    _umt_train(config, root, tmp_path / "run", epochs=2)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["split"] == "val"] == [1, 2]
    assert all(0.0 <= r["HL-top5-mAP"] <= 100.0 for r in log if r["split"] == "val")
    stored = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["experiment"]
    assert stored["model"]["video_dim"] == 2048 and stored["model"]["text_dim"] == 512
    assert stored["model"]["clip_length"] == 2.0

    out = tmp_path / "eval"
    assert main(["evaluate", str(config), "--ckpt", str(tmp_path / "run"), "--out", str(out),
                 "--set", f"data.feature_root={root}"]) == 0
    preds = [json.loads(line) for line in (out / "val_preds.jsonl").read_text().splitlines()]
    assert [p["qid"] for p in preds] == ["v5"]
    T = UMT_CLIPS["v5"]
    assert len(preds[0]["pred_saliency_scores"]) == T
    # windows are in seconds: T clips of 2 s, so they may reach past T (a clip count) but never past 2 T
    ends = [w[1] for w in preds[0]["pred_relevant_windows"]]
    assert all(0 <= w[0] <= w[1] <= 2.0 * T for w in preds[0]["pred_relevant_windows"]) and max(ends) > 0
    # the metrics file is the official tvsum protocol on the written predictions against the annotation matrix
    gt = tmp_path / "gt.jsonl"
    gt.write_text(json.dumps({"qid": "v5", "label": read_tvsum_annotations(root)["v5"].scores.tolist()}) + "\n")
    assert json.loads((out / "val_metrics.json").read_text()) == \
        evaluate_prediction_files("tvsum", out / "val_preds.jsonl", gt)

    # predict from the raw UMT feature files gives the saliency evaluate wrote
    res = tmp_path / "pred.json"
    assert main(["predict", "--ckpt", str(tmp_path / "run"), "--video-features",
                 str(root / "video_features" / "v5_rgb.npy"), str(root / "video_features" / "v5_opt.npy"),
                 "--query-features", str(root / "query_features" / "v5.npz"), "--out", str(res)]) == 0
    np.testing.assert_allclose(json.loads(res.read_text())["saliency"], preds[0]["pred_saliency_scores"],
                               rtol=1e-4, atol=1e-5)


def test_tvsum_umt_config_errors(tmp_path):
    from vidmamba.tasks import get_task
    from vidmamba.tasks.grounding import build_dataset

    root = _write_umt(tmp_path / "umt")
    with pytest.raises(ValueError, match="data.domain is missing"):
        get_task("tvsum").data_options({"dataset": "tvsum_umt", "feature_root": str(root)})
    from vidmamba.data.errors import DataFormatError
    with pytest.raises(DataFormatError, match="domain GA"):
        build_dataset(get_task("tvsum").data_options({"dataset": "tvsum_umt", "feature_root": str(root),
                                                      "domain": "GA"}), "train")


def test_tvsum_umt_real_domain_trains_through_the_cli(shared_data, tmp_path):
    root = shared_data / "tvsum_umt"
    if not root.is_dir():
        pytest.skip("tvsum_umt not in shared data")
    config = pathlib.Path(__file__).resolve().parents[1] / "configs" / "mlvtg_tvsum.yaml"
    _umt_train(config, root, tmp_path / "run", epochs=1)
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in log if r["split"] == "val"]
    assert len(val) == 1 and 0.0 < val[0]["HL-top5-mAP"] <= 100.0


def test_tvsum_jsonl_durations_in_clips_become_seconds_before_clamping():
    """Lighthouse's TVSum jsonl stores ``duration`` as a clip count; windows must be clamped to T * 2 s, not to T."""
    import torch

    from vidmamba.tasks.grounding import duration_in_clips, predict_loader
    from vidmamba.models import create_model

    assert duration_in_clips({"dataset": "tvsum"}) and not duration_in_clips({"dataset": "tvsum_umt"})
    assert not duration_in_clips({"dataset": "qvhighlight"})
    torch.manual_seed(0)
    model = create_model("mlvtg", video_dim=6, text_dim=4, hidden_dim=8, num_layers=1)
    with torch.no_grad():                      # every clip predicts the whole video: [0, 1] of the extent
        model.head.reg.out.conv.bias.fill_(50.0)
    T = 10
    batch = {"video": torch.randn(1, T, 6), "video_mask": torch.ones(1, T, dtype=torch.bool),
             "text": torch.randn(1, 3, 4), "text_mask": torch.ones(1, 3, dtype=torch.bool),
             "duration": [T], "clip_length": [2.0], "qid": ["q"]}
    as_clips = predict_loader(model, [batch], duration_in_clips=True)[0]["pred_relevant_windows"]
    as_given = predict_loader(model, [batch])[0]["pred_relevant_windows"]
    assert max(w[1] for w in as_clips) == pytest.approx(2.0 * T)
    assert max(w[1] for w in as_given) == pytest.approx(T)          # what the clip count alone would clamp to
