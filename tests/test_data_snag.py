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
    assert va.queries[0].context is None
    ctx = _bad({"context": [-1.0, 2.5]})
    assert read_snag_json(_write(tmp_path, ctx, "ctx.json"))["train"][0].queries[1].context == (0.0, 2.5)  # clipped


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
    (_bad({"context": [6.0, "7"]}), "context", "two finite numbers"),
    (_bad({"context": [11.0, 12.0]}), "context", "zero length after clipping"),
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


# ------------------------------------------------------------------ training samples: grouping and truncation
from vidmamba.data.snag import SnagTrainDataset, group_queries, threshold_window, truncation_window  # noqa: E402


def test_group_queries_greedy_by_start():
    spans = [(50.0, 52.0), (0.0, 3.0), (5.0, 9.5), (9.0, 12.0), (40.0, 41.0)]
    # sorted by start: 1 (0-3), 2 (5-9.5), 3 (9-12), 4 (40-41), 0 (50-52); window 11 -> ends within 10 of the start
    assert group_queries(spans, 11) == [[1, 2], [3], [4], [0]]
    assert group_queries(spans, 13) == [[1, 2, 3], [4, 0]]
    assert group_queries(spans, None) == [[1, 2, 3, 4, 0]]
    assert group_queries([], 5) == []


@settings(max_examples=80, deadline=None)
@given(T=st.integers(20, 400), length=st.integers(8, 60), align=st.sampled_from([1, 2]), data=st.data())
def test_truncation_window_keeps_spans(T, length, align, data):
    start = data.draw(st.floats(-0.5, T - 1.5))
    end = data.draw(st.floats(start + 0.1, min(T - 0.5, start + length - 1)))
    spans = np.array([[start, end]])
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 1000)))
    a = truncation_window(T, spans, length, gen, align=align)
    assert a % align == 0 and 0 <= a
    if length >= T:
        assert a == 0
        return
    assert a + length <= T
    feasible = [b for b in range(0, T - length + 1, align) if b - 0.5 <= start and end <= b + length - 0.5]
    if feasible:  # the span lies inside the window whenever some aligned window can hold it
        assert a - 0.5 <= start and end <= a + length - 0.5


def test_truncation_window_span_past_the_last_aligned_start():
    """A span at the very end of the video that no aligned window can reach (found by hypothesis: T 202, window 9,
    align 2, span [200.5, 201]): the last aligned window, not None."""
    assert truncation_window(202, np.array([[200.5, 201.0]]), 9, torch.Generator().manual_seed(0), align=2) == 192


def test_truncation_window_is_uniform_over_feasible_starts():
    # span [10, 14] in a 100-clip video, window 8: starts 7..10 keep it (b - .5 <= 10, 14 <= b + 7.5)
    gen = torch.Generator().manual_seed(0)
    starts = [truncation_window(100, np.array([[10.0, 14.0]]), 8, gen) for _ in range(400)]
    assert set(starts) == {7, 8, 9, 10}
    assert min(starts.count(s) for s in (7, 8, 9, 10)) > 60
    # spans too far apart for one window: the window overlaps both centres when it can
    # (full containment needs a <= 2.5 and a >= 3.5; centres 3 and 12 need a in [2.5, 3.5])
    assert truncation_window(100, np.array([[2.0, 4.0], [11.0, 13.0]]), 10, gen) == 3


def _long_video(tmp_path, T=40, fps=2.0):
    """One video of T clips (clip_size = stride = 1 frame at fps 2 -> clip i centred at (i + .5) / 2 s) whose
    feature row i is [i, -i], with three queries."""
    anno = {"train": {"lv": {"fps": fps, "duration": T / fps, "annotations": [
        {"segment": [5.0, 6.5], "sentence": "a"}, {"segment": [7.0, 8.0], "sentence": "b"},
        {"segment": [18.0, 19.5], "sentence": "c"}]}}}
    p = _write(tmp_path, anno)
    (tmp_path / "v").mkdir()
    np.save(tmp_path / "v" / "lv.npy", np.stack([np.arange(T), -np.arange(T)], 1).astype(np.float32))
    (tmp_path / "t").mkdir()
    for i in range(3):
        np.save(tmp_path / "t" / f"lv_{i:04d}.npy", np.full((2, 3), i, dtype=np.float32))
    return p


@pytest.mark.parametrize("vid_stride", [1, 2])
def test_snag_train_dataset_truncation_keeps_gt_and_shifts_grid(tmp_path, vid_stride):
    p = _long_video(tmp_path)
    kw = dict(clip_size=1, clip_stride=1, vid_stride=vid_stride)
    full = SnagDataset(p, "train", [tmp_path / "v"], tmp_path / "t", **kw)[0]
    ds = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", max_clips=12, max_queries=1, **kw)
    # grid (input clips) of the queries: [9.5, 12.5], [13.5, 15.5], [35.5, 38.5]; window 12 -> groups {a, b}, {c}
    np.testing.assert_allclose(full["segments_grid"].numpy() * vid_stride, [[9.5, 12.5], [13.5, 15.5], [35.5, 38.5]])
    assert [g for _, g in ds.samples] == [[0, 1], [2]]
    torch.manual_seed(0)
    seen_offsets, seen_queries = set(), set()
    for _ in range(60):
        for index in range(len(ds)):
            item = ds[index]
            T = item["video"].shape[0]
            assert T == 12 and len(item["texts"]) == 1 and item["offset"] % vid_stride == 0
            q = int(item["texts"][0][0, 0])
            seen_offsets.add(item["offset"]), seen_queries.add(q)
            g = item["segments_grid"][0].double() * vid_stride  # input-clip units inside the window
            g_full = full["segments_grid"][q].double() * vid_stride
            assert torch.allclose(g, g_full - item["offset"])  # shifted, not clipped: the GT is kept whole
            assert -0.5 <= g[0] and g[1] <= T - 0.5
            # the clip at the window's GT start is the clip at the full video's GT start
            assert item["video"][int(g[0] + 0.5), 0] == int(g_full[0] + 0.5)
            assert item["segments"][0].tolist() == list(full["segments"][q].tolist())  # seconds unchanged
    assert seen_queries == {0, 1, 2} and len(seen_offsets) > 3


def test_snag_train_dataset_windows_keep_the_context_when_it_fits(tmp_path):
    """Query "a" (input clips 10-12) depends on a context at clips 28-29: a window keeps both whenever they fit
    (every start a with a <= 10 and a + L - 1 >= 29, drawn uniformly), else only the ground truth (as without a
    context); groups are formed over ground truth and context where those fit in a window."""
    p = _long_video(tmp_path)
    anno = json.loads(p.read_text())
    anno["train"]["lv"]["annotations"][0]["context"] = [14.0, 15.0]  # clips 28, 29 (clip i = [i / 2, (i + 1) / 2] s)
    p.write_text(json.dumps(anno))
    kw = dict(clip_size=1, clip_stride=1, max_queries=1)
    for L, groups, starts in ((24, [[0, 1], [2]], set(range(6, 11))), (12, [[0, 1], [2]], set(range(1, 11)))):
        ds = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", max_clips=L, **kw)
        assert [g for _, g in ds.samples] == groups
        torch.manual_seed(0)
        seen = set()
        for _ in range(200):
            item = ds[0]
            if item["text_ids"] == ["lv_0000"]:
                seen.add(item["offset"])
        assert seen == starts, L


def test_snag_train_dataset_crop_ratio_and_errors(tmp_path):
    p = _long_video(tmp_path)
    ds = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", clip_size=1, clip_stride=1,
                          crop_ratio=[0.5, 0.6])
    assert len(ds) == 1 and ds.samples[0][1] == [0, 1, 2]  # no max_clips: one group of all queries
    torch.manual_seed(1)
    # all three spans (input clips 9.5 .. 38.5) need 29 clips: the crop never cuts them
    for _ in range(10):
        item = ds[0]
        assert item["video"].shape[0] == 29
        np.testing.assert_allclose(item["segments_grid"].numpy() + item["offset"],
                                   [[9.5, 12.5], [13.5, 15.5], [35.5, 38.5]])
    one = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", clip_size=1, clip_stride=1,
                           crop_ratio=[0.5, 0.6], max_queries=1)  # one short span: crops of 20..24 clips
    lengths = {one[0]["video"].shape[0] for _ in range(30)}
    assert lengths <= set(range(20, 25)) and len(lengths) > 2
    with pytest.raises(ValueError, match="crop_ratio"):
        SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", clip_size=1, clip_stride=1, crop_ratio=[0, 1])
    with pytest.raises(ValueError, match="max_clips"):
        SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", clip_size=1, clip_stride=1, max_clips=0)


# ------------------------------------------------------------------ the official crop rule (trunc_thresh)
def _kept_fraction(a, length, span):
    """Plain-Python share of ``span`` (input clips) inside the window of clips ``a .. a + length - 1``."""
    lo, hi = max(span[0], a - 0.5), min(span[1], a + length - 0.5)
    return max(hi - lo, 0.0) / max(span[1] - span[0], 1e-5)


@settings(max_examples=60, deadline=None)
@given(T=st.integers(12, 80), length=st.integers(4, 30), align=st.sampled_from([1, 2]),
       thresh=st.sampled_from([0.0, 0.3, 0.5, 0.9]), data=st.data())
def test_threshold_window_is_uniform_over_the_starts_a_loop_accepts(T, length, align, thresh, data):
    """Brute force: every aligned start that keeps more than ``thresh`` of each span, and only those, is drawn."""
    spans = []
    for _ in range(data.draw(st.integers(1, 3))):
        s = data.draw(st.floats(-0.5, T - 1.0))
        spans.append((s, data.draw(st.floats(s + 0.1, T - 0.5))))
    valid = [a for a in range(0, max(T - length, 0) + 1, align)
             if length >= T or all(_kept_fraction(a, length, sp) > thresh for sp in spans)]
    gen = torch.Generator().manual_seed(0)
    draws = [threshold_window(T, np.array(spans), length, thresh, gen, align=align) for _ in range(300)]
    if length >= T:
        assert set(draws) == {0}
    elif not valid:
        assert set(draws) == {None}
    else:
        assert set(draws) == set(valid) if len(valid) <= 20 else set(draws) <= set(valid)


def test_snag_train_dataset_trunc_thresh_cuts_ground_truth_but_keeps_more_than_the_threshold(tmp_path):
    p = _long_video(tmp_path)
    kw = dict(clip_size=1, clip_stride=1, max_clips=12, max_queries=1)
    whole = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", **kw)
    cut = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", trunc_thresh=0.5, **kw)
    full = [[9.5, 12.5], [13.5, 15.5], [35.5, 38.5]]            # input clips of the three queries
    torch.manual_seed(0)
    fractions = {"whole": [], "cut": []}
    for name, ds in (("whole", whole), ("cut", cut)):
        for _ in range(80):
            for index in range(len(ds)):
                item = ds[index]
                q = int(item["texts"][0][0, 0])
                fractions[name].append(_kept_fraction(item["offset"], 12, full[q]))
    assert min(fractions["whole"]) == 1.0                       # default: the ground truth is never cut
    assert min(fractions["cut"]) > 0.5 and min(fractions["cut"]) < 1.0
    with pytest.raises(ValueError, match="trunc_thresh"):
        SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", trunc_thresh=1.0, **kw)


def test_trunc_thresh_crop_may_be_shorter_than_the_ground_truth(tmp_path):
    """With a crop ratio, the default lengthens a crop to hold the ground truth; trunc_thresh keeps the drawn length
    and cuts instead (crops of 40 * [0.05, 0.06] -> 2 clips; spans of 3, 2 and 3 clips)."""
    p = _long_video(tmp_path)
    kw = dict(clip_size=1, clip_stride=1, crop_ratio=[0.05, 0.06], max_queries=1)
    torch.manual_seed(2)
    whole = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", **kw)
    cut = SnagTrainDataset(p, "train", [tmp_path / "v"], tmp_path / "t", trunc_thresh=0.3, **kw)
    assert {whole[i]["video"].shape[0] for i in range(len(whole)) for _ in range(10)} == {2, 3}
    assert {cut[i]["video"].shape[0] for i in range(len(cut)) for _ in range(10)} == {2}
