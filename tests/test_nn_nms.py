import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidmamba.nn import nms_1d, nms_1d_ref, segment_voting, segment_voting_ref

METHODS = ["hard", "linear", "gaussian"]


def _random(n, seed):
    g = torch.Generator().manual_seed(seed)
    st_ = torch.rand(n, generator=g, dtype=torch.float64) * 50
    ln = torch.rand(n, generator=g, dtype=torch.float64) * 15 + 0.1
    segs = torch.stack((st_, st_ + ln), -1)
    return segs, torch.rand(n, generator=g, dtype=torch.float64)


def _assert_same(a, b):
    assert a[2].tolist() == b[2].tolist()
    assert torch.equal(a[0], b[0])
    assert torch.allclose(a[1], b[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_nms_matches_loop_reference(method, seed):
    segs, scores = _random(40 + 10 * seed, seed)
    for kw in ({}, {"max_num": 5}, {"min_score": 0.3, "iou_threshold": 0.3}, {"sigma": 0.5, "min_score": 0.001}):
        _assert_same(nms_1d(segs, scores, method, **kw), nms_1d_ref(segs, scores, method, **kw))


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 20), st.integers(1, 8), st.integers(0, 4)), min_size=0, max_size=25),
    method=st.sampled_from(["hard", "linear"]),
    thr=st.sampled_from([0.0, 0.25, 0.5, 0.7]),
    max_num=st.one_of(st.none(), st.integers(0, 6)),
)
def test_nms_matches_reference_on_grid_segments(data, method, thr, max_num):
    # integer coordinates and few score levels: exact IoU ties and equal scores are common
    segs = torch.tensor([[s, s + w] for s, w, _ in data], dtype=torch.float64).reshape(-1, 2)
    scores = torch.tensor([c / 4 for _, _, c in data], dtype=torch.float64)
    kw = dict(iou_threshold=thr, max_num=max_num, min_score=0.1)
    _assert_same(nms_1d(segs, scores, method, **kw), nms_1d_ref(segs, scores, method, **kw))


@pytest.mark.parametrize("method", METHODS)
def test_nms_empty_input(method):
    for fn in (nms_1d, nms_1d_ref):
        s, sc, idx = fn(torch.zeros(0, 2), torch.zeros(0), method)
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
    # linear at IoU 1 zeroes the rest, then min_score removes them
    assert nms_1d(segs, same, "linear", iou_threshold=0.5, min_score=0.001)[2].tolist() == [0]


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
    assert torch.allclose(segment_voting_ref(kept, all_segs, all_scores, 0.95), out)


@pytest.mark.parametrize("seed", range(4))
def test_segment_voting_matches_reference(seed):
    segs, scores = _random(60, seed)
    # near-duplicates so that votes happen
    segs = torch.cat([segs, segs + 0.01 * torch.randn(60, 1, dtype=torch.float64)])
    scores = torch.cat([scores, scores.flip(0)])
    kept, _, _ = nms_1d(segs, scores, "gaussian", max_num=10)
    for thr in (0.5, 0.95):
        assert torch.allclose(segment_voting(kept, segs, scores, thr), segment_voting_ref(kept, segs, scores, thr))


def test_segment_voting_empty():
    assert segment_voting(torch.zeros(0, 2), torch.rand(3, 2), torch.rand(3)).shape == (0, 2)
    assert segment_voting_ref(torch.zeros(0, 2), torch.rand(3, 2), torch.rand(3)).shape == (0, 2)
    kept = torch.tensor([[1.0, 2.0]])
    assert torch.equal(segment_voting(kept, torch.zeros(0, 2), torch.zeros(0)), kept)


def test_bad_method():
    with pytest.raises(ValueError):
        nms_1d(torch.rand(2, 2), torch.rand(2), "soft")
