"""End to end on CPU: generated mp4s -> `vidmamba extract` -> `vidmamba train` (tiny MLVTG on the extracted CLIP
features) -> `vidmamba predict VIDEO "query" ... --plot` with a tiny random CLIP."""
import re
import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

import vidmamba.viz  # noqa: E402
from vidmamba.cli import main  # noqa: E402
from vidmamba.tasks import predict_features  # noqa: E402
from vidmamba.video.encoders import save_tiny_clip  # noqa: E402
from vidmamba.video.predict import predict_video  # noqa: E402
from vidmamba.video.synthetic import index_frame, read_index, write_video  # noqa: E402

FPS = 2  # frames per second of the generated videos


def event_video(path, seconds, event):
    """Frame i (at i / FPS s) shows index i; frames inside ``event`` (start, end) have a black top band."""
    times = [i / FPS for i in range(seconds * FPS)]
    frames = []
    for i, t in enumerate(times):
        img = index_frame(i)
        if event[0] <= t < event[1]:
            img[: img.shape[0] // 4] = 0
        frames.append(img)
    return write_video(path, times, frames=frames)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    clip = save_tiny_clip(tmp / "clip", image_dim=12, text_dim=16)
    rng = np.random.default_rng(0)
    rows = {"train": [], "val": []}
    videos = []
    for k in range(8):
        seconds = int(rng.integers(12, 20))
        start = 2 * int(rng.integers(0, seconds // 2 - 2))
        path = event_video(tmp / f"vid{k}.mp4", seconds, (start, start + 4))
        videos.append(path)
        split = "val" if k >= 6 else "train"
        for j, query in enumerate(["a dark band on top", "a white band"]):
            window = [start, start + 4] if j == 0 else [0, min(start, 4) or 2]
            clip_ids = list(range(window[0] // 2, window[1] // 2))
            rows[split].append({"qid": 10 * k + j, "query": query, "vid": path.stem, "duration": float(seconds),
                                "relevant_windows": [window], "relevant_clip_ids": clip_ids,
                                "saliency_scores": [[4, 3, 4]] * len(clip_ids)})
    feats = tmp / "features"
    for split, split_rows in rows.items():
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
        assert main(["extract", *map(str, videos), "--out", str(feats), "--model", str(clip), "--clip-length", "2",
                     "--annotations", str(tmp / f"{split}.jsonl"), "--no-progress"]) == 0
    config = tmp / "tiny.yaml"
    config.write_text(f"""
task: qvhighlights
model: {{name: mlvtg, hidden_dim: 16, num_layers: 1}}
data:
  dataset: qvhighlight
  feature_root: {feats}
  train: {tmp / 'train.jsonl'}
  val: {tmp / 'val.jsonl'}
  video_features: [clip_features]
  text_features: clip_text_features
train: {{epochs: 2, batch_size: 4, lr: 1e-3, progress: false, out_dir: {tmp / 'run'}}}
""")
    assert main(["train", str(config)]) == 0
    return tmp, clip, feats, videos


def test_extract_predict_plot_end_to_end(pipeline, tmp_path, capsys, monkeypatch):
    tmp, clip, feats, videos = pipeline
    video = videos[6]  # a validation video: qids 60 ("a dark band on top") and 61
    real_plot, plotted = vidmamba.viz.plot_moments, []

    def recording_plot(out_path, **kwargs):
        plotted.append(kwargs)
        return real_plot(out_path, **kwargs)

    monkeypatch.setattr(vidmamba.viz, "plot_moments", recording_plot)
    capsys.readouterr()
    out_json, out_png = tmp_path / "pred.json", tmp_path / "pred.png"
    assert main(["predict", str(video), "a dark band on top", "--query", "a white band", "--ckpt", str(tmp / "run"),
                 "--encoder", str(clip), "--cache", str(tmp_path / "cache"), "--json", str(out_json),
                 "--plot", str(out_png)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out_json.read_text())
    duration = float(json.loads((tmp / "val.jsonl").read_text().splitlines()[0])["duration"])
    assert result["duration"] == pytest.approx(duration) and result["clip_length"] == 2.0
    assert result["num_clips"] == duration / 2 and result["cached"] is False
    assert [r["query"] for r in result["results"]] == ["a dark band on top", "a white band"]
    for r in result["results"]:
        scores = [w[2] for w in r["windows"]]
        assert 1 <= len(scores) <= 10 and scores == sorted(scores, reverse=True)
        assert all(0 <= st < ed <= duration for st, ed, _ in r["windows"])
        assert len(r["saliency"]) == result["num_clips"]
        st, ed, score = r["windows"][0]
        assert f"{st:>9.2f}  {ed:>9.2f}  {score:>7.4f}" in table
    # the same answer as the feature-file path on the features `extract` wrote (same encoder, same preparation)
    ref = predict_features(tmp / "run", feats / "clip_features" / f"{video.stem}.npz",
                           feats / "clip_text_features" / "qid60.npz")
    np.testing.assert_allclose(result["results"][0]["saliency"], ref["saliency"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result["results"][0]["windows"], ref["windows"], rtol=1e-4, atol=1e-4)
    # one figure per query, thumbnails = the frames shown at the centres of the top moments
    assert [p.name for p in sorted(tmp_path.glob("*.png"))] == ["pred_0.png", "pred_1.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in tmp_path.glob("*.png"))
    for kwargs, r in zip(plotted, result["results"]):
        assert kwargs["saliency"] == r["saliency"] and kwargs["moments"] == r["windows"]
        centres = [(st + ed) / 2 for st, ed, _ in r["windows"][:3]]
        assert [(t, rank) for t, _, rank in kwargs["thumbnails"]] == [(c, k + 1) for k, c in enumerate(centres)]
        assert [read_index(img) for _, img, _ in kwargs["thumbnails"]] == [int(c * FPS) for c in centres]

    # second run: features come from the cache
    assert main(["predict", str(video), "a dark band on top", "--ckpt", str(tmp / "run"), "--encoder", str(clip),
                 "--cache", str(tmp_path / "cache"), "--json", str(out_json)]) == 0
    again = json.loads(out_json.read_text())
    assert again["cached"] is True and again["results"][0] == result["results"][0]


def test_predict_rejects_an_encoder_of_other_widths(pipeline, tmp_path, cli_error):
    tmp, _, _, videos = pipeline
    other = save_tiny_clip(tmp_path / "wide", image_dim=20, text_dim=16)
    message = cli_error(["predict", videos[0], "q", "--ckpt", tmp / "run", "--encoder", other,
                         "--cache", tmp_path / "cache"])
    assert re.search(r"widths \[12\].*encoder .* gives one CLIP video feature of width 20", message)


def test_predict_argument_errors(pipeline, tmp_path, cli_error):
    tmp, clip, _, videos = pipeline
    assert "at least one query" in cli_error(["predict", videos[0], "--ckpt", tmp / "run", "--encoder", clip])
    assert "query 1 is empty" in cli_error(["predict", videos[0], "ok", " ", "--ckpt", tmp / "run", "--encoder", clip,
                                            "--cache", tmp_path])
    assert "takes no VIDEO" in cli_error(["predict", videos[0], "--ckpt", tmp / "run", "--video-features", "a.npz",
                                          "--query-features", "b.npz"])


def test_predictor_loads_once_and_serves_many_videos(pipeline, tmp_path, monkeypatch):
    import vidmamba.video.predict as video_predict
    from vidmamba.serve import make_predictor

    tmp, clip, _, videos = pipeline
    real, loads = video_predict.load_moment_model, []
    monkeypatch.setattr(video_predict, "load_moment_model", lambda ckpt: loads.append(ckpt) or real(ckpt))
    predict_fn = make_predictor(tmp / "run", clip, cache_dir=tmp_path)
    answers = [predict_fn(v, ["a dark band on top", "a white band"]) for v in videos[5:8]]
    assert loads == [tmp / "run"]  # one load for three videos
    assert [a["video"] for a in answers] == [str(v) for v in videos[5:8]]
    one_off = predict_video(tmp / "run", videos[6], ["a dark band on top", "a white band"], encoder=clip,
                            cache_dir=tmp_path)
    assert answers[1]["results"] == one_off["results"]


def test_pretrained_folder_without_dataset_uses_its_own_conventions(pipeline, tmp_path, monkeypatch):
    """A pretrained folder names clip_length and the text convention itself: no `dataset` needed, and its
    clip_length (here 1 s, not QVHighlights' 2 s) decides how the video is cut. Also reachable as a hub id."""
    from vidmamba.tasks import load_trained
    from vidmamba.tasks.pretrained import save_pretrained

    tmp, clip, _, videos = pipeline
    model, config, _ = load_trained(tmp / "run")
    folder = save_pretrained(model, tmp_path / "pre", {"model": {**config["model"], "clip_length": 1.0},
                                                       "data": {"clip_length": 1.0, "video_dims": [12],
                                                                "text_dim": 16, "normalize_text": True}})
    hub = pytest.importorskip("huggingface_hub")
    fetched = []
    monkeypatch.setattr(hub, "snapshot_download", lambda repo_id, **kw: fetched.append(repo_id) or str(folder))
    results = []
    for ckpt in (str(folder), "hf://someone/vidmamba-tiny"):
        out = tmp_path / "pred.json"
        assert main(["predict", str(videos[6]), "a dark band on top", "--ckpt", ckpt, "--encoder", str(clip),
                     "--cache", str(tmp_path / "cache"), "--json", str(out)]) == 0
        results.append(json.loads(out.read_text()))
    assert fetched == ["someone/vidmamba-tiny"]  # the hub is asked only for the hf:// id
    for r in results:
        assert r["clip_length"] == 1.0 and r["num_clips"] == round(r["duration"])
        assert len(r["results"][0]["saliency"]) == r["num_clips"]
    assert results[0]["results"] == results[1]["results"]


@pytest.mark.slow
def test_hieramamba_answers_a_video_file_end_to_end(pipeline, tmp_path):
    """HieraMamba trained through `vidmamba train configs/hieramamba_clip.yaml` on the CLIP features `extract` wrote
    (SnAG json at fps 0.5: one frame per 2-s clip) answers `vidmamba predict VIDEO "query"` with the same contract as
    MLVTG, and the same moments as the feature-file path."""
    import pathlib

    tmp, clip, feats, videos = pipeline
    anno = {}
    for split in ("train", "val"):
        for row in map(json.loads, (tmp / f"{split}.jsonl").read_text().splitlines()):
            video = anno.setdefault(split, {}).setdefault(row["vid"], {"fps": 0.5, "duration": row["duration"],
                                                                       "annotations": []})
            video["annotations"].append({"segment": row["relevant_windows"][0], "sentence": row["query"],
                                         "sentence_id": f"qid{row['qid']}"})
    (tmp_path / "anno.json").write_text(json.dumps(anno))
    config = pathlib.Path(__file__).resolve().parents[1] / "configs" / "hieramamba_clip.yaml"
    sets = [f"data.annotations={tmp_path / 'anno.json'}", f"data.video_features=[{feats / 'clip_features'}]",
            f"data.text_features={feats / 'clip_text_features'}", "data.max_clips=16", "model.video_dim=12",
            "model.text_dim=16", "model.embd_dim=16", "model.num_blocks=3", "model.max_seq_len=16",
            "model.d_state=8", "model.headdim=8", "model.text_embd_dim=16", "model.proj_dim=8",
            "model.fusion_layers=1", "train.epochs=1", "train.warmup_epochs=0", "train.progress=false",
            f"train.out_dir={tmp_path / 'run'}"]
    assert main(["train", str(config), *[a for s in sets for a in ("--set", s)]]) == 0
    out = tmp_path / "answer.json"
    video = videos[6]
    assert main(["predict", str(video), "a dark band on top", "--query", "a white band", "--ckpt",
                 str(tmp_path / "run"), "--encoder", str(clip), "--cache", str(tmp_path / "cache"),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clip_length"] == 2.0 and [r["query"] for r in result["results"]] == ["a dark band on top",
                                                                                       "a white band"]
    for r in result["results"]:
        assert r["windows"] and all(0 <= s <= e <= result["duration"] for s, e, _ in r["windows"])
        assert [w[2] for w in r["windows"]] == sorted((w[2] for w in r["windows"]), reverse=True)
        assert len(r["saliency"]) == result["num_clips"] and all(0 <= x <= 1 for x in r["saliency"])
    ref = predict_features(tmp_path / "run", feats / "clip_features" / f"{video.stem}.npz",
                           feats / "clip_text_features" / "qid60.npz", fps=0.5, duration=result["duration"])
    np.testing.assert_allclose(result["results"][0]["windows"], ref["windows"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result["results"][0]["saliency"], ref["saliency"], rtol=1e-4, atol=1e-5)
