"""Non-maximum suppression on 1-D segments (pure torch).

Methods (as in moment_detr/UniVTG ``temporal_nms`` and HieraMamba's soft-NMS, where a candidate j is compared with the
segment i just selected):

- ``"hard"``: drop j when ``IoU(i, j) > iou_threshold`` (moment_detr / UniVTG ``temporal_nms``, MLVTG);
- ``"gaussian"``: ``score_j *= exp(-IoU^2 / sigma)`` (``iou_threshold`` unused; HieraMamba's ``softnms_1d_cpu``,
  sigma 0.9).

Selection repeatedly takes the highest *current* score (ties: lowest input index), so the output is sorted by score,
descending. Candidates whose current score falls below ``min_score`` are dropped (also at the start). At most
``max_num`` segments are returned (None: no cap). Empty input gives empty output.
"""
from __future__ import annotations

import torch
from torch import Tensor

from vidmamba.nn.segments import pairwise_iou, segment_iou

METHODS = ("hard", "gaussian")


def _check(segs: Tensor, scores: Tensor, method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if segs.dim() != 2 or segs.shape[-1] != 2 or scores.shape != segs.shape[:1]:
        raise ValueError(f"expected segs (n, 2) and scores (n,), got {tuple(segs.shape)} and {tuple(scores.shape)}")


def _empty(segs: Tensor, scores: Tensor):
    return segs[:0], scores[:0], torch.zeros(0, dtype=torch.long, device=segs.device)


def nms_1d(segs: Tensor, scores: Tensor, method: str = "hard", iou_threshold: float = 0.7, sigma: float = 0.9,
           min_score: float = 0.0, max_num: int | None = None):
    """NMS / soft-NMS on segments (n, 2) ``(st, ed)`` with scores (n,).

    Returns ``(segs (k, 2), scores (k,), idx (k,) long)``: the kept segments in selection order (score descending),
    their scores (the decayed scores for soft-NMS, the input scores for hard NMS) and their indices into the input.
    One IoU row per selected segment: O(k n) time, O(n) memory.
    """
    _check(segs, scores, method)
    n = segs.shape[0]
    limit = n if max_num is None else min(n, max_num)
    if n == 0 or limit <= 0:
        return _empty(segs, scores)
    cur = scores.clone()
    alive = scores >= min_score
    neg_inf = torch.tensor(float("-inf"), dtype=cur.dtype, device=cur.device)
    keep, kept_scores = [], []
    while len(keep) < limit and bool(alive.any()):
        i = int(torch.where(alive, cur, neg_inf).argmax())
        keep.append(i)
        kept_scores.append(cur[i])
        alive[i] = False
        iou = segment_iou(segs[i], segs)
        if method == "hard":
            alive &= ~(iou > iou_threshold)
            continue
        decay = torch.exp(-(iou * iou) / sigma)
        cur = torch.where(alive, cur * decay, cur)
        alive &= cur >= min_score
    if not keep:
        return _empty(segs, scores)
    idx = torch.tensor(keep, dtype=torch.long, device=segs.device)
    return segs[idx], torch.stack(kept_scores), idx


def segment_voting(kept_segs: Tensor, all_segs: Tensor, all_scores: Tensor, iou_threshold: float = 0.95) -> Tensor:
    """HieraMamba segment voting: replace each kept segment by the score-weighted mean of all (pre-NMS) segments.

    kept_segs (k, 2), all_segs (n, 2), all_scores (n,) -> (k, 2). Segment i becomes
    ``sum_j w_ij s_j / sum_j w_ij`` with ``w_ij = score_j [IoU(kept_i, s_j) >= iou_threshold]``; a kept segment with no
    voter of positive weight is returned unchanged.
    """
    if kept_segs.shape[0] == 0 or all_segs.shape[0] == 0:
        return kept_segs.clone()
    w = (pairwise_iou(kept_segs, all_segs) >= iou_threshold).to(all_scores.dtype) * all_scores[None, :]
    wsum = w.sum(-1, keepdim=True)
    refined = (w @ all_segs.to(w.dtype)) / wsum.clamp(min=torch.finfo(w.dtype).tiny)
    return torch.where(wsum > 0, refined.to(kept_segs.dtype), kept_segs)


def soft_nms_voting(segs: Tensor, scores: Tensor, sigma: float = 0.9, voting_thresh: float = 0.95,
                    min_score: float = 0.001, max_num: int | None = None) -> tuple[Tensor, Tensor]:
    """HieraMamba's decoding NMS: Gaussian soft-NMS (``score *= exp(-IoU^2 / sigma)``, drop below ``min_score``,
    keep ``max_num``), then each kept segment replaced by the score-weighted mean of the input segments with
    ``IoU >= voting_thresh`` to it (``voting_thresh <= 0``: no voting). segs (n, 2), scores (n,) ->
    (segs (k, 2), scores (k,)) sorted by the decayed score, descending; empty input or nothing above
    ``min_score`` gives k = 0."""
    kept, kept_scores, _ = nms_1d(segs, scores, "gaussian", sigma=sigma, min_score=min_score, max_num=max_num)
    if voting_thresh > 0:
        kept = segment_voting(kept, segs, scores, voting_thresh)
    return kept, kept_scores
