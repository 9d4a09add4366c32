"""Independent test oracles: the official algorithms rewritten here, slowly and in plain Python where it matters,
from the published code (each names its source), so that a test compares the library with the original behaviour
and never with a copy of itself. Nothing here imports the library's implementation of the same step."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ---------------------------------------------------------------------------------------------------------------------
# non-maximum suppression
# ---------------------------------------------------------------------------------------------------------------------
def official_temporal_nms(preds: list[list[float]], nms_thd: float, max_after_nms: int) -> list[list[float]]:
    """moment_detr / UniVTG ``utils/temporal_nms.py`` ``temporal_nms`` (MLVTG's decoding): sort ``[st, ed, score]`` by
    score, descending (a stable sort: equal scores keep their input order); walk the list, keeping a window unless
    its IoU with a window kept before it exceeds ``nms_thd``; at most ``max_after_nms``. IoU as the official
    ``compute_temporal_iou``: intersection over the hull ``max(ed) - min(st)`` (0 for a zero hull)."""
    def iou(a, b):
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        hull = max(a[1], b[1]) - min(a[0], b[0])
        return 0.0 if hull == 0 else inter / hull

    kept: list[list[float]] = []
    for p in sorted(preds, key=lambda p: p[2], reverse=True):
        if len(kept) == max_after_nms:
            break
        if all(iou(p, k) <= nms_thd for k in kept):
            kept.append(p)
    return kept


def official_soft_nms(segs: list[list[float]], scores: list[float], sigma: float, min_score: float,
                      max_num: int) -> list[tuple[float, float, float]]:
    """HieraMamba ``libs/nms/src/nms_cpu.cpp`` ``softnms_1d_cpu`` with method 2 (Gaussian), capped as
    ``SoftNMSop``: repeatedly move the remaining segment of highest score to the output, then multiply every other
    remaining score by ``exp(-IoU^2 / sigma)`` and discard those that fall below ``min_score``. The C++ IoU adds
    1e-6 to each length. Returns ``(st, ed, score)`` in selection order (score descending), at most ``max_num``
    (``max_num <= 0``: all). Ties for the maximum are resolved differently from the C++ (which swaps entries as it
    goes): compare on tie-free scores."""
    rest = [[float(a), float(b), float(s)] for (a, b), s in zip(segs, scores)]
    out = []
    while rest:
        best = max(range(len(rest)), key=lambda j: rest[j][2])
        a, b, s = rest.pop(best)
        out.append((a, b, s))
        survivors = []
        for seg in rest:
            inter = max(0.0, min(b, seg[1]) - max(a, seg[0]))
            iou = inter / ((b - a + 1e-6) + (seg[1] - seg[0] + 1e-6) - inter)
            seg[2] *= math.exp(-iou * iou / sigma)
            if seg[2] >= min_score:
                survivors.append(seg)
        rest = survivors
    return out[:max_num] if max_num > 0 else out


def official_voting(kept: list[tuple[float, float]], segs: list[list[float]], scores: list[float],
                    thresh: float) -> list[list[float]]:
    """HieraMamba ``libs/nms/nms.py`` ``segment_voting``: each kept segment becomes the score-weighted mean of every
    input segment whose IoU with it (overlap / union, no epsilon) is at least ``thresh``."""
    out = []
    for a, b in kept:
        num_a = num_b = den = 0.0
        for (c, d), w in zip(segs, scores):
            inter = max(0.0, min(b, d) - max(a, c))
            if inter / ((b - a) + (d - c) - inter) >= thresh:
                num_a, num_b, den = num_a + w * c, num_b + w * d, den + w
        out.append([num_a / den, num_b / den])
    return out


def official_batched_nms(segs: list[list[float]], scores: list[float], sigma: float, min_score: float, max_num: int,
                         voting_thresh: float) -> list[list[float]]:
    """HieraMamba ``libs/nms/nms.py`` ``batched_nms`` in ``soft_nms`` mode: soft-NMS (capped), segment voting against
    the input segments when ``voting_thresh > 0``, sort by the decayed score, keep ``max_num``. Rows ``[st, ed,
    score]``."""
    kept = official_soft_nms(segs, scores, sigma, min_score, max_num)
    bounds = [[a, b] for a, b, _ in kept]
    if voting_thresh > 0:
        bounds = official_voting([(a, b) for a, b in bounds], segs, scores, voting_thresh)
    rows = [[a, b, s] for (a, b), (_, _, s) in zip(bounds, kept)]
    return sorted(rows, key=lambda r: r[2], reverse=True)[:max_num]
