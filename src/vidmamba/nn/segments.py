"""1-D temporal segment ops: span conversions and IoU / GIoU / DIoU.

A segment is the last dim of size 2 holding ``(st, ed)`` ("xx") or ``(centre, width)`` ("cxw"). Elementwise functions
broadcast their two inputs like any torch binary op; ``pairwise_*`` functions compare every segment of ``a`` (n, 2)
with every segment of ``b`` (m, 2) and return (n, m). Degenerate segments (zero length) have IoU 0 with everything.
"""
from __future__ import annotations

import torch
from torch import Tensor

_EPS = 1e-8


def cxw_to_xx(spans: Tensor) -> Tensor:
    """(..., 2) ``(centre, width)`` -> (..., 2) ``(st, ed)``."""
    c, w = spans.unbind(-1)
    return torch.stack((c - 0.5 * w, c + 0.5 * w), dim=-1)


def xx_to_cxw(spans: Tensor) -> Tensor:
    """(..., 2) ``(st, ed)`` -> (..., 2) ``(centre, width)``."""
    st, ed = spans.unbind(-1)
    return torch.stack((0.5 * (st + ed), ed - st), dim=-1)


def offsets_to_segments(points: Tensor, offsets: Tensor, stride: float | Tensor = 1.0) -> Tensor:
    """Point-based regression -> segments: ``(pt - left * stride, pt + right * stride)``.

    points (...,), offsets (..., 2) non-negative ``(left, right)`` distances in units of ``stride`` (a float or a
    tensor broadcastable to points, e.g. the per-point FPN stride); returns (..., 2) ``(st, ed)``.
    """
    stride = torch.as_tensor(stride, dtype=offsets.dtype, device=offsets.device)
    return torch.stack((points - offsets[..., 0] * stride, points + offsets[..., 1] * stride), dim=-1)


def _terms(a: Tensor, b: Tensor):
    """Broadcast (..., 2) segments -> (inter, union, enclosing length, centre distance), each (...)."""
    a_st, a_ed = a.unbind(-1)
    b_st, b_ed = b.unbind(-1)
    inter = (torch.minimum(a_ed, b_ed) - torch.maximum(a_st, b_st)).clamp(min=0)
    union = (a_ed - a_st) + (b_ed - b_st) - inter
    enclosing = torch.maximum(a_ed, b_ed) - torch.minimum(a_st, b_st)
    centre_dist = 0.5 * ((a_st + a_ed) - (b_st + b_ed))
    return inter, union, enclosing, centre_dist


def segment_iou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise IoU of (..., 2) ``(st, ed)`` segments (broadcast) -> (...)."""
    inter, union, _, _ = _terms(a, b)
    return inter / union.clamp(min=_EPS)


def segment_giou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise generalised IoU ``IoU - (C - U) / C`` (C the enclosing length), in [-1, 1] -> (...)."""
    inter, union, enclosing, _ = _terms(a, b)
    enclosing = enclosing.clamp(min=_EPS)
    return inter / union.clamp(min=_EPS) - (enclosing - union) / enclosing


def segment_diou(a: Tensor, b: Tensor) -> Tensor:
    """Elementwise distance IoU ``IoU - (rho / C)^2`` (rho the centre distance, C the enclosing length) -> (...)."""
    inter, union, enclosing, centre_dist = _terms(a, b)
    return inter / union.clamp(min=_EPS) - (centre_dist / enclosing.clamp(min=_EPS)) ** 2


def pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every segment in ``a`` (n, 2) with every segment in ``b`` (m, 2) -> (n, m)."""
    return segment_iou(a[:, None, :], b[None, :, :])


def pairwise_giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU, (n, 2) x (m, 2) -> (n, m)."""
    return segment_giou(a[:, None, :], b[None, :, :])


def pairwise_diou(a: Tensor, b: Tensor) -> Tensor:
    """Distance IoU, (n, 2) x (m, 2) -> (n, m)."""
    return segment_diou(a[:, None, :], b[None, :, :])
