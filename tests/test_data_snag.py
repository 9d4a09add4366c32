"""SnAG / HieraMamba json + npy format, seconds <-> grid conversion, SnagDataset."""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidmamba.data import (DataFormatError, SnagDataset, grid_to_seconds, load_snag_text_features,
                           load_snag_video_features, read_snag_json, seconds_to_grid)

ANNO = {
    "train": {"va": {"fps": 30.0, "duration": 10.0, "num_clips": 18,
                     "annotations": [{"segment": [1.0, 3.0], "sentence": "open door"},
                                     {"segment": [5.0, 12.0], "sentence": "close it", "sentence_id": "s_close"}]},
              "vb": {"fps": 30.0, "duration": 4.0, "annotations": []}},
    "test": {"vc": {"fps": 25.0, "duration": 8.0, "annotations": [{"segment": [-1, 2], "sentence": "x"}]}},
}


def _write(tmp_path, data, name="anno.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_read_snag_json(tmp_path):
    p = _write(tmp_path, ANNO)
    all_splits = read_snag_json(p)
    assert sorted(all_splits) == ["test", "train"]
    va, vb = all_splits["train"]
    assert va.vid == "va" and va.num_clips == 18 and va.num_frames == 300 and vb.num_clips is None
    assert [q.text_id for q in va.queries] == ["va_0000", "s_close"]
    assert va.queries[1].segment == (5.0, 10.0)  # clipped to the duration
    assert read_snag_json(p, "test")[0].queries[0].segment == (0.0, 2.0)


def _bad(ann_change=None, video_change=None):
    data = json.loads(json.dumps(ANNO))
    if ann_change:
        data["train"]["va"]["annotations"][1].update(ann_change)
    if video_change:
        data["train"]["va"].update(video_change)
    return data


@pytest.mark.parametrize("data,field,problem", [
    (_bad({"segment": [10.0, 12.0]}), "segment", "zero length after clipping"),
    (_bad({"segment": [6.0, 6.0]}), "segment", "zero length"),
    (_bad({"segment": [6.0, "7"]}), "segment", "two finite numbers"),
    (_bad({"sentence": ""}), "sentence", "non-empty string"),
    (_bad({"sentence_id": "va_0000"}), "sentence_id", "repeated text id"),
    (_bad({"sentence_id": ["x"]}), "sentence_id", "non-empty string"),
    (_bad(video_change={"fps": 0}), "fps", "positive"),
    (_bad(video_change={"num_clips": 2.5}), "num_clips", "integer"),
    (_bad(video_change={"annotations": {}}), "annotations", "a list"),
])
def test_annotation_errors(tmp_path, data, field, problem):
    with pytest.raises(DataFormatError) as ei:
        read_snag_json(_write(tmp_path, data))
    msg = str(ei.value)
    for part in ("anno.json", "video va", f"field '{field}'", problem):
        assert part in msg, (part, msg)
    if field == "segment":
        assert "annotation 1" in msg


def test_file_errors(tmp_path):
    with pytest.raises(DataFormatError, match="anno.json: field 'val': split not found"):
        read_snag_json(_write(tmp_path, ANNO), "val")
    with pytest.raises(DataFormatError, match="bad top level"):
        read_snag_json(_write(tmp_path, {"train": [1, 2]}))
    with pytest.raises(DataFormatError, match="required field missing"):
        read_snag_json(_write(tmp_path, {"train": {"v": {"fps": 1, "annotations": []}}}))
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DataFormatError, match="bad.json: invalid JSON"):
        read_snag_json(tmp_path / "bad.json")


def test_grid_known_values():
    # TACoS-like: 16-frame clips at an effective stride of 16 frames; the first feature is centred on frame 8
    kw = dict(fps=32.0, clip_size=16, stride=16)
    assert seconds_to_grid(0.25, **kw) == 0.0
    assert seconds_to_grid(0.0, **kw) == -0.5
    assert seconds_to_grid(1.25, **kw, vid_stride=2) == 1.0
    assert seconds_to_grid(100.0, **kw, num_frames=320) == 19.5  # clipped at the last frame
    assert grid_to_seconds(0.0, **kw) == 0.25
    assert grid_to_seconds(-3.0, **kw) == 0.0 and grid_to_seconds(100.0, **kw, duration=10.0) == 10.0


@settings(max_examples=60, deadline=None)
@given(t=st.floats(0, 500), fps=st.sampled_from([5.0, 25.0, 29.97, 30.0]), clip=st.sampled_from([1, 16, 32]),
       stride=st.sampled_from([1, 4, 8, 16]), vid_stride=st.sampled_from([1, 2]))
def test_grid_round_trip(t, fps, clip, stride, vid_stride):
    kw = dict(fps=fps, clip_size=clip, stride=stride, vid_stride=vid_stride)
    g = seconds_to_grid(t, **kw, num_frames=500 * fps)
    assert grid_to_seconds(g, **kw, duration=500.0) == pytest.approx(t, abs=1e-9)
    back = seconds_to_grid(grid_to_seconds(g, **kw), **kw)
    assert back == pytest.approx(g, abs=1e-9)


def test_grid_on_arrays_and_tensors():
    kw = dict(fps=30.0, clip_size=32, stride=16)
    ts = np.array([0.0, 1.0, 2.5])
    np.testing.assert_allclose(grid_to_seconds(seconds_to_grid(ts, **kw), **kw), ts)
    tt = torch.tensor([[0.5, 3.0]], dtype=torch.float64)
    out = grid_to_seconds(seconds_to_grid(tt, **kw, num_frames=300), **kw, duration=10.0)
    assert isinstance(out, torch.Tensor) and torch.allclose(out, tt)


def _feats(tmp_path, vids_lengths, dirs=(("f1", 4), ("f2", 2)), text_ids=()):
    rng = np.random.default_rng(0)
    for (d, c), extra in zip(dirs, (0, -1)):
        (tmp_path / d).mkdir(exist_ok=True)
        for vid, T in vids_lengths.items():
            np.save(tmp_path / d / f"{vid}.npy", rng.normal(size=(T + extra, c)))
    (tmp_path / "text").mkdir(exist_ok=True)
    for k, tid in enumerate(text_ids):
        torch.save(torch.randn(2 + k, 5), tmp_path / "text" / f"{tid}.pt")


def test_video_features_concat_and_pad(tmp_path):
    _feats(tmp_path, {"va": 6})
    x = load_snag_video_features([tmp_path / "f1", tmp_path / "f2"], "va")
    assert x.shape == (6, 6)
    np.testing.assert_array_equal(x[5, 4:], x[4, 4:])  # f2 was one row short: last row repeated
    assert load_snag_video_features([tmp_path / "f1"], "va", downsample=2).shape == (3, 4)
    np.save(tmp_path / "f2" / "va.npy", np.ones((3, 2)))
    with pytest.raises(DataFormatError) as ei:
        load_snag_video_features([tmp_path / "f1", tmp_path / "f2"], "va")
    assert "f2/va.npy" in str(ei.value) and "differ in length" in str(ei.value) and "video va" in str(ei.value)
    with pytest.raises(DataFormatError) as ei:
        load_snag_video_features([tmp_path / "f1"], "zz")
    assert "zz.npy" in str(ei.value) and "zz.pt" in str(ei.value) and "not found" in str(ei.value)
    with pytest.raises(DataFormatError, match=r"text id nope.*not found"):
        load_snag_text_features(tmp_path / "text", "nope")


def test_snag_dataset_and_collate(tmp_path):
    p = _write(tmp_path, ANNO)
    _feats(tmp_path, {"va": 18}, text_ids=["va_0000", "s_close"])
    ds = SnagDataset(p, "train", [tmp_path / "f1", tmp_path / "f2"], tmp_path / "text", clip_size=16,
                     clip_stride=16, text_dim=5)
    assert len(ds) == 1  # vb has no annotations
    item = ds[0]
    assert item["video"].shape == (18, 6) and [t.shape for t in item["texts"]] == [(2, 5), (3, 5)]
    np.testing.assert_allclose(item["segments"].numpy(), [[1, 3], [5, 10]])
    np.testing.assert_allclose(item["segments_grid"].numpy(), [[1.375, 5.125], [8.875, 18.25]])
    batch = SnagDataset.collate([item, item])
    assert batch["video"].shape == (2, 18, 6) and batch["text"].shape == (4, 3, 5)
    assert batch["query_index"].tolist() == [0, 0, 1, 1] and batch["text_mask"].sum(1).tolist() == [2, 3, 2, 3]
    assert batch["segments"].shape == (4, 2) and batch["text_ids"] == ["va_0000", "s_close"] * 2
    with pytest.raises(DataFormatError, match="text id va_0000.*dimension mismatch"):
        SnagDataset(p, "train", [tmp_path / "f1"], tmp_path / "text", clip_size=16, clip_stride=16,
                    text_dim=7)[0]
    empty = _write(tmp_path, {"train": {"vb": ANNO["train"]["vb"]}}, name="empty.json")
    with pytest.raises(DataFormatError, match="empty.json: field 'train': dataset is empty"):
        SnagDataset(empty, "train", [tmp_path / "f1"], tmp_path / "text", clip_size=16, clip_stride=16)
