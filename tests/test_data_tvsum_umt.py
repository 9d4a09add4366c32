"""TVSum in the UMT layout: the real data (skipped without ../shared/data) and synthetic error cases."""
import json

import numpy as np
import pytest

from vidmamba.data import (TVSUM_DOMAINS, DataFormatError, TVSumUMTDataset, load_tvsum_query_features,
                           load_tvsum_video_features, read_tvsum_annotations, read_tvsum_domain_splits)


@pytest.fixture
def umt(shared_data):
    return shared_data / "tvsum_umt"


def test_real_annotations_facts(umt):
    videos = read_tvsum_annotations(umt)
    lengths = [v.num_clips for v in videos.values()]
    assert len(videos) == 50 and sum(lengths) == 6266 and min(lengths) == 49 and max(lengths) == 323
    assert all(v.scores.shape[1] == 20 for v in videos.values())
    assert sorted({v.domain for v in videos.values()}) == list(TVSUM_DOMAINS)
    # the clip count rule: T = floor(frames / fps / 2) for every video
    assert all(v.num_clips == int(v.num_frames / v.fps // 2) for v in videos.values())


def test_real_domain_splits(umt):
    splits = read_tvsum_domain_splits(umt)
    assert sorted(splits) == list(TVSUM_DOMAINS)
    assert all(len(s["train"]) == 4 and len(s["val"]) == 1 for s in splits.values())
    every = [v for s in splits.values() for part in ("train", "val") for v in s[part]]
    assert len(set(every)) == 50


def test_real_features_match_annotation_lengths(umt):
    videos = read_tvsum_annotations(umt)
    for vid, v in videos.items():
        x = load_tvsum_video_features(umt, vid, v.num_clips)
        assert x.shape == (v.num_clips, 2048), vid
        rgb = np.load(umt / "video_features" / f"{vid}_rgb.npy")
        assert rgb.shape == (v.num_clips, 1024)  # no cutting needed for rgb / flow on the real data
        np.testing.assert_allclose(x[:, :1024], rgb.astype(np.float32))
    # the one audio stream with a trailing extra clip is cut to the annotation length
    assert np.load(umt / "audio_features" / "kLxoNp-UchI.npy").shape[0] == 65
    x = load_tvsum_video_features(umt, "kLxoNp-UchI", videos["kLxoNp-UchI"].num_clips, audio=True, normalize=True)
    assert x.shape == (64, 4096)
    np.testing.assert_allclose(np.linalg.norm(x[:, 1024:2048], axis=1), 1, rtol=1e-5)


def test_real_dataset(umt):
    ds = TVSumUMTDataset(umt, "VU", "val")
    assert len(ds) == 1 and ds.vids == ["sTEELN-vY30"] and ds.sample_lengths() == [74]
    item = ds[0]
    assert item["video"].shape == (74, 2048) and item["saliency_annotators"].shape == (74, 20)
    assert item["text"].shape[1] == 512 and item["query"] == "BBC - Train crash 2013"
    assert load_tvsum_query_features(umt, "sTEELN-vY30", key="text").shape == (1, 512)
    batch = TVSumUMTDataset.collate([ds[0], TVSumUMTDataset(umt, "VU", "train")[0]])
    assert batch["video_mask"].sum(1).tolist() == [74, 66]


def _tiny(root, T=3, rgb_rows=None, domain="BK", n=1):
    """Videos v1..vn of one domain; split: train = all but the last, val = the last (n = 1: v1 in both)."""
    root.mkdir(parents=True, exist_ok=True)
    vids = [f"v{i + 1}" for i in range(n)]
    anno = {v: {"fps": 30.0, "frames": str(T * 60 + 10), "domain": domain, "title": f"title {v}",
                "anno": [[1 + (i + j) % 5 for j in range(20)] for i in range(T)]} for v in vids}
    (root / "tvsum_anno.json").write_text(json.dumps(anno))
    split = {"train": vids[:-1] or vids, "val": vids[-1:]}
    (root / "tvsum_domain_splits.json").write_text(json.dumps({domain: split}))
    (root / "video_features").mkdir(exist_ok=True)
    (root / "query_features").mkdir(exist_ok=True)
    for v in vids:
        np.save(root / "video_features" / f"{v}_rgb.npy", np.ones((rgb_rows or T, 1024)))
        np.save(root / "video_features" / f"{v}_opt.npy", np.ones((T, 1024)))
        np.savez(root / "query_features" / f"{v}.npz", token=np.ones((2, 512), np.float16),
                 text=np.ones((1, 512), np.float16))
    return root


def test_feature_length_mismatch_error(tmp_path):
    root = _tiny(tmp_path / "d", T=3, rgb_rows=5)
    with pytest.raises(DataFormatError) as ei:
        load_tvsum_video_features(root, "v1", 3)
    msg = str(ei.value)
    assert "v1_rgb.npy" in msg and "video v1" in msg and "3 rows" in msg and "found 5 rows" in msg
    root = _tiny(tmp_path / "e", T=3, rgb_rows=4)  # one trailing extra row is cut
    assert load_tvsum_video_features(root, "v1", 3).shape == (3, 2048)


def test_split_errors(tmp_path):
    root = _tiny(tmp_path / "d")
    with pytest.raises(DataFormatError) as ei:
        read_tvsum_domain_splits(root)
    assert "tvsum_domain_splits.json" in str(ei.value) and "listed twice" in str(ei.value)
    (root / "tvsum_domain_splits.json").write_text(json.dumps({"BT": {"train": ["v1"], "val": ["v9"]}}))
    with pytest.raises(DataFormatError, match="domain BT: field 'train': video listed under the wrong domain"):
        read_tvsum_domain_splits(root)
    (root / "tvsum_domain_splits.json").write_text(json.dumps({"BK": {"train": ["v9"], "val": ["v1"]}}))
    with pytest.raises(DataFormatError, match="domain BK: field 'train': video not in tvsum_anno.json"):
        read_tvsum_domain_splits(root)
    (root / "tvsum_domain_splits.json").write_text(json.dumps({"BK": {"train": ["v1"]}}))
    with pytest.raises(DataFormatError, match="domain BK: bad split entry"):
        read_tvsum_domain_splits(root)


def test_annotation_errors(tmp_path):
    root = _tiny(tmp_path / "d", domain="ZZ")
    with pytest.raises(DataFormatError, match="tvsum_anno.json: video v1: field 'domain': unknown domain"):
        read_tvsum_annotations(root)
    anno = json.loads((root / "tvsum_anno.json").read_text())
    anno["v1"]["domain"] = "BK"
    anno["v1"]["anno"][1][3] = 9
    (root / "tvsum_anno.json").write_text(json.dumps(anno))
    with pytest.raises(DataFormatError, match="video v1: field 'anno': annotator score out of range"):
        read_tvsum_annotations(root)
    del anno["v1"]["fps"]
    (root / "tvsum_anno.json").write_text(json.dumps(anno))
    with pytest.raises(DataFormatError, match="video v1: field 'fps': required field missing"):
        read_tvsum_annotations(root)
    (root / "tvsum_anno.json").write_text("{broken")
    with pytest.raises(DataFormatError, match="tvsum_anno.json: invalid JSON"):
        read_tvsum_annotations(root)


def test_synthetic_dataset_and_errors(tmp_path):
    root = _tiny(tmp_path / "d", n=3)
    ds = TVSumUMTDataset(root, "BK", "train", normalize=True)
    assert ds.vids == ["v1", "v2"] and ds[1]["query"] == "title v2" and ds[1]["video"].shape == (3, 2048)
    np.testing.assert_allclose(np.linalg.norm(ds[0]["video"][:, :1024].numpy(), axis=1), 1, rtol=1e-5)
    with pytest.raises(DataFormatError) as ei:
        TVSumUMTDataset(root, "PK", "val")
    assert "tvsum_domain_splits.json" in str(ei.value) and "domain PK" in str(ei.value)
    with pytest.raises(ValueError, match="split"):
        TVSumUMTDataset(root, "BK", "test")
    (root / "query_features" / "v3.npz").unlink()
    with pytest.raises(DataFormatError, match="v3.npz: video v3: field 'token': feature file not found"):
        TVSumUMTDataset(root, "BK", "val")[0]


def test_foreground_is_above_median_and_windows_are_its_runs(tmp_path):
    root = _tiny(tmp_path / "d", T=5, n=2)
    anno = json.loads((root / "tvsum_anno.json").read_text())
    anno["v2"]["anno"] = [[s] * 20 for s in (4, 1, 3, 5, 2)]      # mean scores 4 1 3 5 2: median 3
    (root / "tvsum_anno.json").write_text(json.dumps(anno))
    item = TVSumUMTDataset(root, "BK", "val")[0]
    assert item["foreground"].tolist() == [True, False, False, True, False]   # median 3 itself is not above
    assert item["windows"].tolist() == [[0.0, 2.0], [6.0, 8.0]]                # 2-s clips 0 and 3
    np.testing.assert_allclose(item["windows_norm"].numpy(), [[0.0, 0.2], [0.6, 0.8]])
