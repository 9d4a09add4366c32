"""1-D NMS against the official algorithms (moment_detr's ``temporal_nms``; HieraMamba's C++ Gaussian soft-NMS, its
segment voting and ``batched_nms``), rewritten as plain-Python oracles in ``tests/oracles.py``, and by hand."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import official_batched_nms, official_soft_nms, official_temporal_nms, official_voting

from vidmamba.nn import nms_1d, segment_voting, soft_nms_voting


def _random(n, seed):
    g = torch.Generator().manual_seed(seed)
    st_ = torch.rand(n, generator=g, dtype=torch.float64) * 50
    ln = torch.rand(n, generator=g, dtype=torch.float64) * 15 + 0.1
    segs = torch.stack((st_, st_ + ln), -1)
    return segs, torch.rand(n, generator=g, dtype=torch.float64)


def _rows(segs, scores):
    return [[a, b, s] for (a, b), s in zip(segs.tolist(), scores.tolist())]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr, max_num", [(0.7, 10), (0.3, 100), (0.0, 5)])
def test_hard_nms_is_moment_detrs_temporal_nms(seed, thr, max_num):
    segs, scores = _random(40 + 10 * seed, seed)
    got_segs, got_scores, idx = nms_1d(segs, scores, "hard", iou_threshold=thr, max_num=max_num)
    expected = official_temporal_nms(_rows(segs, scores), thr, max_num)
    assert torch.cat([got_segs, got_scores[:, None]], 1).tolist() == expected
    assert torch.equal(segs[idx], got_segs)


@settings(max_examples=80, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 8), st.integers(0, 4)), min_size=0, max_size=25),
    thr=st.sampled_from([0.0, 0.25, 0.5, 0.7]),
    max_num=st.integers(0, 12),
)
def test_hard_nms_is_temporal_nms_with_ties_and_zero_lengths(data, thr, max_num):
    """Integer coordinates and five score levels: exact IoU ties, equal scores (input order wins, as the official
    stable sort) and zero-length windows (IoU 0) are common."""
    segs = torch.tensor([[s, s + w] for s, w, _ in data], dtype=torch.float64).reshape(-1, 2)
    scores = torch.tensor([c / 4 for _, _, c in data], dtype=torch.float64)
    got_segs, got_scores, _ = nms_1d(segs, scores, "hard", iou_threshold=thr, max_num=max_num)
    expected = official_temporal_nms(_rows(segs, scores), thr, max_num)
    assert torch.cat([got_segs, got_scores[:, None]], 1).reshape(-1, 3).tolist() == expected


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sigma, min_score, max_num", [(0.9, 0.001, 100), (0.5, 0.2, 100), (0.9, 0.001, 5)])
def test_gaussian_soft_nms_is_hieramambas_cpp_loop(seed, sigma, min_score, max_num):
    segs, scores = _random(40 + 10 * seed, 100 + seed)
    scores = scores * (1 - min_score) + min_score                # above min_score, as after pre_nms_thresh
    got_segs, got_scores, _ = nms_1d(segs, scores, "gaussian", sigma=sigma, min_score=min_score, max_num=max_num)
    expected = torch.tensor(official_soft_nms(segs.tolist(), scores.tolist(), sigma, min_score, max_num),
                            dtype=torch.float64)
    assert got_segs.shape[0] == expected.shape[0] > 0
    assert torch.equal(got_segs, expected[:, :2])                # the same segments, in the same order
    torch.testing.assert_close(got_scores, expected[:, 2], rtol=1e-5, atol=0)  # the C++ adds 1e-6 to each length


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("vote", [0.95, 0.6, 0.0])
def test_soft_nms_voting_is_hieramambas_batched_nms(seed, vote):
    segs, scores = _random(60, 200 + seed)
    segs = torch.cat([segs, segs + 0.01 * torch.randn(60, 1, dtype=torch.float64)])  # near-duplicates: votes happen
    scores = torch.cat([scores, scores.flip(0) * 0.999]) * 0.99 + 0.01
    got = soft_nms_voting(segs, scores, sigma=0.9, voting_thresh=vote, min_score=0.001, max_num=10)
    expected = torch.tensor(official_batched_nms(segs.tolist(), scores.tolist(), 0.9, 0.001, 10, vote),
                            dtype=torch.float64)
    torch.testing.assert_close(torch.cat([got[0], got[1][:, None]], 1), expected, rtol=1e-5, atol=1e-9)


def test_nms_empty_input():
    for method in ("hard", "gaussian"):
        s, sc, idx = nms_1d(torch.zeros(0, 2), torch.zeros(0), method)
        assert s.shape == (0, 2) and sc.shape == (0,) and idx.shape == (0,) and idx.dtype == torch.long
        s, sc, idx = nms_1d(torch.rand(3, 2), torch.rand(3), method, max_num=0)
        assert s.shape == (0, 2) and idx.numel() == 0


def test_hard_nms_hand_example():
    segs = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [5.0, 14.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # IoU(0, 1) = 0.9 > 0.5 dropped; IoU(0, 3) = 5/14 kept
    s, sc, idx = nms_1d(segs, scores, "hard", iou_threshold=0.5)
    assert idx.tolist() == [0, 2, 3]
    assert torch.equal(sc, scores[[0, 2, 3]]) and torch.equal(s, segs[[0, 2, 3]])


def test_all_overlapping_and_identical_scores():
    segs = torch.tensor([[0.0, 5.0]] * 4)
    same = torch.full((4,), 0.5)
    # hard: one survivor, ties broken by the lowest index
    assert nms_1d(segs, same, "hard")[2].tolist() == [0]
    # identical scores on disjoint segments: input order
    disjoint = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert nms_1d(disjoint, torch.full((3,), 0.3), "hard")[2].tolist() == [0, 1, 2]
    # gaussian: every copy survives, decayed by exp(-1/sigma) once per earlier pick
    _, sc, idx = nms_1d(segs, same, "gaussian", sigma=0.9)
    assert idx.tolist() == [0, 1, 2, 3]
    expected = [0.5 * math.exp(-1 / 0.9) ** k for k in range(4)]
    assert sc.tolist() == pytest.approx(expected)


def test_soft_nms_output_sorted_and_min_score():
    segs, scores = _random(80, 11)
    _, sc, idx = nms_1d(segs, scores, "gaussian", sigma=0.9, min_score=0.2)
    assert (sc[1:] <= sc[:-1]).all() and (sc >= 0.2).all()
    assert len(set(idx.tolist())) == len(idx)


def test_float32_inputs():
    segs, scores = _random(30, 3)
    s, sc, idx = nms_1d(segs.float(), scores.float(), "gaussian", max_num=5)
    assert s.dtype == torch.float32 and sc.dtype == torch.float32 and idx.numel() == 5


def test_segment_voting_hand_example():
    kept = torch.tensor([[0.0, 10.0], [40.0, 41.0]])
    all_segs = torch.tensor([[0.0, 10.0], [0.0, 10.2], [5.0, 15.0], [0.1, 10.0]])
    all_scores = torch.tensor([0.9, 0.3, 1.0, 0.0])
    # IoU((0,10),(0,10.2)) = 0.98 votes; (5,15) does not; a zero score adds nothing; (40,41) has no voter
    out = segment_voting(kept, all_segs, all_scores, 0.95)
    assert torch.allclose(out, torch.tensor([[0.0, (0.9 * 10 + 0.3 * 10.2) / 1.2], [40.0, 41.0]]))


@pytest.mark.parametrize("seed", range(4))
def test_segment_voting_is_the_official_voting(seed):
    segs, scores = _random(60, seed)
    segs = torch.cat([segs, segs + 0.01 * torch.randn(60, 1, dtype=torch.float64)])
    scores = torch.cat([scores, scores.flip(0)])
    kept = segs[torch.randperm(120, generator=torch.Generator().manual_seed(seed))[:10]]   # each votes for itself
    for thr in (0.5, 0.95):
        expected = torch.tensor(official_voting(kept.tolist(), segs.tolist(), scores.tolist(), thr), dtype=torch.float64)
        torch.testing.assert_close(segment_voting(kept, segs, scores, thr), expected)


def test_segment_voting_empty():
    assert segment_voting(torch.zeros(0, 2), torch.rand(3, 2), torch.rand(3)).shape == (0, 2)
    kept = torch.tensor([[1.0, 2.0]])
    assert torch.equal(segment_voting(kept, torch.zeros(0, 2), torch.zeros(0)), kept)


def test_bad_method():
    for method in ("soft", "linear"):
        with pytest.raises(ValueError):
            nms_1d(torch.rand(2, 2), torch.rand(2), method)
