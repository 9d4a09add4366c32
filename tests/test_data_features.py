"""Feature-file loading, validation errors, normalisation, length alignment, tef, padding/collation."""
import numpy as np
import pytest
import torch

from vidmamba.data import (DataFormatError, align_lengths, collate_padded, find_feature_file, l2_normalize,
                           load_feature_array, pad_sequences, temporal_endpoint_features)


def _err(excinfo, *parts):
    msg = str(excinfo.value)
    for p in parts:
        assert str(p) in msg, f"{p!r} not in {msg!r}"
    return msg


def test_error_message_parts():
    e = DataFormatError("/x/a.jsonl", "bad value", item="line 3 (qid 7)", field="duration", expected="> 0",
                        found="-1")
    assert isinstance(e, ValueError)
    assert str(e) == "/x/a.jsonl: line 3 (qid 7): field 'duration': bad value (expected > 0, found -1)"
    assert (e.file, e.item, e.field) == ("/x/a.jsonl", "line 3 (qid 7)", "duration")


def test_load_npy_npz_pt(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 3))
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", features=x)
    torch.save(torch.from_numpy(x), tmp_path / "c.pt")
    torch.save({"features": torch.from_numpy(x)}, tmp_path / "d.pt")
    for name, key in [("a.npy", None), ("b.npz", "features"), ("c.pt", None), ("d.pt", "features")]:
        out = load_feature_array(tmp_path / name, key=key, dim=3)
        assert out.dtype == np.float32 and out.shape == (5, 3)
        np.testing.assert_allclose(out, x.astype(np.float32))


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "nope.npz", key="features", dim=512, item="vid v1")
    _err(ei, "nope.npz", "not found", "vid v1", "(T, 512)", "'features'")


@pytest.mark.parametrize("name", ["g.npz", "g.npy", "g.pt"])
def test_garbage_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"this is not an array file at all" * 10)
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / name, key="features")
    _err(ei, name, "cannot read")


@pytest.mark.parametrize("name", ["t.npz", "t.npy"])
def test_truncated_file(tmp_path, name):
    x = np.ones((50, 16))
    if name.endswith(".npz"):
        np.savez(tmp_path / name, features=x)
    else:
        np.save(tmp_path / name, x)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / name, key="features", dim=16)
    _err(ei, name, "cannot read", "(T, 16)")


def test_npz_missing_key(tmp_path):
    np.savez(tmp_path / "k.npz", other=np.ones((2, 2)))
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "k.npz", key="features")
    _err(ei, "k.npz", "field 'features'", "key 'features' missing", "['other']")


def test_pt_dict_without_key(tmp_path):
    torch.save({"x": torch.ones(2, 2)}, tmp_path / "k.pt")
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "k.pt", key="features")
    _err(ei, "k.pt", "key 'features' missing from the saved dict", "['x']")


def test_wrong_key_names_the_key_wanted_and_the_keys_found(tmp_path):
    # lighthouse text features read with the video key (or the reverse): the message says both
    np.savez(tmp_path / "qid7.npz", last_hidden_state=np.ones((3, 4)), pooler_output=np.ones((1, 4)))
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "qid7.npz", key="features", item="qid 7")
    msg = str(ei.value)
    assert msg == (f"{tmp_path / 'qid7.npz'}: qid 7: field 'features': key 'features' missing from the .npz archive "
                   "(expected a finite float array of shape (T, D) under key 'features', "
                   "found keys ['last_hidden_state', 'pooler_output'])")
    # no key asked for: an archive or dict with a single array is read, several are an error listing them
    np.savez(tmp_path / "one.npz", feats=np.ones((2, 3)))
    assert load_feature_array(tmp_path / "one.npz").shape == (2, 3)
    torch.save({"video": torch.ones(2, 3)}, tmp_path / "one.pt")
    assert load_feature_array(tmp_path / "one.pt").shape == (2, 3)
    torch.save({"video": torch.ones(2, 3), "text": torch.ones(1, 3)}, tmp_path / "two.pt")
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "two.pt", item="vid v1")
    _err(ei, "two.pt: vid v1: the saved dict holds several arrays and no key says which", "['text', 'video']")


@pytest.mark.parametrize("arr,kw,problem", [
    (np.ones(4), {}, "wrong rank"),
    (np.ones((3, 4)), {"dim": 5}, "dimension mismatch"),
    (np.ones((0, 4)), {}, "empty"),
    (np.array([["a", "b"]]), {}, "non-numeric"),
])
def test_bad_shapes_and_dtypes(tmp_path, arr, kw, problem):
    np.save(tmp_path / "s.npy", arr)
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "s.npy", **kw)
    msg = _err(ei, "s.npy", problem, "expected", "found")
    if "dim" in kw:
        assert "(T, 5)" in msg and "(3, 4)" in msg


def test_non_finite(tmp_path):
    x = np.zeros((6, 3))
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    np.savez(tmp_path / "n.npz", features=x)
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "n.npz", key="features", item="vid q")
    _err(ei, "n.npz", "non-finite", "1 NaN and 1 Inf", "row 2", "vid q")
    np.save(tmp_path / "big.npy", np.full((2, 2), 1e300))  # finite float64, Inf once cast to float32
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "big.npy")
    _err(ei, "big.npy", "0 NaN and 4 Inf")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "f.h5").write_bytes(b"x")
    with pytest.raises(DataFormatError) as ei:
        load_feature_array(tmp_path / "f.h5")
    _err(ei, "f.h5", "unsupported", ".h5")


def test_l2_normalize():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    y = l2_normalize(x)
    np.testing.assert_allclose(y, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    assert y.dtype == np.float32


def test_align_lengths():
    a, b = np.arange(8.0).reshape(4, 2), np.arange(3.0).reshape(3, 1)
    t = align_lengths([a, b], ["a", "b"], mode="truncate")
    assert [x.shape[0] for x in t] == [3, 3]
    p = align_lengths([a, b], ["a", "b"], mode="pad_last")
    assert p[1].shape == (4, 1) and p[1][3, 0] == p[1][2, 0] == 2.0
    with pytest.raises(DataFormatError) as ei:
        align_lengths([a, b[:2]], ["fa.npy", "fb.npy"], mode="pad_last", item="video z")
    _err(ei, "fb.npy", "differ in length", "fa.npy: 4", "fb.npy: 2", "video z")
    with pytest.raises(ValueError):
        align_lengths([a, b], ["a", "b"], mode="bogus")


def test_temporal_endpoint_features():
    tef = temporal_endpoint_features(4)
    np.testing.assert_allclose(tef, [[0, 0.25], [0.25, 0.5], [0.5, 0.75], [0.75, 1.0]])
    with pytest.raises(ValueError):
        temporal_endpoint_features(0)


def test_find_feature_file(tmp_path):
    torch.save(torch.ones(2, 2), tmp_path / "v.pt")
    assert find_feature_file(tmp_path, "v").name == "v.pt"
    np.save(tmp_path / "v.npy", np.ones((2, 2)))
    assert find_feature_file(tmp_path, "v").name == "v.npy"
    with pytest.raises(DataFormatError) as ei:
        find_feature_file(tmp_path, "w", item="video w")
    _err(ei, "w.npy", "w.pt", "not found", "video w")


def test_pad_sequences():
    seqs = [torch.ones(3, 2), torch.full((1, 2), 2.0), torch.zeros(0, 2)]
    padded, mask = pad_sequences(seqs, pad_value=-1.0)
    assert padded.shape == (3, 3, 2) and mask.dtype == torch.bool
    assert mask.tolist() == [[True] * 3, [True, False, False], [False] * 3]
    assert (padded[1, 1:] == -1).all() and (padded[1, 0] == 2).all() and (padded[0] == 1).all()
    p1, m1 = pad_sequences([np.arange(2), np.arange(4)])
    assert p1.tolist() == [[0, 1, 0, 0], [0, 1, 2, 3]] and m1.sum().item() == 6
    with pytest.raises(ValueError, match="trailing shape"):
        pad_sequences([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(ValueError, match="dtype"):
        pad_sequences([torch.ones(2), torch.ones(2, dtype=torch.float64)])
    with pytest.raises(ValueError, match="at least one"):
        pad_sequences([])
    with pytest.raises(ValueError, match="length axis"):
        pad_sequences([torch.tensor(1.0)])


def test_collate_padded():
    batch = [{"id": "a", "x": torch.ones(2, 3), "y": torch.tensor(1), "n": 1.5},
             {"id": "b", "x": torch.ones(4, 3), "y": torch.tensor(2), "n": 2.5}]
    out = collate_padded(batch, ("x",))
    assert out["x"].shape == (2, 4, 3) and out["x_mask"].sum(1).tolist() == [2, 4]
    assert out["y"].tolist() == [1, 2] and out["id"] == ["a", "b"] and out["n"] == [1.5, 2.5]
    with pytest.raises(ValueError, match="keys"):
        collate_padded([batch[0], {"id": "c"}], ("x",))
    with pytest.raises(ValueError, match="empty batch"):
        collate_padded([], ("x",))
