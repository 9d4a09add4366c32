"""FeatureCache: the same arrays as a fresh read, a changed file is read again, a bounded size, and MomentDataset
items identical with and without it."""
import os
import pickle

import numpy as np
import pytest
import torch

from vidmamba.data import DataFormatError, FeatureCache, MomentDataset, load_feature_array
from vidmamba.data import features


def _write(path, x):
    if path.suffix == ".npz":
        np.savez(path, features=x)
    elif path.suffix == ".npy":
        np.save(path, x)
    else:
        torch.save({"features": torch.from_numpy(x)}, path)


def _counting_reads(monkeypatch):
    """Count the files ``load_feature_array`` actually opens."""
    calls = []
    real = features._read_raw

    def read(path, *args):
        calls.append(path)
        return real(path, *args)

    monkeypatch.setattr(features, "_read_raw", read)
    return calls


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".pt"])
def test_cached_array_has_the_bytes_of_a_fresh_read(tmp_path, suffix, monkeypatch):
    x = np.random.default_rng(0).normal(size=(7, 5))                  # float64 on disk: cast to float32 on read
    path = tmp_path / f"a{suffix}"
    _write(path, x)
    fresh = load_feature_array(path, key="features", dim=5)
    cache = FeatureCache(1 << 20)
    reads = _counting_reads(monkeypatch)
    first = load_feature_array(path, key="features", dim=5, cache=cache)
    second = load_feature_array(path, key="features", dim=5, cache=cache)
    assert len(reads) == 1 and len(cache) == 1
    for got in (first, second):
        assert got.dtype == np.float32 and got.shape == (7, 5) and got.flags.c_contiguous and got.flags.writeable
        assert got.tobytes() == fresh.tobytes() == x.astype(np.float32).tobytes()
    second[:] = 0                                     # a caller's changes do not reach the cache
    assert load_feature_array(path, key="features", cache=cache).tobytes() == fresh.tobytes()
    assert len(reads) == 1


def test_a_changed_file_is_read_again(tmp_path, monkeypatch):
    path = tmp_path / "v.npz"
    a, b, c = (np.full((4, 3), v, dtype=np.float32) for v in (1.0, 2.0, 3.0))
    _write(path, a)
    cache = FeatureCache(1 << 20)
    reads = _counting_reads(monkeypatch)
    assert (load_feature_array(path, key="features", cache=cache) == 1).all()
    stat = path.stat()
    _write(path, b)                                   # rewritten in place: same size, mtime set back as it was
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    assert (load_feature_array(path, key="features", cache=cache) == 2).all()
    tmp = tmp_path / "new.npz"                        # replaced by a rename (another inode)
    _write(tmp, c)
    os.replace(tmp, path)
    assert (load_feature_array(path, key="features", cache=cache) == 3).all()
    assert (load_feature_array(path, key="features", cache=cache) == 3).all()
    assert len(reads) == 3 and len(cache) == 1
    path.unlink()                                     # a file gone is an error, not its cached copy
    with pytest.raises(DataFormatError, match="not found"):
        load_feature_array(path, key="features", cache=cache)


def test_the_cache_is_bounded_and_drops_the_least_recently_used(tmp_path, monkeypatch):
    paths = [tmp_path / f"{i}.npy" for i in range(4)]
    for i, p in enumerate(paths):
        _write(p, np.full((10, 10), i, dtype=np.float32))            # 400 bytes each
    _write(tmp_path / "big.npy", np.zeros((30, 10), dtype=np.float32))
    cache = FeatureCache(1000)                                        # room for two
    reads = _counting_reads(monkeypatch)
    for p in paths[:2]:
        load_feature_array(p, cache=cache)
    load_feature_array(paths[0], cache=cache)                         # 0 is now the most recently used
    load_feature_array(paths[2], cache=cache)                         # evicts 1
    assert len(cache) == 2 and cache.nbytes == 800 <= cache.max_bytes
    load_feature_array(paths[0], cache=cache)
    load_feature_array(paths[2], cache=cache)
    assert len(reads) == 3
    load_feature_array(paths[1], cache=cache)                         # was evicted: read again
    assert len(reads) == 4
    load_feature_array(tmp_path / "big.npy", cache=cache)             # larger than the bound: not kept
    load_feature_array(tmp_path / "big.npy", cache=cache)
    assert len(reads) == 6 and cache.nbytes <= cache.max_bytes
    with pytest.raises(ValueError):
        FeatureCache(-1)


def test_a_cached_array_is_still_checked_against_the_width_asked_for(tmp_path):
    path = tmp_path / "v.npz"
    _write(path, np.ones((4, 3), dtype=np.float32))
    cache = FeatureCache(1 << 20)
    load_feature_array(path, key="features", cache=cache)
    with pytest.raises(DataFormatError, match="dimension mismatch"):
        load_feature_array(path, key="features", dim=5, cache=cache, item="vid v")


def test_a_copy_of_the_cache_starts_empty(tmp_path):
    path = tmp_path / "v.npy"
    _write(path, np.ones((4, 3), dtype=np.float32))
    cache = FeatureCache(12345)
    load_feature_array(path, cache=cache)
    copy = pickle.loads(pickle.dumps(cache))
    assert len(copy) == 0 and copy.max_bytes == 12345 and len(cache) == 1


def test_moment_dataset_items_are_the_same_with_and_without_the_cache(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "video").mkdir()
    (tmp_path / "text").mkdir()
    lines = []
    for q in range(3):
        np.savez(tmp_path / "video" / f"v{q}.npz", features=rng.normal(size=(5 + q, 6)).astype(np.float32))
        np.savez(tmp_path / "text" / f"qid{q}.npz", last_hidden_state=rng.normal(size=(3, 4)).astype(np.float32))
        lines.append(f'{{"qid": {q}, "query": "a b", "vid": "v{q}", "duration": 10, "relevant_windows": [[0, 4]],'
                     f' "relevant_clip_ids": [0, 1], "saliency_scores": [[1, 2, 3], [4, 2, 0]]}}')
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")

    def dataset(cache_bytes):
        return MomentDataset(tmp_path / "a.jsonl", tmp_path, ["video"], "text", dataset="qvhighlight",
                             cache_bytes=cache_bytes)

    plain, cached = dataset(0), dataset(1 << 20)
    assert plain.feature_cache is None and cached.feature_cache is not None
    for _ in range(2):                                 # the second pass is served from the cache
        for i in range(len(plain)):
            want, got = plain[i], cached[i]
            assert want.keys() == got.keys()
            for k, v in want.items():
                if isinstance(v, torch.Tensor):
                    assert v.dtype == got[k].dtype and torch.equal(v, got[k]), k
                else:
                    assert v == got[k], k
    assert len(cached.feature_cache) == 6
