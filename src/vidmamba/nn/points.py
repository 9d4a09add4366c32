"""Point-based temporal detection targets (SnAG / HieraMamba ``PtGenerator`` and ``_annotate_points_per_video``).

Level ``l`` of a stride-2 pyramid has points at grid coordinates ``0, s_l, 2 s_l, ...`` (``s_l = 2^l`` times the
input stride; no half-stride offset). Each level regresses events whose largest point-to-boundary distance lies in
its range ``[r_min, r_max)`` (grid units). All coordinates are level-0 grid units.
"""
from __future__ import annotations

import torch
from torch import Tensor

from vidmamba.nn.nms import soft_nms_voting
from vidmamba.nn.segments import offsets_to_segments


def regression_ranges(num_levels: int, regression_range: float = 4.0, sigma: float = 0.5,
                      max_seq_len: int | None = None) -> list[tuple[float, float]]:
    """Per-level ``(r_min, r_max)``: level 0 ``(0, regression_range)``, level l ``(prev_max * sigma, prev_max * 2)``,
    the last level's max raised to ``max_seq_len + 1`` when that is larger (official ``PtGenerator``).
    HieraMamba (range 4, sigma 0.5): (0, 4), (2, 8), (4, 16), ..."""
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    if not 0 < sigma <= 1:
        raise ValueError(f"sigma must be in (0, 1], got {sigma}")
    ranges = [(0.0, float(regression_range))]
    for level in range(1, num_levels):
        prev = ranges[-1][1]
        hi = prev * 2
        if level == num_levels - 1 and max_seq_len is not None:
            hi = max(hi, max_seq_len + 1.0)
        ranges.append((prev * sigma, hi))
    return ranges


def pyramid_points(lengths: list[int], ranges: list[tuple[float, float]], base_stride: int = 1,
                   device=None) -> Tensor:
    """Concatenated points of all levels: (sum(lengths), 4) rows ``(coord, r_min, r_max, stride)``.

    lengths[l]: number of steps of level l (padded length is fine: masks decide validity); level l has stride
    ``base_stride * 2^l`` and coordinates ``arange(lengths[l]) * stride``."""
    rows = []
    for level, (n, (lo, hi)) in enumerate(zip(lengths, ranges, strict=True)):
        stride = float(base_stride * 2 ** level)
        coord = torch.arange(n, dtype=torch.float32, device=device) * stride
        rows.append(torch.stack([coord, coord.new_full((n,), lo), coord.new_full((n,), hi),
                                 coord.new_full((n,), stride)], -1))
    return torch.cat(rows)


def assign_points(points: Tensor, segments: Tensor, radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """Classification labels and regression targets of every point for every segment.

    points (p, 4) ``(coord, r_min, r_max, stride)``; segments (q, 2) ``(st, ed)`` grid units ->
    (labels (q, p) bool, offsets (q, p, 2) ``((coord - st) / stride, (ed - coord) / stride)``).
    A point is positive iff (1) it lies strictly inside the centre window ``[ctr - radius * stride,
    ctr + radius * stride] ∩ [st, ed]`` (``radius <= 0``: strictly inside the segment) and (2)
    ``max(coord - st, ed - coord)`` is in ``[r_min, r_max)``.
    """
    coord, lo, hi, stride = (c[None, :] for c in points.unbind(-1))
    st, ed = segments[:, :1].to(points.dtype), segments[:, 1:].to(points.dtype)
    to_st, to_ed = coord - st, ed - coord
    offsets = torch.stack([to_st, to_ed], -1) / stride[..., None]
    if radius > 0:
        ctr = 0.5 * (st + ed)
        t_min = torch.maximum(ctr - radius * stride, st)
        t_max = torch.minimum(ctr + radius * stride, ed)
        inside = (coord - t_min > 0) & (t_max - coord > 0)
    else:
        inside = (to_st > 0) & (to_ed > 0)
    reach = torch.maximum(to_st, to_ed)
    return inside & (reach >= lo) & (reach < hi), offsets


def span_mask(points: Tensor, segments: Tensor) -> Tensor:
    """Points covered by each segment on their level's grid (official SPC span mask): level index
    ``i = coord / stride`` with ``ceil(st / stride) <= i <= floor(ed / stride)``. points (p, 4), segments (q, 2) ->
    (q, p) bool."""
    index = points[:, 0] / points[:, 3]
    st = torch.ceil(segments[:, :1] / points[None, :, 3])
    ed = torch.floor(segments[:, 1:] / points[None, :, 3])
    return (index[None] >= st) & (index[None] <= ed)


def level_slices(lengths: list[int]) -> list[slice]:
    """Slices of each level in the concatenated point axis."""
    ends = [0]
    for n in lengths:
        ends.append(ends[-1] + n)
    return [slice(a, b) for a, b in zip(ends[:-1], ends[1:])]




def decode_points(points: Tensor, scores: Tensor, offsets: Tensor, *, pre_nms_thresh: float = 0.001,
                  pre_nms_topk: int = 2000, seg_len_thresh: float = 0.1, sigma: float = 0.9,
                  voting_thresh: float = 0.95, min_score: float = 0.001, max_num: int | None = 5) -> Tensor:
    """One query's detections (official ``_collect_segments`` + soft-NMS): keep points with score
    ``> pre_nms_thresh``, the ``pre_nms_topk`` best of them, segments ``(coord - left * stride, coord + right *
    stride)`` longer than ``seg_len_thresh``, then :func:`~vidmamba.nn.nms.soft_nms_voting`.

    points (p, 4), scores (p,) in [0, 1] (0 at padded points), offsets (p, 2) >= 0 ->
    (k, 3) ``[start, end, score]`` in grid units, score descending; k = 0 when nothing survives."""
    idx = torch.nonzero(scores > pre_nms_thresh).squeeze(1)
    if idx.numel() > pre_nms_topk:
        idx = idx[torch.sort(scores[idx], descending=True, stable=True).indices[:pre_nms_topk]]
    segs = offsets_to_segments(points[idx, 0], offsets[idx], points[idx, 3])
    long = (segs[:, 1] - segs[:, 0]) > seg_len_thresh
    segs, kept_scores = soft_nms_voting(segs[long], scores[idx][long], sigma, voting_thresh, min_score, max_num)
    return torch.cat([segs, kept_scores.unsqueeze(1)], 1)


__all__ = ["assign_points", "decode_points", "level_slices", "pyramid_points", "regression_ranges", "span_mask"]
