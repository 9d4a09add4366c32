"""Moment-retrieval metrics (numpy only): temporal IoU, detection AP (ActivityNet style), R1, mIoU and R@k.

Conventions shared by every function here:

* a query's predictions are an array ``(P, 3)`` of ``[start, end, score]``; its ground truth an array ``(G, 2)``;
* a batch of queries is a pair of equally long sequences of such arrays (same query order in both);
* an IoU whose union is 0 (two zero-length windows at the same point) is defined as 0.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vidmamba.metrics.common import QVH_IOU_THRESHOLDS, round_percent, threshold_key

__all__ = [
    "temporal_iou",
    "temporal_iou_paired",
    "average_precision_detection",
    "mr_map",
    "top1_ious",
    "mr_recall_at_1",
    "recall_at_k_iou",
    "eval_moment_retrieval",
    "NLQ_KS",
    "NLQ_IOU_THRESHOLDS",
    "eval_nlq",
]

NLQ_KS: tuple[int, ...] = (1, 5, 10, 50)
NLQ_IOU_THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5)
_NEG = -np.inf


def temporal_iou(spans1, spans2) -> np.ndarray:
    """IoU between every window of ``spans1`` ``(N, 2)`` and of ``spans2`` ``(M, 2)``: ``(N, M)`` in ``[0, 1]``.

    Union is ``len1 + len2 - inter`` (computed in that order, like the official code).
    """
    a = np.asarray(spans1, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(spans2, dtype=np.float64).reshape(-1, 2)
    return _iou(a[:, None, :], b[None, :, :])


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Broadcasting IoU of windows ``a[..., 0:2]`` and ``b[..., 0:2]``."""
    inter = np.clip(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def temporal_iou_paired(spans1, spans2) -> np.ndarray:
    """IoU of ``spans1[i]`` with ``spans2[i]``, union taken as ``max(end) - min(start)`` (official R1 formula).

    That union equals the true one whenever the windows overlap and the IoU is 0 otherwise, so the value is the
    IoU; the formula is kept for bit-exactness with the official evaluation.
    """
    a = np.asarray(spans1, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(spans2, dtype=np.float64).reshape(-1, 2)
    inter = np.maximum(0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    union = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _pad(arrays: Sequence[np.ndarray], width: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged ``(n_i, width)`` arrays into ``(Q, max n_i, width)`` (filled with ``fill``) plus a valid mask."""
    arrays = [np.asarray(x, dtype=np.float64).reshape(-1, width) for x in arrays]
    lens = np.array([len(x) for x in arrays], dtype=np.int64)
    n = max(int(lens.max(initial=0)), 1)
    out = np.full((len(arrays), n, width), fill, dtype=np.float64)
    valid = np.arange(n)[None, :] < lens[:, None]
    if lens.sum():
        out[valid] = np.concatenate(arrays, axis=0)
    return out, valid


def average_precision_detection(pred_windows: Sequence, gt_windows: Sequence,
                                iou_thresholds: Sequence[float] = QVH_IOU_THRESHOLDS,
                                max_pred_windows: int | None = 10) -> np.ndarray:
    """Per-query detection AP at each IoU threshold: ``(Q, T)`` (fractions in [0, 1]).

    The official QVHighlights / ActivityNet protocol, vectorised over queries and thresholds:

    1. keep the first ``max_pred_windows`` predictions **by list position**;
    2. stable-sort them by descending score (ties keep list order);
    3. each prediction, in that order, is a true positive when some not-yet-matched GT window has IoU >= thr;
       it then locks the unmatched GT with the highest IoU (among equal IoUs, the later GT in the list — what the
       reference's reversed ``argsort`` gives for small arrays);
    4. VOC-2011 interpolated AP: precision envelope, summed over recall changes (the sum is accumulated in the
       same order as ``np.sum`` on the selected terms, so results are bit-identical).

    A query with no prediction scores 0; one with no GT window scores 0.
    """
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    n_q, n_t = len(pred_windows), len(thr)
    if len(gt_windows) != n_q:
        raise ValueError(f"{n_q} prediction lists but {len(gt_windows)} ground-truth lists")
    if n_q == 0:
        return np.zeros((0, n_t))
    preds = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in pred_windows]
    if max_pred_windows is not None:
        preds = [p[:max_pred_windows] for p in preds]
    pw, pvalid = _pad(preds, 3, 0.0)
    gw, gvalid = _pad(gt_windows, 2, 0.0)
    # stable sort by descending score; padding (score -inf) goes last
    score = np.where(pvalid, pw[..., 2], _NEG)
    order = np.argsort(-score, axis=1, kind="stable")
    pw = np.take_along_axis(pw, order[..., None], axis=1)
    pvalid = np.take_along_axis(pvalid, order, axis=1)
    n_p, n_g = pw.shape[1], gw.shape[1]

    iou = _iou(pw[:, :, None, :], gw[:, None, :, :])  # (Q, P, G)
    iou = np.where(gvalid[:, None, :], iou, _NEG)
    locked = np.zeros((n_q, n_t, n_g), dtype=bool)
    tp = np.zeros((n_q, n_t, n_p), dtype=bool)
    qi, ti = np.arange(n_q)[:, None], np.arange(n_t)[None, :]
    for p in range(n_p):
        iou_p = iou[:, None, p, :]  # (Q, 1, G)
        cand = (iou_p >= thr[None, :, None]) & ~locked  # (Q, T, G)
        masked = np.where(cand, iou_p, _NEG)
        g = n_g - 1 - np.argmax(masked[..., ::-1], axis=-1)  # last index among the maxima
        hit = cand.any(-1) & pvalid[:, p, None]
        tp[..., p] = hit
        locked[qi, ti, g] |= hit

    n_gt = gvalid.sum(1).astype(np.float64)[:, None, None]
    tp_cum = np.cumsum(tp, axis=-1, dtype=np.float64)
    rank = np.arange(1, n_p + 1, dtype=np.float64)
    precision = np.where(pvalid[:, None, :], tp_cum / rank, 0.0)
    recall = np.divide(tp_cum, n_gt, out=np.zeros_like(tp_cum), where=n_gt > 0)
    zeros, ones = np.zeros((n_q, n_t, 1)), np.ones((n_q, n_t, 1))
    mprec = np.concatenate([zeros, precision, zeros], axis=-1)
    mprec = np.maximum.accumulate(mprec[..., ::-1], axis=-1)[..., ::-1]
    mrec = np.concatenate([zeros, recall, ones], axis=-1)
    changed = mrec[..., 1:] != mrec[..., :-1]
    terms = np.where(changed, (mrec[..., 1:] - mrec[..., :-1]) * mprec[..., 1:], 0.0)
    ap = np.zeros((n_q, n_t))
    for k in range(terms.shape[-1]):  # sequential, like np.sum on fewer than 8 terms
        ap += terms[..., k]
    for q, t in zip(*np.nonzero(changed.sum(-1) >= 8)):  # np.sum switches to pairwise summation at 8 terms
        ap[q, t] = np.sum(terms[q, t][changed[q, t]])
    ap[(gvalid.sum(1) == 0) | (pvalid.sum(1) == 0)] = 0.0
    return ap


def mr_map(pred_windows: Sequence, gt_windows: Sequence, iou_thresholds: Sequence[float] = QVH_IOU_THRESHOLDS,
           max_pred_windows: int | None = 10) -> dict[str, float]:
    """MR-mAP as reported: ``{"0.5": .., ..., "average": ..}`` in percent (2 decimals).

    Per-query AP is averaged over queries per threshold, then over thresholds ("average" is rounded after
    averaging the unrounded values).
    """
    ap = average_precision_detection(pred_windows, gt_windows, iou_thresholds, max_pred_windows)
    per_thr = ap.mean(0) if len(ap) else np.zeros(len(iou_thresholds))
    out = {threshold_key(t): v for t, v in zip(iou_thresholds, per_thr)}
    out["average"] = np.mean(per_thr)
    return {k: round_percent(v) for k, v in out.items()}


def top1_ious(pred_windows: Sequence, gt_windows: Sequence) -> np.ndarray:
    """IoU of each query's **first listed** predicted window with the GT window that overlaps it most (``(Q,)``).

    The GT window is the argmax of the IoU (first one on ties); the IoU is then recomputed with
    :func:`temporal_iou_paired`, as the official ``compute_mr_r1`` does.
    """
    if len(pred_windows) != len(gt_windows):
        raise ValueError(f"{len(pred_windows)} prediction lists but {len(gt_windows)} ground-truth lists")
    if not len(pred_windows):
        return np.zeros(0)
    top1 = np.stack([np.asarray(p, dtype=np.float64).reshape(-1, 3)[0, :2] for p in pred_windows])
    gw, gvalid = _pad(gt_windows, 2, 0.0)
    cross = np.where(gvalid, _iou(top1[:, None, :], gw), _NEG)
    best = gw[np.arange(len(gw)), np.argmax(cross, axis=1)]
    return temporal_iou_paired(top1, best)


def mr_recall_at_1(pred_windows: Sequence, gt_windows: Sequence,
                   iou_thresholds: Sequence[float] = QVH_IOU_THRESHOLDS) -> dict[str, float]:
    """MR-R1 (percent, 2 decimals) per threshold: a hit when :func:`top1_ious` >= thr."""
    ious = top1_ious(pred_windows, gt_windows)
    return {threshold_key(t): round_percent(np.mean(ious >= t)) for t in iou_thresholds}


def recall_at_k_iou(pred_windows: Sequence, gt_windows: Sequence, ks: Sequence[int] = NLQ_KS,
                    iou_thresholds: Sequence[float] = NLQ_IOU_THRESHOLDS) -> np.ndarray:
    """NLQ-style R@k (fractions) as an array ``(len(ks), len(iou_thresholds))``.

    Predictions are stable-sorted by descending score; a query is a hit at ``(k, thr)`` when the **max** IoU among
    its top-k predictions (all of them if it has fewer than k) is >= thr. With several GT windows, a prediction's
    IoU is its best IoU over them.
    """
    if len(pred_windows) != len(gt_windows):
        raise ValueError(f"{len(pred_windows)} prediction lists but {len(gt_windows)} ground-truth lists")
    thr = np.asarray(iou_thresholds, dtype=np.float64)
    if not len(pred_windows):
        return np.zeros((len(ks), len(thr)))
    pw, pvalid = _pad(pred_windows, 3, 0.0)
    gw, gvalid = _pad(gt_windows, 2, 0.0)
    order = np.argsort(-np.where(pvalid, pw[..., 2], _NEG), axis=1, kind="stable")
    pw = np.take_along_axis(pw, order[..., None], axis=1)
    pvalid = np.take_along_axis(pvalid, order, axis=1)
    iou = np.where(gvalid[:, None, :], _iou(pw[:, :, None, :], gw[:, None, :, :]), _NEG).max(-1)
    best = np.maximum.accumulate(np.where(pvalid, iou, _NEG), axis=1)  # (Q, P) best IoU within the top-(j+1)
    out = np.zeros((len(ks), len(thr)))
    for i, k in enumerate(ks):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        at_k = best[:, min(k, best.shape[1]) - 1]
        out[i] = (at_k[:, None] >= thr[None, :]).mean(0)
    return out


def eval_moment_retrieval(pred_windows: Sequence, gt_windows: Sequence,
                          r1_thresholds: Sequence[float] = (0.3,) + QVH_IOU_THRESHOLDS,
                          map_thresholds: Sequence[float] = QVH_IOU_THRESHOLDS,
                          max_pred_windows: int | None = 10) -> dict:
    """Lighthouse-style MR metrics for Charades-STA / TACoS / ActivityNet (no length buckets).

    R1 uses the first listed window (emit windows sorted by score); mIoU is the mean of the same top-1 IoUs;
    mAP is the official per-query AP over the first ``max_pred_windows`` windows. Returns::

        {"brief": {"MR-full-R1@0.3", "MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mIoU",
                   "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75"},
         "full": {"MR-mAP": {...thresholds, "average"}, "MR-R1": {...thresholds}, "MR-mIoU": float}}
    """
    ious = top1_ious(pred_windows, gt_windows)
    r1 = {threshold_key(t): round_percent(np.mean(ious >= t)) for t in r1_thresholds}
    m_iou = round_percent(np.mean(ious))
    mean_ap = mr_map(pred_windows, gt_windows, map_thresholds, max_pred_windows)
    brief = {f"MR-full-R1@{k}": r1[k] for k in ("0.3", "0.5", "0.7") if k in r1}
    brief["MR-full-mIoU"] = m_iou
    brief["MR-full-mAP"] = mean_ap["average"]
    brief.update({f"MR-full-mAP@{k}": mean_ap[k] for k in ("0.5", "0.75") if k in mean_ap})
    return {"brief": brief, "full": {"MR-mAP": mean_ap, "MR-R1": r1, "MR-mIoU": m_iou}}


def eval_nlq(pred_windows: Sequence, gt_windows: Sequence, ks: Sequence[int] = NLQ_KS,
             iou_thresholds: Sequence[float] = NLQ_IOU_THRESHOLDS) -> dict:
    """NLQ R@k at IoU thresholds (percent, 2 decimals): ``{"brief": {"R1@0.3": ..., "avg": ...}, "R@k": {...}}``.

    ``brief`` holds every ``R{k}@{thr}`` plus ``"avg"``: the Ego4D-NLQ summary, the mean of R1@0.3, R1@0.5, R5@0.3 and
    R5@0.5 (unrounded values averaged, then rounded), present when those four are computed.
    """
    rec = recall_at_k_iou(pred_windows, gt_windows, ks, iou_thresholds)
    keys = [threshold_key(t) for t in iou_thresholds]
    full = {f"R@{k}": {key: round_percent(rec[i, j]) for j, key in enumerate(keys)} for i, k in enumerate(ks)}
    brief = {f"R{k}@{key}": full[f"R@{k}"][key] for k in ks for key in keys}
    idx = {(k, key): (i, j) for i, k in enumerate(ks) for j, key in enumerate(keys)}
    four = [(1, "0.3"), (1, "0.5"), (5, "0.3"), (5, "0.5")]
    if all(c in idx for c in four):
        brief["avg"] = round_percent(np.mean([rec[idx[c]] for c in four]))
    return {"brief": brief, **full}
