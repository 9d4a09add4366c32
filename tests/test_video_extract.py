"""`vidmamba extract`: lighthouse npz layout, content-hash cache, resume after a crash, shards, bad videos."""
import json

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("transformers")

from vidmamba.cli import main  # noqa: E402
from vidmamba.data.lighthouse import MomentDataset  # noqa: E402
from vidmamba.video.decode import iter_clips  # noqa: E402
from vidmamba.video.encoders import ClipEncoder, save_tiny_clip  # noqa: E402
from vidmamba.video.extract import extract_videos, select_videos  # noqa: E402
from vidmamba.video.synthetic import write_video  # noqa: E402


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("extract")
    clip = save_tiny_clip(tmp / "clip", image_dim=12, text_dim=16)
    videos = [write_video(tmp / f"v{k}.mp4", [i / 5 + 0.1 * k for i in range(20 + 7 * k)]) for k in range(3)]
    return tmp, clip, ClipEncoder(clip), videos


def stored(root, vid):
    with np.load(root / "clip_features" / f"{vid}.npz") as z:
        return {k: z[k] for k in z.files}


def test_extract_writes_the_layout_and_caches_by_content(setup, tmp_path, capsys):
    tmp, clip, encoder, shared = setup
    videos = [tmp_path / v.name for v in shared]  # copies: this test changes one
    for src, dst in zip(shared, videos):
        dst.write_bytes(src.read_bytes())
    out = tmp_path / "feats"
    args = ["extract", *map(str, videos), "--out", str(out), "--model", str(clip), "--clip-length", "1",
            "--workers", "2", "--no-progress"]
    assert main(args) == 0
    assert "extracted 3, cached 0, failed 0" in capsys.readouterr().out
    for video in videos:
        z = stored(out, video.stem)
        frames = np.concatenate([b.frames for b in iter_clips(video, 1.0)])  # reference: decode all, encode all
        np.testing.assert_allclose(z["features"], encoder.encode_clips(frames), atol=1e-5)
        assert z["features"].shape[0] == int(np.ceil(float(z["duration"]) - 1e-3)) and float(z["clip_length"]) == 1
    mtimes = {v: (out / "clip_features" / f"{v.stem}.npz").stat().st_mtime_ns for v in videos}

    write_video(videos[1], [i / 5 for i in range(9)])  # new content under the same name
    assert main(args) == 0
    assert "extracted 1, cached 2, failed 0" in capsys.readouterr().out
    assert [(out / "clip_features" / f"{v.stem}.npz").stat().st_mtime_ns == mtimes[v] for v in videos] == \
        [True, False, True]
    assert stored(out, "v1")["features"].shape == (2, 12)
    # other sampling settings are another extraction
    assert main(args[:-1] + ["--frames-per-clip", "2", "--no-progress"]) == 0
    assert "extracted 3, cached 0" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))


def test_a_killed_run_leaves_no_partial_file_and_resumes(setup, tmp_path, monkeypatch):
    tmp, clip, encoder, videos = setup
    out = tmp_path / "feats"
    calls = {"n": 0}
    real = ClipEncoder.encode_clips

    def dying(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while encoding the second batch of the second video
        return real(self, frames)

    monkeypatch.setattr(ClipEncoder, "encode_clips", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_videos(videos, out, encoder, clip_length=2.0, batch_clips=2, progress=False)
    monkeypatch.undo()
    files = sorted(p.name for p in (out / "clip_features").iterdir())
    assert files in (["v0.npz"], ["v0.npz", "v2.npz"])  # v1 was killed: no partial or temp file (v2 may have run)
    for name in files:
        assert stored(out, name[:-4])["features"].shape[1] == 12
    (out / "clip_features" / "v2.npz").write_bytes(b"garbage from an old crash")
    report = extract_videos(videos, out, encoder, clip_length=2.0, batch_clips=2, progress=False)
    assert [p.name for p in report.cached] == ["v0.mp4"] and [p.name for p in report.done] == ["v1.mp4", "v2.mp4"]
    assert stored(out, "v2")["features"].shape[1] == 12


def test_shards_partition_the_videos_and_names_must_be_unique(tmp_path, cli_error):
    videos = [tmp_path / f"{name}.mp4" for name in "edcba"]
    shards = [select_videos(videos, (i, 2)) for i in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(p.resolve() for p in videos) and not set(shards[0]) & set(shards[1])
    assert select_videos(videos + videos[:2], (0, 1)) == sorted(p.resolve() for p in videos)  # duplicates once
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match="same feature file a.npz"):
        select_videos([tmp_path / "a.mp4", tmp_path / "sub" / "a.mp4"])
    assert "--shard must be i/n" in cli_error(["extract", "x.mp4", "--out", tmp_path, "--shard", "2/2"])


def test_bad_videos_are_reported_and_the_rest_extracted(setup, tmp_path, capsys):
    tmp, clip, _, videos = setup
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    code = main(["extract", str(videos[0]), str(bad), str(tmp_path / "gone.mp4"), "--out", str(tmp_path / "f"),
                 "--model", str(clip), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "extracted 1, cached 0, failed 2" in captured.out
    assert "broken.mp4: cannot open" in captured.err and "gone.mp4: video file not found" in captured.err


def test_annotations_give_text_features_that_the_training_reader_loads(setup, tmp_path):
    tmp, clip, encoder, videos = setup
    anno = tmp_path / "train.jsonl"
    rows = [{"qid": 7, "query": "a grey square", "vid": "v0", "duration": 4.1, "relevant_windows": [[0, 2]]},
            {"qid": 8, "query": "white band on top", "vid": "v2", "duration": 6.9, "relevant_windows": [[2, 6]]}]
    anno.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "feats"
    assert main(["extract", str(videos[0]), str(videos[2]), "--out", str(out), "--model", str(clip),
                 "--annotations", str(anno), "--no-progress"]) == 0
    ds = MomentDataset(anno, out, ["clip_features"], "clip_text_features", dataset="qvhighlight")
    item = ds[1]
    assert item["video"].shape == (4, 12) and item["foreground"].tolist() == [False, True, True, False]
    tokens = encoder.encode_text(["white band on top"])[0]
    np.testing.assert_allclose(item["text"].numpy(), tokens / np.linalg.norm(tokens, axis=1, keepdims=True),
                               atol=1e-5)
