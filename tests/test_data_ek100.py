"""EK100 CSV readers, timestamps, anticipation windows and EK100Dataset, on small CSVs written here."""
import csv

import numpy as np
import pytest
import torch

from vidmamba.data import (EK100_COLUMNS, DataFormatError, EK100Dataset, observed_rows, parse_timestamp,
                           read_ek100_annotations, read_ek100_classes)

ROWS = [
    ["P01_01_0", "P01", "P01_01", "00:00:01.000", "00:00:00.50", "00:00:02.25", "30", "135", "open door", "open",
     "3", "door", "8", "['door']", "[8]"],
    ["P01_01_1", "P01", "P01_01", "00:00:05.000", "00:00:05.000", "00:00:07.5", "300", "450",
     "take knife and fork", "take", "0", "knife", "4", "['knife', 'fork']", "[4, 9]"],
    ["P02_03_7", "P02", "P02_03", "00:01:02.1", "00:01:01.00", "00:01:03.00", "3660", "3780", "wash tap", "wash",
     "2", "tap", "0", "['tap']", "[0]"],
]


def _csv(path, rows, header=EK100_COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _classes(path, n, name="c"):
    return _csv(path, [[i, f"{name}{i}", str([f"{name}{i}", f"{name}{i}-syn"]), "cat"] for i in range(n)],
                header=("id", "key", "instances", "category"))


def test_parse_timestamp():
    assert parse_timestamp("00:00:01.089") == pytest.approx(1.089)
    assert parse_timestamp("01:02:03.50") == pytest.approx(3723.5)
    assert parse_timestamp("00:10:00") == 600.0
    for bad in ["1.5", "00:61:00.0", "aa:bb:cc", "", "00:00:-1.0"]:
        with pytest.raises(ValueError, match="bad timestamp"):
            parse_timestamp(bad)


def test_read_annotations(tmp_path):
    acts = read_ek100_annotations(_csv(tmp_path / "EPIC_100_train.csv", ROWS))
    assert [a.narration_id for a in acts] == ["P01_01_0", "P01_01_1", "P02_03_7"]
    a = acts[1]
    assert (a.start, a.stop, a.start_frame, a.stop_frame) == (5.0, 7.5, 300, 450)
    assert (a.verb, a.verb_class, a.noun, a.noun_class) == ("take", 0, "knife", 4)
    assert a.all_nouns == ["knife", "fork"] and a.all_noun_classes == [4, 9] and a.narration_time == 5.0
    assert acts[2].start == 61.0 and acts[2].line == 4


def test_read_label_free(tmp_path):
    cols = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame",
            "stop_frame")
    rows = [[r[0], r[1], r[2], r[4], r[5], r[6], r[7]] for r in ROWS]
    acts = read_ek100_annotations(_csv(tmp_path / "test.csv", rows, header=cols), labels=False)
    assert acts[0].verb_class is None and acts[0].stop == 2.25
    with pytest.raises(DataFormatError) as ei:
        read_ek100_annotations(tmp_path / "test.csv")
    assert "test.csv" in str(ei.value) and "missing columns" in str(ei.value) and "field 'narration_timestamp'" in str(ei.value)


def _row(k, v):
    r = list(ROWS[1])
    r[EK100_COLUMNS.index(k)] = v
    return r


@pytest.mark.parametrize("row,field,problem", [
    (_row("start_timestamp", "5s"), "start_timestamp", "bad timestamp"),
    (_row("stop_timestamp", "00:00:04.0"), "stop_timestamp", "zero or negative length"),
    (_row("stop_timestamp", "00:00:05.000"), "stop_timestamp", "zero or negative length"),
    (_row("start_frame", "-3"), "start_frame", "non-negative integer"),
    (_row("stop_frame", "10"), "stop_frame", "stop_frame before start_frame"),
    (_row("verb_class", "x"), "verb_class", "non-negative integer"),
    (_row("all_nouns", "knife, fork"), "all_nouns", "bad list"),
    (_row("all_noun_classes", "[4]"), "all_noun_classes", "differ in length"),
    (_row("all_noun_classes", "['4', '9']"), "all_noun_classes", "list literal of int"),
    (_row("video_id", " "), "video_id", "empty value"),
    (_row("narration_id", "P01_01_0"), "narration_id", "repeated narration_id"),
])
def test_annotation_errors(tmp_path, row, field, problem):
    p = _csv(tmp_path / "bad.csv", [ROWS[0], row])
    with pytest.raises(DataFormatError) as ei:
        read_ek100_annotations(p)
    msg = str(ei.value)
    for part in ("bad.csv", "line 3", f"field '{field}'", problem):
        assert part in msg, (part, msg)
    if field != "narration_id":
        assert "narration_id 'P01_01_1'" in msg


def test_ragged_and_empty_csv(tmp_path):
    with open(tmp_path / "r.csv", "w") as f:
        f.write(",".join(EK100_COLUMNS) + "\n" + "a,b,c\n")
    with pytest.raises(DataFormatError, match="r.csv: line 2: row does not have one value per column"):
        read_ek100_annotations(tmp_path / "r.csv")
    with pytest.raises(DataFormatError, match="e.csv: CSV has no data rows"):
        read_ek100_annotations(_csv(tmp_path / "e.csv", []))
    with pytest.raises(DataFormatError, match="none.csv: CSV file not found"):
        read_ek100_annotations(tmp_path / "none.csv")


def test_read_classes(tmp_path):
    classes = read_ek100_classes(_classes(tmp_path / "EPIC_100_verb_classes.csv", 4, "v"))
    assert [c.key for c in classes] == ["v0", "v1", "v2", "v3"] and classes[2].instances == ["v2", "v2-syn"]
    _csv(tmp_path / "gap.csv", [[0, "a", "['a']", "x"], [2, "b", "['b']", "x"]],
         header=("id", "key", "instances", "category"))
    with pytest.raises(DataFormatError, match="gap.csv: line 3: field 'id': class ids must be 0..N-1.*expected 1"):
        read_ek100_classes(tmp_path / "gap.csv")
    _csv(tmp_path / "inst.csv", [[0, "a", "a b", "x"]], header=("id", "key", "instances", "category"))
    with pytest.raises(DataFormatError, match="inst.csv: line 2: field 'instances': bad list"):
        read_ek100_classes(tmp_path / "inst.csv")


def test_observed_rows():
    assert observed_rows(5.0, fps=4, obs_seconds=2, tau_a=1.0) == (8, 16)  # [2 s, 4 s)
    assert observed_rows(1.5, fps=4, obs_seconds=2, tau_a=1.0) == (0, 2)  # clipped at 0: [0, 0.5 s)
    assert observed_rows(1.2, fps=4, obs_seconds=2, tau_a=1.0) == (0, 0)  # 0.2 s observed: no full row
    assert observed_rows(5.1, fps=4, obs_seconds=2, tau_a=1.0) == (9, 16)  # only rows wholly inside [2.1, 4.1]
    with pytest.raises(ValueError):
        observed_rows(5.0, fps=0, obs_seconds=2)


def test_recognition_dataset(tmp_path):
    p = _csv(tmp_path / "a.csv", ROWS)
    feats = tmp_path / "seg"
    feats.mkdir()
    for k, r in enumerate(ROWS):
        np.save(feats / f"{r[0]}.npy", np.full((3 + k, 8), float(k)))
    ds = EK100Dataset(p, feats, verb_classes=read_ek100_classes(_classes(tmp_path / "v.csv", 4)),
                      noun_classes=read_ek100_classes(_classes(tmp_path / "n.csv", 10)), feat_dim=8)
    item = ds[1]
    assert item["video"].shape == (4, 8) and item["verb"].item() == 0 and item["noun"].item() == 4
    batch = EK100Dataset.collate([ds[0], ds[1], ds[2]])
    assert batch["video"].shape == (3, 5, 8) and batch["video_mask"].sum(1).tolist() == [3, 4, 5]
    assert batch["verb"].tolist() == [3, 0, 2] and batch["verb"].dtype == torch.long
    assert batch["narration_id"] == ["P01_01_0", "P01_01_1", "P02_03_7"]
    with pytest.raises(DataFormatError) as ei:
        EK100Dataset(p, feats, noun_classes=read_ek100_classes(_classes(tmp_path / "n.csv", 5)))
    assert "a.csv" in str(ei.value) and "field 'noun_class'" in str(ei.value) and "P01_01_0" in str(ei.value)
    with pytest.raises(DataFormatError, match="a.csv: dataset is empty after filtering"):
        EK100Dataset(p, feats, video_ids=["P99_01"])
    (feats / "P01_01_0.npy").unlink()
    with pytest.raises(DataFormatError, match="P01_01_0.npy: narration_id P01_01_0.*not found"):
        ds[0]


def test_anticipation_dataset(tmp_path):
    p = _csv(tmp_path / "a.csv", ROWS)
    feats = tmp_path / "vid"
    feats.mkdir()
    np.save(feats / "P01_01.npy", np.arange(40, dtype=float)[:, None].repeat(2, 1))  # 10 s at 4 fps
    np.save(feats / "P02_03.npy", np.zeros((100, 2)))  # 25 s: too short for the action at 61 s
    ds = EK100Dataset(p, feats, mode="anticipation", fps=4, obs_seconds=2)
    assert ds.dropped == ["P01_01_0"]  # starts at 0.5 s < tau_a: nothing to observe
    item = ds[0]
    assert item["narration_id"] == "P01_01_1" and item["video"][:, 0].tolist() == list(range(8, 16))
    assert (item["obs_start"], item["obs_end"]) == (2.0, 4.0) and item["noun"].item() == 4
    with pytest.raises(DataFormatError) as ei:
        ds[1]
    msg = str(ei.value)
    assert "P02_03.npy" in msg and "too short" in msg and ">= 240 rows" in msg and "found 100 rows" in msg
    with pytest.raises(DataFormatError, match="line 2 .narration_id 'P01_01_0'.: field 'start_timestamp'"):
        EK100Dataset(p, feats, mode="anticipation", fps=4, obs_seconds=2, drop_unobservable=False)
    with pytest.raises(ValueError, match="fps and obs_seconds"):
        EK100Dataset(p, feats, mode="anticipation")
