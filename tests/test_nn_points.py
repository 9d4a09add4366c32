"""Point targets and decoding of point-based temporal detection (HieraMamba / SnAG), by hand and vs slow loops (the
official soft-NMS and voting: ``tests/oracles.py``)."""
import math

import torch

from oracles import official_batched_nms

from vidmamba.nn.points import assign_points, decode_points, pyramid_points, regression_ranges, span_mask


def test_regression_ranges_by_hand():
    assert regression_ranges(4, 4, 0.5, max_seq_len=100) == [(0, 4), (2, 8), (4, 16), (8, 101)]
    assert regression_ranges(4, 4, 0.5, max_seq_len=10) == [(0, 4), (2, 8), (4, 16), (8, 32)]
    assert regression_ranges(1, 4, 0.5, max_seq_len=10) == [(0, 4)]


def test_pyramid_points_layout():
    pts = pyramid_points([5, 3, 2], regression_ranges(3, 4, 0.5), base_stride=1)
    assert pts[:, 0].tolist() == [0, 1, 2, 3, 4, 0, 2, 4, 0, 4]
    assert pts[:, 3].tolist() == [1] * 5 + [2] * 3 + [4] * 2
    assert pts[5].tolist() == [0, 2, 8, 2]


def test_assign_points_by_hand():
    """Segment [3, 9] (centre 6), radius 1.5, ranges (0,4) (2,8) (4,16) (8,101):
    level 0 window (4.5, 7.5) -> points 5, 6, 7 with reach 4, 3, 4 -> only 6 (4 is not < 4);
    level 1 window (3, 9) -> points 4, 6, 8, reach 5, 3, 6 in [2, 8) -> all three;
    level 2 window (3, 9) -> points 4, 8, reach 5, 5 in [4, 16) -> both; level 3: point 8 has reach 5 < 8 -> none."""
    pts = pyramid_points([16, 8, 4, 2], regression_ranges(4, 4, 0.5, max_seq_len=100))
    labels, off = assign_points(pts, torch.tensor([[3.0, 9.0]]), radius=1.5)
    positives = [(int(pts[i, 3]), int(pts[i, 0])) for i in labels[0].nonzero().flatten().tolist()]
    assert positives == [(1, 6), (2, 4), (2, 6), (2, 8), (4, 4), (4, 8)]
    i = 16 + 2  # level 1, coordinate 4
    assert off[0, i].tolist() == [0.5, 2.5]
    # radius 0: strictly inside the segment: level 0 points 4..8 have reach 5, 4, 3, 4, 5; only 6 is < 4
    labels0, _ = assign_points(pts[:16], torch.tensor([[3.0, 9.0]]), radius=0)
    assert labels0[0].nonzero().flatten().tolist() == [6]


def _assign_ref(pts, seg, radius):
    out = []
    st, ed = seg
    for coord, lo, hi, stride in pts.tolist():
        ctr = 0.5 * (st + ed)
        t_min, t_max = max(ctr - radius * stride, st), min(ctr + radius * stride, ed)
        inside = coord - t_min > 0 and t_max - coord > 0
        reach = max(coord - st, ed - coord)
        out.append(inside and lo <= reach < hi)
    return out


def test_assign_points_matches_loop():
    g = torch.Generator().manual_seed(0)
    pts = pyramid_points([40, 20, 10, 5], regression_ranges(4, 4, 0.5, max_seq_len=40))
    st = torch.rand(30, generator=g) * 35
    segs = torch.stack([st, st + torch.rand(30, generator=g) * 20 + 0.05], 1)
    labels, off = assign_points(pts, segs, 1.5)
    for q in range(30):
        assert labels[q].tolist() == _assign_ref(pts, segs[q].tolist(), 1.5)
        torch.testing.assert_close(off[q, :, 0], (pts[:, 0] - segs[q, 0]) / pts[:, 3])


def test_span_mask_by_hand():
    pts = pyramid_points([16, 8], regression_ranges(2, 4, 0.5))
    m = span_mask(pts, torch.tensor([[3.0, 9.0]]))[0]
    assert pts[m.nonzero().flatten(), 0].tolist() == [3, 4, 5, 6, 7, 8, 9, 4, 6, 8]  # level 1: ceil(1.5)..floor(4.5)


def _decode_ref(pts, scores, offsets, thresh, topk, len_thresh, sigma, vote, min_score, max_num):
    cand = [i for i in range(len(scores)) if scores[i] > thresh]
    cand = sorted(cand, key=lambda i: -float(scores[i]))[:topk]
    segs, sc = [], []
    for i in cand:
        c, s = float(pts[i, 0]), float(pts[i, 3])
        a, b = c - float(offsets[i, 0]) * s, c + float(offsets[i, 1]) * s
        if b - a > len_thresh:
            segs.append([a, b])
            sc.append(float(scores[i]))
    return torch.tensor(official_batched_nms(segs, sc, sigma, min_score, max_num, vote)).reshape(-1, 3)


def test_decode_matches_slow_reference():
    g = torch.Generator().manual_seed(3)
    pts = pyramid_points([64, 32, 16], regression_ranges(3, 4, 0.5, max_seq_len=64))
    p = pts.shape[0]
    for trial in range(4):
        scores = torch.rand(p, generator=g) ** 3
        offsets = torch.rand(p, 2, generator=g) * 3
        offsets[::7] = offsets[1::7][: offsets[::7].shape[0]] * 1.01  # near-duplicates so voting has work to do
        args = (0.01, 50 if trial % 2 else 500, 0.1, 0.9, 0.95 if trial < 3 else 0.6, 0.001, 5 + 20 * trial)
        got = decode_points(pts, scores, offsets, pre_nms_thresh=args[0], pre_nms_topk=args[1],
                            seg_len_thresh=args[2], sigma=args[3], voting_thresh=args[4], min_score=args[5],
                            max_num=args[6])
        ref = _decode_ref(pts, scores, offsets, *args)
        assert got.shape == ref.shape and 0 < got.shape[0] <= args[6]
        torch.testing.assert_close(got, ref)
        assert torch.all(got[1:, 2] <= got[:-1, 2])


def test_decode_voting_averages_overlapping_segments():
    """Two segments [0, 10] (score 0.9) and [0, 10.2] (0.6) overlap with IoU 0.98 >= 0.95: the kept one becomes their
    score-weighted mean [0, (0.9 * 10 + 0.6 * 10.2) / 1.5] = [0, 10.08]; its score is the undecayed 0.9."""
    pts = torch.tensor([[5.0, 0, 100, 1], [5.0, 0, 100, 1]])
    out = decode_points(pts, torch.tensor([0.9, 0.6]), torch.tensor([[5.0, 5.0], [5.0, 5.2]]), max_num=1)
    torch.testing.assert_close(out, torch.tensor([[0.0, 10.08, 0.9]]))
    second = decode_points(pts, torch.tensor([0.9, 0.6]), torch.tensor([[5.0, 5.0], [5.0, 5.2]]), max_num=2)
    iou = 10 / 10.2
    assert math.isclose(float(second[1, 2]), 0.6 * math.exp(-iou * iou / 0.9), rel_tol=1e-5)


def test_decode_nothing_left_is_empty():
    pts = pyramid_points([8], regression_ranges(1, 4, 0.5))
    out = decode_points(pts, torch.full((8,), 0.0005), torch.ones(8, 2))
    assert out.shape == (0, 3)
    out = decode_points(pts, torch.full((8,), 0.9), torch.full((8, 2), 0.01))  # all shorter than seg_len_thresh
    assert out.shape == (0, 3)
