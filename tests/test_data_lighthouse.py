"""lighthouse / moment_detr jsonl reader, feature loading and MomentDataset."""
import json

import numpy as np
import pytest
import torch

from vidmamba.data import (DataFormatError, MomentDataset, get_dataset_spec, load_text_features,
                           load_video_features, read_moment_jsonl, windows_to_foreground)

REAL = [("annotations/charades_test_release.jsonl", "charades", 3720),
        ("annotations/tacos_test_release.jsonl", "tacos", 4001),
        ("annotations/tvsum_val_release.jsonl", "tvsum", 10),
        ("qvhighlights_eval/highlight_val_release.jsonl", "qvhighlight", 1550)]


@pytest.mark.parametrize("rel,dataset,count", REAL)
def test_real_annotation_files_parse(shared_data, rel, dataset, count):
    anns = read_moment_jsonl(shared_data / rel, dataset=dataset, window_tol=0.0)
    assert len(anns) == count
    assert all(a.query.strip() and a.duration > 0 for a in anns)
    if dataset == "tvsum":
        assert all(a.windows is None and a.label.shape == (int(a.duration), 20) for a in anns)
        assert all(a.domain is not None for a in anns)
    else:
        assert all(a.windows and all(0 <= s < e <= a.duration for s, e in a.windows) for a in anns)


def test_real_qvh_clip_ids_match_windows(shared_data):
    """The foreground rule (clip overlaps a window) reproduces relevant_clip_ids on every QVHighlights query."""
    anns = read_moment_jsonl(shared_data / "qvhighlights_eval/highlight_val_release.jsonl", dataset="qvhighlight")
    for a in anns:
        fg = windows_to_foreground(a.windows, int(np.ceil(a.duration / 2)), 2.0)
        assert np.flatnonzero(fg).tolist() == sorted(a.clip_ids), a.qid
        assert len(a.saliency_scores) == len(a.clip_ids) and len(a.saliency_scores[0]) == 3


def test_real_tvsum_label_equals_umt_anno(shared_data):
    anns = read_moment_jsonl(shared_data / "annotations/tvsum_val_release.jsonl", dataset="tvsum")
    umt = json.loads((shared_data / "tvsum_umt/tvsum_anno.json").read_text())
    for a in anns:
        np.testing.assert_array_equal(a.label, np.asarray(umt[a.vid]["anno"], dtype=np.float32))
        assert a.domain == umt[a.vid]["domain"] and a.query == umt[a.vid]["title"]


def test_dataset_specs():
    assert {n: get_dataset_spec(n).clip_length for n in
            ["qvhighlights", "charades", "tacos", "tvsum", "youtube"]} == {
        "qvhighlights": 2.0, "charades": 1.0, "tacos": 2.0, "tvsum": 2.0, "youtube": 1.0}
    with pytest.raises(ValueError, match="unknown"):
        get_dataset_spec("nope")


GOOD = {"qid": 7, "query": "a man walks", "vid": "v1", "duration": 10,
        "relevant_windows": [[2, 6]], "relevant_clip_ids": [1, 2], "saliency_scores": [[1, 2, 3], [4, 4, 4]]}


def _write(tmp_path, *recs, name="a.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in recs) + "\n")
    return p


@pytest.mark.parametrize("change,field,problem", [
    ({"qid": True}, "qid", "bad value"),
    ({"query": "  "}, "query", "non-empty string"),
    ({"vid": 3}, "vid", "bad value"),
    ({"duration": 0}, "duration", "positive"),
    ({"duration": "10"}, "duration", "positive"),
    ({"relevant_windows": [[2, 11]]}, "relevant_windows", "outside the video"),
    ({"relevant_windows": [[-1, 3]]}, "relevant_windows", "outside the video"),
    ({"relevant_windows": [[4, 4]]}, "relevant_windows", "zero or negative length"),
    ({"relevant_windows": [[4]]}, "relevant_windows", "bad window 0"),
    ({"relevant_windows": "2-6"}, "relevant_windows", "list of [start, end]"),
    ({"relevant_clip_ids": [1, 1]}, "relevant_clip_ids", "repeated"),
    ({"relevant_clip_ids": [1, 5]}, "relevant_clip_ids", "beyond the end"),
    ({"relevant_clip_ids": [1, -2]}, "relevant_clip_ids", "integer >= 0"),
    ({"saliency_scores": [[1, 2, 3]]}, "saliency_scores", "differ in length"),
    ({"saliency_scores": [[1, 2, 3], [1, 2]]}, "saliency_scores", "ragged"),
    ({"relevant_clip_ids": None}, "relevant_clip_ids", "without relevant_clip_ids"),
    ({"label": [[1, 2], [3]]}, "label", "ragged"),
    ({"label": [[1, "x"]]}, "label", "bad row 0"),
])
def test_annotation_errors_name_file_qid_field(tmp_path, change, field, problem):
    p = _write(tmp_path, GOOD, {**GOOD, "qid": 8, **change})
    with pytest.raises(DataFormatError) as ei:
        read_moment_jsonl(p, dataset="qvhighlight", window_tol=0.5)
    msg = str(ei.value)
    for part in ("a.jsonl", "line 2", "qid 8" if field != "qid" else "line 2", f"field '{field}'", problem):
        assert part in msg, (part, msg)


def test_file_level_errors(tmp_path):
    with pytest.raises(DataFormatError, match="line 2.*invalid JSON"):
        read_moment_jsonl(_write(tmp_path, GOOD, "{not json"))
    with pytest.raises(DataFormatError, match="line 1.*not a JSON object"):
        read_moment_jsonl(_write(tmp_path, "[1, 2]"))
    with pytest.raises(DataFormatError, match="line 2: field 'qid': repeated qid.*also on line 1"):
        read_moment_jsonl(_write(tmp_path, GOOD, GOOD))
    with pytest.raises(DataFormatError, match="field 'qid': required field missing"):
        read_moment_jsonl(_write(tmp_path, {k: v for k, v in GOOD.items() if k != "qid"}))
    with pytest.raises(DataFormatError, match="qid 7.*field 'duration': required field missing"):
        read_moment_jsonl(_write(tmp_path, {k: v for k, v in GOOD.items() if k != "duration"}))
    with pytest.raises(DataFormatError, match="empty.jsonl: no annotations"):
        read_moment_jsonl(_write(tmp_path, "", name="empty.jsonl"))
    with pytest.raises(DataFormatError, match="missing.jsonl: annotation file not found"):
        read_moment_jsonl(tmp_path / "missing.jsonl")


def test_window_tolerance_clips(tmp_path):
    p = _write(tmp_path, {**GOOD, "relevant_windows": [[-0.2, 3], [8, 10.3]]})
    a = read_moment_jsonl(p, window_tol=0.5)[0]
    assert a.windows == [(0.0, 3.0), (8.0, 10.0)]
    with pytest.raises(DataFormatError, match="qid 7.*outside the video"):
        read_moment_jsonl(p, window_tol=0.1)
    test_split = read_moment_jsonl(_write(tmp_path, {"qid": 1, "query": "q", "vid": "v", "duration": 5}))[0]
    assert test_split.windows is None and test_split.clip_ids is None and test_split.extra == {}


def _features(root, vid, T, dims=(("clip", 4), ("slowfast", 3)), seed=0):
    rng = np.random.default_rng(seed)
    for (ftype, d), extra in zip(dims, range(len(dims))):
        (root / ftype).mkdir(parents=True, exist_ok=True)
        np.savez(root / ftype / f"{vid}.npz", features=rng.normal(size=(T + extra, d)) * 5)


def _text(root, name, L, key="last_hidden_state", d=6):
    (root / "txt").mkdir(parents=True, exist_ok=True)
    np.savez(root / "txt" / name, **{key: np.random.default_rng(1).normal(size=(L, d)) * 3})


def test_load_video_features_per_type_norm_then_truncate(tmp_path):
    _features(tmp_path, "v1", 5)
    x = load_video_features(tmp_path, ["clip", "slowfast"], "v1")
    assert x.shape == (5, 7) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x[:, :4], axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(x[:, 4:], axis=1), 1, rtol=1e-5)
    raw = load_video_features(tmp_path, ["slowfast"], "v1", normalize=False)
    assert raw.shape == (6, 3) and np.linalg.norm(raw, axis=1).max() > 2
    with pytest.raises(DataFormatError) as ei:
        load_video_features(tmp_path, ["clip"], "v1", dims=[5])
    assert "clip/v1.npz" in str(ei.value) and "(T, 5)" in str(ei.value) and "vid v1" in str(ei.value)
    with pytest.raises(DataFormatError, match="missing_type/v1.npz.*not found"):
        load_video_features(tmp_path, ["clip", "missing_type"], "v1")


def test_load_text_features_naming(tmp_path):
    _text(tmp_path, "qid7.npz", 4)
    t = load_text_features(tmp_path, "txt", 7, dataset="qvhighlight", max_len=3)
    assert t.shape == (3, 6)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, rtol=1e-5)
    _text(tmp_path, "s1-d2_0.npz", 2)
    assert load_text_features(tmp_path, "txt", "s1-d2_0", dataset="tacos").shape == (2, 6)
    _text(tmp_path, "vidX.npz", 3, key="token")
    t = load_text_features(tmp_path, "txt", "vidX", dataset="tvsum")
    assert np.linalg.norm(t, axis=1).max() > 1.5  # TVSum tokens are not normalised (lighthouse)
    with pytest.raises(DataFormatError) as ei:
        load_text_features(tmp_path, "txt", 99)
    assert "qid99.npz" in str(ei.value) and "qid 99" in str(ei.value) and "last_hidden_state" in str(ei.value)


def _qvh_setup(tmp_path, T=5):
    recs = [GOOD, {**GOOD, "qid": 8, "vid": "v2", "relevant_windows": [[0, 2], [6, 10]],
                   "relevant_clip_ids": [0, 3, 4], "saliency_scores": [[1, 1, 1], [2, 2, 2], [3, 3, 4]]}]
    p = _write(tmp_path, *recs)
    _features(tmp_path, "v1", T)
    _features(tmp_path, "v2", T - 2)
    _text(tmp_path, "qid7.npz", 4)
    _text(tmp_path, "qid8.npz", 2)
    return p


def test_moment_dataset_item_and_collate(tmp_path):
    p = _qvh_setup(tmp_path)
    ds = MomentDataset(p, tmp_path, ["clip", "slowfast"], "txt", dataset="qvhighlight", use_tef=True)
    a = ds[0]
    assert a["video"].shape == (5, 9) and a["text"].shape == (4, 6)
    assert ds.sample_lengths() == [5, 5]  # from the annotations (10 s / 2 s), before any feature file is read
    np.testing.assert_allclose(a["video"][:, -2:].numpy(), [[i / 5, (i + 1) / 5] for i in range(5)], rtol=1e-6)
    assert a["windows"].tolist() == [[2.0, 6.0]]
    np.testing.assert_allclose(a["windows_norm"].numpy(), [[0.2, 0.6]])
    assert a["foreground"].tolist() == [False, True, True, False, False]
    np.testing.assert_allclose(a["saliency_annotators"][1:3].numpy(), [[1, 2, 3], [4, 4, 4]])
    np.testing.assert_allclose(a["saliency"].numpy(), [0, 2, 4, 0, 0])
    # v2 has 3 feature clips: clip id 3 is one past the end (dropped), id 4 is an error
    ds2 = MomentDataset([ds.annotations[1]], tmp_path, ["clip", "slowfast"], "txt", dataset="qvhighlight",
                        use_tef=True)
    with pytest.raises(DataFormatError) as ei:
        ds2[0]
    msg = str(ei.value)
    assert "clip/v2.npz" in msg and "qid 8" in msg and "relevant_clip_ids" in msg and "id 4" in msg
    ds2.annotations[0].clip_ids = [0, 3]
    ds2.annotations[0].saliency_scores = [[1, 1, 1], [2, 2, 2]]
    b = ds2[0]
    assert b["saliency"].tolist() == [1, 0, 0] and b["foreground"].tolist() == [True, False, False]
    batch = MomentDataset.collate([a, b])
    assert batch["video"].shape == (2, 5, 9) and batch["video_mask"].sum(1).tolist() == [5, 3]
    assert batch["text"].shape == (2, 4, 6) and batch["text_mask"].sum(1).tolist() == [4, 2]
    assert batch["windows"].shape == (2, 2, 2) and batch["windows_mask"].tolist() == [[True, False], [True, True]]
    assert batch["qid"] == [7, 8] and batch["saliency"].shape == (2, 5)


def test_moment_dataset_label_and_domain(tmp_path):
    lab = np.arange(1, 41, dtype=float).reshape(4, 10) % 5 + 1
    recs = [{"qid": "vA", "query": "title", "vid": "vA", "duration": 4, "label": lab.tolist(), "domain": "BK",
             "relevant_windows": None, "relevant_clip_ids": None},
            {"qid": "vB", "query": "t2", "vid": "vB", "duration": 4, "label": lab.tolist(), "domain": "BT"}]
    p = _write(tmp_path, *recs)
    (tmp_path / "i3d").mkdir()
    np.savez(tmp_path / "i3d" / "vA.npz", features=np.ones((5, 2)))  # one clip longer than the label: cut
    np.savez(tmp_path / "i3d" / "vB.npz", features=np.ones((7, 2)))  # three longer: error
    _text(tmp_path, "vA.npz", 3, key="token")
    _text(tmp_path, "vB.npz", 3, key="token")
    ds = MomentDataset(p, tmp_path, ["i3d"], "txt", dataset="tvsum", domain="BK")
    assert len(ds) == 1 and ds.sample_lengths() == [4]  # the label's rows
    item = ds[0]
    assert item["video"].shape == (4, 2) and item["saliency_annotators"].shape == (4, 10)
    # every clip has mean score 3 = the median: no clip is above it, so no foreground and no window
    assert item["foreground"].tolist() == [False] * 4 and item["windows"].shape == (0, 2)
    np.testing.assert_allclose(item["saliency"].numpy(), lab.mean(1))
    with pytest.raises(DataFormatError) as ei:
        MomentDataset(p, tmp_path, ["i3d"], "txt", dataset="tvsum", domain="BT")[0]
    assert "vB.npz" in str(ei.value) and "field 'label'" in str(ei.value) and "4 rows" in str(ei.value)
    with pytest.raises(DataFormatError) as ei:
        MomentDataset(p, tmp_path, ["i3d"], "txt", dataset="tvsum", domain="XX")
    assert "a.jsonl" in str(ei.value) and "empty after filtering" in str(ei.value) and "'XX'" in str(ei.value)


def test_moment_dataset_uses_torch_tensors(tmp_path):
    p = _qvh_setup(tmp_path)
    item = MomentDataset(p, tmp_path, ["clip"], "txt", dataset="qvhighlight")[0]
    assert all(item[k].dtype == torch.float32 for k in ("video", "text", "windows", "saliency"))


def test_training_lines_without_windows_are_named(tmp_path):
    """A moment-retrieval line without relevant_windows: an error naming the file and the line (not a collate error)."""
    p = _write(tmp_path, GOOD, {**GOOD, "qid": 8, "relevant_windows": None, "relevant_clip_ids": None,
                                "saliency_scores": None})
    with pytest.raises(DataFormatError) as ei:
        MomentDataset(p, tmp_path, ["clip"], "txt", dataset="qvhighlight", require_targets=True)
    msg = str(ei.value)
    assert msg.startswith(str(p)) and "line 2 (qid 8): field 'relevant_windows': required field missing" in msg
    assert "(expected it on every line of qvhighlight training data, found absent or null)" in msg and "\n" not in msg
    # evaluation (no require_targets): a file mixing lines with and without windows still cannot be batched
    with pytest.raises(DataFormatError, match=r"line 2 \(qid 8\): field 'relevant_windows'.*as line 1 has it"):
        MomentDataset(p, tmp_path, ["clip"], "txt", dataset="qvhighlight")
    # a test split without any windows (or saliency) is fine without require_targets, an error with it
    bare = {k: GOOD[k] for k in ("qid", "query", "vid", "duration")}
    p = _write(tmp_path, bare, {**bare, "qid": 8}, name="test.jsonl")
    assert len(MomentDataset(p, tmp_path, ["clip"], "txt", dataset="charades")) == 2
    with pytest.raises(DataFormatError, match=r"test.jsonl: line 1 \(qid 7\): field 'relevant_windows'"):
        MomentDataset(p, tmp_path, ["clip"], "txt", dataset="charades", require_targets=True)


def test_saliency_on_some_lines_only_is_named(tmp_path):
    p = _write(tmp_path, GOOD, {**GOOD, "qid": 8, "relevant_clip_ids": None, "saliency_scores": None})
    with pytest.raises(DataFormatError, match=r"a.jsonl: line 2 \(qid 8\): field 'saliency_scores'.*line 1 has it"):
        MomentDataset(p, tmp_path, ["clip"], "txt", dataset="qvhighlight")
