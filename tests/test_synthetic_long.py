"""Long-video synthetic benchmark in SnAG format: determinism, sizes, needles, readable by the SnAG readers, cache."""
import json

import numpy as np
import pytest

from vidmamba.data.snag import SnagDataset, read_snag_json
from vidmamba.data.synthetic import generate_grounding_benchmark
from vidmamba.data.synthetic_long import SNAG_GRID, ensure_long_benchmark, generate_long_benchmark, read_meta

from tiny_data import tree_digest

SMALL = dict(num_train=4, num_val=2, min_clips=200, max_clips=3000, min_event_clips=2, max_event_clips=6,
             queries_per_video=5, video_dim=12, text_dim=8, latent_dim=8, hidden_dim=16, seed=7)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return generate_long_benchmark(tmp_path_factory.mktemp("long") / "bench", **SMALL)


def test_deterministic_and_leaves_the_short_benchmark_unchanged(bench, tmp_path):
    short = dict(num_train=6, num_val=2, min_clips=16, max_clips=30, video_dim=8, text_dim=8, latent_dim=8,
                 hidden_dim=8, seed=1)
    before = tree_digest(generate_grounding_benchmark(tmp_path / "short1", **short))
    again = generate_long_benchmark(tmp_path / "again", **SMALL)
    assert tree_digest(again) == tree_digest(bench)
    assert tree_digest(generate_grounding_benchmark(tmp_path / "short2", **short)) == before
    assert tree_digest(generate_long_benchmark(tmp_path / "other", **{**SMALL, "seed": 8})) != tree_digest(bench)


def test_long_videos_with_needle_events(bench):
    meta = read_meta(bench)
    splits = read_snag_json(bench / "annotations.json")
    assert {s: len(v) for s, v in splits.items()} == {"train": 4, "val": 2} and meta["grid"] == SNAG_GRID
    lengths = []
    for videos in splits.values():
        for v in videos:
            T = np.load(bench / "video" / f"{v.vid}.npy").shape
            assert T == (v.num_clips, 12) and 200 <= v.num_clips <= 3000 and v.duration == 2.0 * v.num_clips
            lengths.append(v.num_clips)
            assert 1 <= len(v.queries) <= 5
            for q in v.queries:
                s, e = q.segment
                assert s % 2 == 0 and e % 2 == 0 and 2 <= (e - s) / 2 <= 6  # whole clips, short events
                words = np.load(bench / "text" / f"{q.text_id}.npy")
                assert words.shape == (len(q.sentence.split()), 8)
    assert max(lengths) / min(lengths) > 2  # log-uniform lengths: a real spread
    assert meta["sizes"]["train_clips"] + meta["sizes"]["val_clips"] == sum(lengths)


def test_events_are_visible_in_the_features(bench):
    """Clips inside a queried event differ from the video's background (the event codes are rendered)."""
    v = read_snag_json(bench / "annotations.json", "train")[0]
    x = np.load(bench / "video" / f"{v.vid}.npy")
    inside = np.zeros(len(x), dtype=bool)
    for q in v.queries:
        inside[int(q.segment[0] / 2): int(q.segment[1] / 2)] = True
    centre = x[~inside].mean(0)
    dist_in = np.linalg.norm(x[inside] - centre, axis=1).mean()
    dist_out = np.linalg.norm(x[~inside] - centre, axis=1).mean()
    assert dist_in > 1.1 * dist_out


def test_read_by_snag_dataset_on_the_clip_grid(bench):
    ds = SnagDataset(bench / "annotations.json", "val", [bench / "video"], bench / "text", **{
        k: SNAG_GRID[k] for k in ("clip_size", "clip_stride", "downsample", "vid_stride")})
    item = ds[0]
    seg = item["segments"].double().numpy()
    # clip i spans [2i, 2i + 2] s and is grid point i: a segment of clips s..e-1 is grid [s - .5, e - .5]
    np.testing.assert_allclose(item["segments_grid"].numpy(), seg / 2 - 0.5)


def test_cache_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path))
    params = {**SMALL, "num_train": 1, "num_val": 1, "max_clips": 400}
    root = ensure_long_benchmark(**params)
    assert root.parent == tmp_path / "synthetic_long" and json.loads((root / "meta.json").read_text())["params"][
        "max_clips"] == 400
    stamp = (root / "annotations.json").stat().st_mtime_ns
    assert ensure_long_benchmark(**params) == root and (root / "annotations.json").stat().st_mtime_ns == stamp
    assert ensure_long_benchmark(**{**params, "seed": 9}) != root
    with pytest.raises(TypeError, match="unknown long synthetic benchmark parameter"):
        ensure_long_benchmark(num_videos=3)


def test_training_videos_have_their_own_lengths_and_query_count(tmp_path):
    """``train_clips`` / ``train_queries_per_video`` shape the train split only; val keeps min/max_clips and
    queries_per_video."""
    root = generate_long_benchmark(tmp_path / "b", **{**SMALL, "num_train": 3, "num_val": 2, "min_clips": 1000,
                                                         "max_clips": 3000, "train_clips": [100, 150],
                                                         "train_queries_per_video": 14})
    splits = read_snag_json(root / "annotations.json")
    assert all(100 <= v.num_clips <= 150 for v in splits["train"])
    assert all(1000 <= v.num_clips <= 3000 and len(v.queries) <= 5 for v in splits["val"])
    counts = [len(v.queries) for v in splits["train"]]
    assert max(counts) <= 14 and sum(counts) > 3 * 5  # denser than queries_per_video allows
    assert read_meta(root)["params"]["train_clips"] == [100, 150]


@pytest.mark.parametrize("bad, match", [({"train_clips": [300, 200]}, "train_clips"),
                                        ({"train_clips": [1]}, "train_clips"),
                                        ({"train_queries_per_video": 100}, "train_queries_per_video")])
def test_bad_split_parameters_are_named(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        generate_long_benchmark(tmp_path / "b", **{**SMALL, **bad})


def _bench_module():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "long_synthetic.py"
    spec = importlib.util.spec_from_file_location("bench_long_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_protocol_helpers():
    """benchmarks/long_synthetic.py: the curve keeps every epoch's loss and the val points, seeds are summarised as
    mean / sample std and the tables render."""
    bench = _bench_module()
    log = [{"split": "train", "epoch": 1, "step": 5, "loss": 2.0},
           {"split": "train", "epoch": 2, "step": 10, "loss": 1.0},
           {"split": "val", "epoch": 2, "step": 10, **{k: 10.0 for k in bench.KEYS}},
           {"split": "train", "epoch": 3, "step": 15, "loss": 0.5},
           {"split": "val", "epoch": 3, "step": 15, **{k: 20.0 for k in bench.KEYS}}]
    curve = bench.learning_curve(log)
    assert [c["epoch"] for c in curve] == [1, 2, 3] and "R1@0.5" not in curve[0] and curve[2]["R1@0.5"] == 20.0
    rows = [{"model": "hieramamba", "seed": s, "params": 3, "eval_window": None, "train_s": 1.0, "eval_s": 2.0,
             "metrics": {k: v for k in bench.KEYS}, "curve": curve} for s, v in ((0, 10.0), (1, 20.0))]
    rows.append({"model": "random", "draws": 2, "metrics": {k: 1.0 for k in bench.KEYS}})
    (group,) = bench.summarise(rows)
    assert group["seeds"] == [0, 1] and group["mean_std"]["R1@0.5"] == (15.0, pytest.approx(7.07, abs=0.01))
    text = bench.render({"rows": rows, "summary": [group]})
    assert "15.00 ± 7.07" in text and "Learning curve, hieramamba seed 1" in text
