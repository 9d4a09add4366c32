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


# ---------------------------------------------------------------------------------------------------------------------
# HieraMamba losses
# ---------------------------------------------------------------------------------------------------------------------
def official_acc(anchors, clips, anchor_mask, clip_mask, projector, tau, neg_ratio, gap_ratio) -> float:
    """HieraMamba ``libs/modeling/contrastive_losses.py`` ``contrastive_subsample_negative_mp`` (radius 0, random
    negatives, no cross-video negatives) on one pyramid level, as loops. anchors (B, Na, D), clips (B, L, D)
    (channel-last), masks (B, Na) / (B, L) bool; ``projector`` maps (n, D) to unit vectors.

    An anchor takes part when it is valid and has a valid child (clips 2t, 2t + 1); its positives are those children,
    its negatives the taking-part anchors of the same video at index distance > ``gap = max(1, int(gap_ratio *
    Na))`` (Na: the padded anchor length, as the official code); loss ``-log(P / (P + N + 1e-9))`` with
    ``P = sum_pos e^{s / tau}``, ``N = sum_neg e^{s / tau}``. Returns the mean over every taking-part anchor of the
    batch (0.0 when none). Only the regime where every candidate negative is drawn (``ceil(neg_ratio * #pos) >=
    #candidates``) is reproducible; the oracle refuses the others. (Children are looked up inside the video: the
    official flat indexing would reach into the next video for an odd L, which its padded training lengths never
    have.)"""
    batch, na, _ = anchors.shape
    gap = max(1, int(gap_ratio * na))
    rows = [(b, t, [c for c in (2 * t, 2 * t + 1) if c < clips.shape[1] and clip_mask[b, c]])
            for b in range(batch) for t in range(na) if anchor_mask[b, t]]
    rows = [r for r in rows if r[2]]
    if not rows:
        return 0.0
    z = {(b, t): projector(anchors[b, t][None])[0] for b, t, _ in rows}
    losses = []
    for b, t, children in rows:
        p = sum(math.exp(float(z[b, t] @ projector(clips[b, c][None])[0]) / tau) for c in children)
        candidates = [(b2, t2) for b2, t2, _ in rows if b2 == b and abs(t2 - t) > gap]
        assert min(max(math.ceil(neg_ratio * len(children)), 1), len(candidates)) == len(candidates), \
            "random negative draws cannot be compared: give neg_ratio large enough to draw every candidate"
        n = sum(math.exp(float(z[b, t] @ z[c]) / tau) for c in candidates)
        losses.append(-math.log(p / (p + n + 1e-9)))
    return sum(losses) / len(losses)


def official_spc(feats, valid, labels, span, projector, tau, neg_ratio) -> float:
    """HieraMamba ``libs/modeling/losses.py`` ``MultiScaleMaskedGTPointContrastive._compute_infonce_loss_pooled`` on
    one pyramid level, as loops. feats (R, L, D) one row per query; valid, labels (positive points), span (points
    inside the ground truth) (R, L) bool. Per row: the valid points are projected; positives = labels, negatives =
    neither positive nor in the span; rows lacking either are skipped; prototype = normalised mean of the positives;
    loss ``-(logsumexp(pos / tau) - logsumexp([pos; neg] / tau))``. Mean over the counted rows (0.0 when none).
    Every negative must fit the ``int(#pos * neg_ratio)`` budget (the random subset is not reproducible)."""
    total, counted = 0.0, 0
    for r in range(feats.shape[0]):
        idx = [i for i in range(feats.shape[1]) if valid[r, i]]
        if not idx:
            continue
        proj = projector(feats[r, idx])
        pos = [k for k, i in enumerate(idx) if labels[r, i]]
        neg = [k for k, i in enumerate(idx) if not labels[r, i] and not span[r, i]]
        if not pos or not neg:
            continue
        assert int(len(pos) * neg_ratio) >= len(neg), "give neg_ratio large enough to draw every negative"
        proto = F.normalize(proj[pos].mean(0), dim=0)
        sim_pos = [float(proto @ proj[k]) / tau for k in pos]
        sim_all = sim_pos + [float(proto @ proj[k]) / tau for k in neg]
        total += -(math.log(sum(math.exp(s) for s in sim_pos)) - math.log(sum(math.exp(s) for s in sim_all)))
        counted += 1
    return total / counted if counted else 0.0


def official_point_labels(points, target, radius):
    """HieraMamba ``libs/worker.py`` ``_annotate_points_per_video``: points (P, 4) ``(coord, r_min, r_max, stride)``,
    target (2,) in grid units -> (labels (P,) bool, offsets (P, 2) in strides). Positive: strictly inside the centre
    window ``[ctr -+ radius * stride] cut to the target`` and ``max(pt - st, ed - pt)`` in ``[r_min, r_max)``."""
    to_st, to_ed = points[:, 0] - target[0], target[1] - points[:, 0]
    ctr = 0.5 * (target[0] + target[1])
    t_min = (ctr - points[:, 3] * radius).clamp(min=float(target[0]))
    t_max = (ctr + points[:, 3] * radius).clamp(max=float(target[1]))
    inside = (points[:, 0] - t_min > 0) & (t_max - points[:, 0] > 0)
    reach = torch.maximum(to_st, to_ed)
    return inside & (reach >= points[:, 1]) & (reach < points[:, 2]), torch.stack([to_st, to_ed], -1) / points[:, 3:]


def official_focal(logits, labels, alpha, gamma, smoothing):
    """HieraMamba ``_calc_focal_loss`` + ``sigmoid_focal_loss``: targets smoothed to ``y (1 - e) + e / 2``; p_t from
    the smoothed target, alpha_t from the mask ``target >= 0.5``; summed."""
    t = labels.float() * (1.0 - smoothing) + smoothing / 2
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    loss = F.binary_cross_entropy_with_logits(logits, t, reduction="none") * (1 - p_t) ** gamma
    hard = (t >= 0.5).float()
    return ((alpha * hard + (1 - alpha) * (1 - hard)) * loss).sum()


def official_offset_iou_loss(pred, target, diou: bool):
    """SnAG / HieraMamba ``ctr_giou_loss`` (really 1 - IoU) or ``ctr_diou_loss`` on (left, right) offsets, summed."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    iou = inter / ((lp + rp) + (lg + rg) - inter).clamp(min=1e-8)
    loss = 1.0 - iou
    if diou:
        loss = loss + (0.5 * (rp - lp - rg + lg) / (torch.maximum(lp, lg) + torch.maximum(rp, rg)).clamp(min=1e-8)) ** 2
    return loss.sum()


def official_hieramamba_losses(model, enc, segments, norm) -> dict[str, float]:
    """The official trainer's loss for one batch (``libs/worker.py`` ``TrainerAuxiliary._microbatch_forward_backward``)
    applied to a vidmamba HieraMamba's encoded batch ``enc`` (``model.encode``) with ground truth ``segments`` (Q, 2)
    (grid units) and loss normaliser ``norm``: cls (focal, summed over every valid point of every query) and reg
    (IoU / DIoU, summed over the positive points), ACC (:func:`official_acc` summed over levels, times the mean
    queries per video with late fusion) and SPC (:func:`official_spc` summed over levels), each divided by ``norm``;
    ``loss = cls + w_reg reg + w_acc ACC + w_spc SPC``. The points (coordinates, ranges, strides) are the model's."""
    cfg = model.cfg
    points = model.points(enc)
    logits, offsets, valid = (torch.cat(x, 1) for x in (enc.logits, enc.offsets, enc.masks))
    labels, target_off = zip(*(official_point_labels(points, s, cfg.center_radius) for s in segments))
    labels, target_off = torch.stack(labels) & valid, torch.stack(target_off)
    cls = official_focal(logits[valid], labels[valid], cfg.focal_alpha, cfg.focal_gamma, cfg.label_smoothing)
    reg = official_offset_iou_loss(offsets[labels], target_off[labels], cfg.reg_loss == "diou")
    bb = enc.backbone
    acc = sum(official_acc(a, c, am, cm, model.acc_proj, cfg.contrast_tau, cfg.acc_neg_ratio, cfg.acc_gap_ratio)
              for a, c, am, cm in zip(bb.anchors, bb.feats, bb.anchor_masks, bb.masks))
    if not cfg.early_fusion:                                         # text_size.float().mean()
        acc *= len(enc.rows) / bb.feats[0].shape[0]
    spc, start = 0.0, 0
    for feats, mask in zip(bb.feats, enc.masks):
        level = slice(start, start + mask.shape[1])
        start = level.stop
        coord, stride = points[level, 0], points[level, 3]          # span: ceil(st / s) <= coord / s <= floor(ed / s)
        span = ((coord / stride >= torch.ceil(segments[:, :1] / stride))
                & (coord / stride <= torch.floor(segments[:, 1:] / stride)))
        spc += official_spc(feats[enc.rows], mask, labels[:, level], span, model.spc_proj, cfg.contrast_tau,
                            cfg.spc_neg_ratio)
    parts = {"loss_cls": float(cls) / norm, "loss_reg": float(reg) / norm, "loss_acc": acc / norm,
             "loss_spc": spc / norm}
    parts["loss"] = (parts["loss_cls"] + cfg.w_reg * parts["loss_reg"] + cfg.w_acc * parts["loss_acc"]
                     + cfg.w_spc * parts["loss_spc"])
    return parts


# ---------------------------------------------------------------------------------------------------------------------
# MambaVL
# ---------------------------------------------------------------------------------------------------------------------
def mambavl_released_init(model: nn.Module) -> None:
    """MambaVL's released re-initialisation (``Dongzhikang/MambaVL@601b789``, ``slowfast/models/
    video_model_builder.py``, class ``AVION``, end of ``__init__``): ``self.init_weights()`` -- xavier-uniform on
    every parameter with more than one dimension, in ``named_parameters()`` order -- then
    ``self.apply(self._init_weights)``: ``Module.apply`` visits children before their parent; an ``nn.Linear`` gets
    ``trunc_normal_(weight, std=.02)`` (``torch.nn.init``) and a zero bias, an ``nn.LayerNorm`` weight 1 and bias 0."""
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

        def init(m):
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.LayerNorm):
                nn.init.constant_(m.bias, 0)
                nn.init.constant_(m.weight, 1.0)

        model.apply(init)
