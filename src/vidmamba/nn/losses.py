"""Losses for temporal grounding, highlight detection and classification.

Conventions: every elementwise loss takes an optional bool ``mask`` (True = counts) shaped like the per-element loss and a
``reduction`` in {"none", "sum", "mean"}: "none" returns the per-element loss with masked-out entries set to 0, "sum"
sums the counted entries, "mean" divides that sum by the number of counted entries (0 when there are none, keeping the
graph). HieraMamba sums (``reduction="sum"``) and divides by its EMA positive count outside; UniVTG averages.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vidmamba.nn.mask import masked_fill_min
from vidmamba.nn.segments import segment_diou, segment_giou, segment_iou

REDUCTIONS = ("none", "sum", "mean")


def reduce_loss(loss: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Apply ``mask`` (same shape as ``loss`` or None) and ``reduction`` (see module docstring) to a per-element loss."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if mask is not None:
        loss = loss.masked_fill(~mask, 0)
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    count = max(loss.numel(), 1) if mask is None else mask.sum().clamp(min=1).to(loss.dtype)
    return total / count


# --------------------------------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------------------------------
def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                       label_smoothing: float = 0.0, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Sigmoid focal loss (RetinaNet) with optional label smoothing, any shape (e.g. (b, l) points).

    ``targets`` in [0, 1] (same shape as ``logits``). With smoothing eps the soft target is ``t (1 - eps) + eps / 2``
    (HieraMamba: eps 0.2, i.e. ``0.8 t + 0.1``). Per element::

        p_t = p t_s + (1 - p)(1 - t_s)          (soft target t_s)
        loss = alpha_t * BCE(logit, t_s) * (1 - p_t) ** gamma
        alpha_t = alpha if t >= 0.5 else 1 - alpha   (hard target; alpha < 0 disables the weighting)
    """
    targets = targets.to(logits.dtype)
    soft = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
    p_t = p * soft + (1 - p) * (1 - soft)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        hard = (targets >= 0.5).to(logits.dtype)
        loss = (alpha * hard + (1 - alpha) * (1 - hard)) * loss
    return reduce_loss(loss, mask, reduction)


def foreground_bce_loss(logits: Tensor, targets: Tensor, mask: Tensor | None = None, bg_weight: float = 0.1,
                        reduction: str = "mean") -> Tensor:
    """UniVTG foreground loss: BCE on per-clip logits (b, l) vs 0/1 targets (b, l), background clips weighted.

    Foreground clips weigh 1, background clips ``bg_weight`` (UniVTG eos_coef 0.1), pads (mask False) 0; "mean"
    divides by the number of valid clips (not by the weight sum), as UniVTG does.
    """
    targets = targets.to(logits.dtype)
    weight = torch.where(targets >= 0.5, torch.ones_like(targets), torch.full_like(targets, bg_weight))
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * weight
    return reduce_loss(loss, mask, reduction)


def soft_target_cross_entropy(logits: Tensor, soft_targets: Tensor, reduction: str = "mean",
                              mask: Tensor | None = None) -> Tensor:
    """Cross-entropy with a target distribution: ``-sum_c q_c log softmax(logits)_c``. logits, soft_targets (..., c)."""
    loss = -(soft_targets * torch.log_softmax(logits, dim=-1)).sum(-1)
    return reduce_loss(loss, mask, reduction)


def label_smoothing_cross_entropy(logits: Tensor, target: Tensor, smoothing: float = 0.1, reduction: str = "mean",
                                  mask: Tensor | None = None) -> Tensor:
    """Cross-entropy against ``(1 - smoothing) onehot(target) + smoothing / c``. logits (..., c), target (...) long."""
    c = logits.shape[-1]
    q = F.one_hot(target, c).to(logits.dtype) * (1.0 - smoothing) + smoothing / c
    return soft_target_cross_entropy(logits, q, reduction, mask)


# --------------------------------------------------------------------------------------------------------------------
# regression
# --------------------------------------------------------------------------------------------------------------------
def smooth_l1_span_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, beta: float = 1.0,
                        reduction: str = "mean") -> Tensor:
    """UniVTG span loss: smooth-L1 on (b, l, 2) ``(st, ed)`` spans, summed over the two ends -> per clip (b, l).

    ``mask`` (b, l) selects the clips that regress (UniVTG: clips inside the GT window); "mean" = per-clip mean.
    """
    loss = F.smooth_l1_loss(pred, target, beta=beta, reduction="none").sum(-1)
    return reduce_loss(loss, mask, reduction)


def giou_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """``1 - GIoU`` between (..., 2) ``(st, ed)`` spans -> per span (...)."""
    return reduce_loss(1.0 - segment_giou(pred, target), mask, reduction)


def _centred(offsets: Tensor, name: str) -> Tensor:
    """(..., 2) non-negative ``(left, right)`` distances from a point -> (..., 2) segment ``(-left, right)``."""
    if bool((offsets < 0).any()):
        raise ValueError(f"{name} offsets must be non-negative (left, right) distances")
    return torch.stack((-offsets[..., 0], offsets[..., 1]), dim=-1)


def ctr_iou_loss(pred_offsets: Tensor, target_offsets: Tensor, mask: Tensor | None = None,
                 reduction: str = "mean") -> Tensor:
    """HieraMamba ``reg_loss: iou``: ``1 - IoU`` of centre-offset segments. Offsets (..., 2) ``(left, right)`` >= 0.

    (For two segments around the same point the enclosing interval is the union, so GIoU equals IoU here; HieraMamba
    calls this ``ctr_giou_loss``.)
    """
    iou = segment_iou(_centred(pred_offsets, "pred"), _centred(target_offsets, "target"))
    return reduce_loss(1.0 - iou, mask, reduction)


def ctr_diou_loss(pred_offsets: Tensor, target_offsets: Tensor, mask: Tensor | None = None,
                  reduction: str = "mean") -> Tensor:
    """HieraMamba ``reg_loss: diou``: ``1 - IoU + (rho / C)^2`` on centre-offset segments, offsets (..., 2) >= 0.

    rho = ``(rp - lp - rg + lg) / 2`` (centre distance), C = ``max(lp, lg) + max(rp, rg)`` (enclosing length).
    """
    diou = segment_diou(_centred(pred_offsets, "pred"), _centred(target_offsets, "target"))
    return reduce_loss(1.0 - diou, mask, reduction)


# --------------------------------------------------------------------------------------------------------------------
# contrastive
# --------------------------------------------------------------------------------------------------------------------
def cosine_similarity_matrix(a: Tensor, b: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine similarity of every row of ``a`` (n, d) with every row of ``b`` (m, d) -> (n, m)."""
    return F.normalize(a, dim=-1, eps=eps) @ F.normalize(b, dim=-1, eps=eps).transpose(-1, -2)


def multi_positive_info_nce(sim: Tensor, pos_mask: Tensor, neg_mask: Tensor | None = None, tau: float = 0.07,
                            row_mask: Tensor | None = None, reduction: str = "mean") -> Tensor:
    """Multi-positive InfoNCE over rows of a similarity matrix (HieraMamba ACC and SPC, UniVTG saliency).

    sim (r, n); pos_mask, neg_mask (r, n) bool (``neg_mask=None``: every non-positive entry is a negative; entries in
    neither are ignored). Per row::

        loss = -log( sum_pos e^{s/tau} / (sum_pos e^{s/tau} + sum_neg e^{s/tau}) )

    A row counts when it has at least one positive (and ``row_mask``, (r,) bool, is True); other rows give 0.
    Returns (r,) for "none", else the sum / mean over counted rows.
    """
    if neg_mask is None:
        neg_mask = ~pos_mask
    logits = sim / tau
    lse_pos = torch.logsumexp(masked_fill_min(logits, pos_mask), dim=-1)
    lse_all = torch.logsumexp(masked_fill_min(logits, pos_mask | neg_mask), dim=-1)
    valid = pos_mask.any(-1)
    if row_mask is not None:
        valid = valid & row_mask
    loss = torch.where(valid, lse_all - lse_pos, torch.zeros_like(lse_all))
    return reduce_loss(loss, valid, reduction)


def symmetric_info_nce(sim: Tensor, tau: float = 0.07) -> Tensor:
    """Symmetric InfoNCE on a square (b, b) similarity matrix whose diagonal holds the matched pairs.

    Returns ``CE(rows) + CE(columns)`` (each averaged over the batch), as UniVTG's inter-video saliency loss.
    """
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return multi_positive_info_nce(sim, eye, tau=tau) + multi_positive_info_nce(sim.transpose(0, 1), eye, tau=tau)


def saliency_inter_loss(vid_feats: Tensor, txt_feats: Tensor, pos_idx: Tensor, tau: float = 0.07) -> Tensor:
    """UniVTG inter-video saliency loss: each video's positive clip must match its own sentence across the batch.

    vid_feats (b, l, d) per-clip features, txt_feats (b, d) sentence features, pos_idx (b,) long index of a positive
    clip per video. Cosine similarities (b, b) -> :func:`symmetric_info_nce`.
    """
    pos_feats = vid_feats[torch.arange(vid_feats.shape[0], device=vid_feats.device), pos_idx]
    return symmetric_info_nce(cosine_similarity_matrix(pos_feats, txt_feats), tau)


def saliency_intra_loss(vid_feats: Tensor, txt_feats: Tensor, saliency: Tensor, pos_idx: Tensor, mask: Tensor,
                        tau: float = 0.07) -> Tensor:
    """UniVTG intra-video saliency loss: rank the positive clip above the lower-saliency clips of its own video.

    vid_feats (b, l, d), txt_feats (b, d), saliency (b, l) scores, pos_idx (b,) long, mask (b, l) bool valid clips.
    Row b: similarities ``cos(v_bt, q_b)``, positive = clip ``pos_idx[b]``, negatives = valid clips with saliency below
    it; mean over videos of :func:`multi_positive_info_nce` (a video with no lower clip contributes 0). Only this
    within-video direction is computed (UniVTG's second, column-wise term mixes videos at equal clip indices).
    """
    b, l = saliency.shape
    rows = torch.arange(b, device=saliency.device)
    sim = F.cosine_similarity(vid_feats, txt_feats.unsqueeze(1), dim=-1)
    pos = torch.zeros(b, l, dtype=torch.bool, device=saliency.device)
    pos[rows, pos_idx] = True
    neg = (saliency < saliency[rows, pos_idx].unsqueeze(-1)) & mask
    loss = multi_positive_info_nce(sim, pos & mask, neg, tau, reduction="none")
    return loss.mean()


def saliency_rank_loss(scores: Tensor, targets: Tensor, mask: Tensor, margin: float = 0.2, min_gap: float = 0.0,
                       max_clips: int | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Graded saliency: pairwise margin ranking over the clips of each video (moment_detr's hinge, on all ordered pairs).

    scores (b, l) predicted per-clip saliency, targets (b, l) graded scores (e.g. the mean of TVSum's 20 annotators),
    mask (b, l) bool valid clips. For every pair of valid clips (i, j) of one video with ``t_i - t_j > min_gap``::

        loss_ij = max(0, margin - (s_i - s_j))

    mean over the pairs of a video, then over the videos that have at least one pair (0 with the graph when none).
    ``max_clips``: a video with more valid clips keeps a uniformly random subset of that many (bounds the l^2 pairs).
    """
    if scores.shape != targets.shape or scores.shape != mask.shape:
        raise ValueError(f"scores, targets and mask must have one shape, got {tuple(scores.shape)}, "
                         f"{tuple(targets.shape)}, {tuple(mask.shape)}")
    mask = mask.bool()
    if max_clips is not None and scores.shape[1] > max_clips:
        mask = random_subset(mask, max_clips, generator)
    targets = targets.to(scores.dtype)
    pairs = ((targets[:, :, None] - targets[:, None, :]) > min_gap) & mask[:, :, None] & mask[:, None, :]
    hinge = (margin - (scores[:, :, None] - scores[:, None, :])).clamp(min=0)         # (b, l, l): row i above col j
    per_video = reduce_loss(hinge, pairs, "none").sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1).to(scores.dtype)
    return reduce_loss(per_video, pairs.any(2).any(1), "mean")


def random_subset(candidates: Tensor, k: Tensor | int, generator: torch.Generator | None = None) -> Tensor:
    """Pick up to ``k`` entries per row uniformly at random among ``candidates`` (r, n) bool -> (r, n) bool.

    ``k`` is an int or an (r,) long tensor (e.g. ``ceil(neg_ratio * #pos)`` for ACC / SPC negative sampling); rows with
    fewer candidates keep all of them.
    """
    r, n = candidates.shape
    keys = torch.rand(r, n, generator=generator, device=candidates.device)
    keys = keys.masked_fill(~candidates, 2.0)  # non-candidates sort last
    rank = keys.argsort(dim=-1).argsort(dim=-1)
    if isinstance(k, Tensor):
        k = k.to(candidates.device).reshape(-1, 1)
    return candidates & (rank < k)
