"""Highlight-detection metrics (numpy only).

* QVHighlights HL-mAP / HL-Hit1 (official ``eval_highlight`` semantics): :func:`mk_gt_scores`, :func:`saliency_ap`,
  :func:`hl_hit1`, :func:`eval_highlight`;
* TVSum top-5 mAP (UMT / lighthouse protocol): :func:`tvsum_map`;
* YouTube-Highlights mAP (same trapezoid AP over all clips): :func:`youtube_highlights_map`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vidmamba.metrics.common import round_percent

__all__ = [
    "HL_THRESHOLDS",
    "mk_gt_scores",
    "fit_length",
    "saliency_ap",
    "saliency_ap_columns",
    "hl_hit1",
    "eval_highlight",
    "trapezoid_ap",
    "tvsum_map",
    "youtube_highlights_map",
]

#: name -> minimum saliency score (0-4 scale) for a clip to count as positive ("HL-min-<name>").
HL_THRESHOLDS: dict[str, int] = {"Fair": 2, "Good": 3, "VeryGood": 4}


def mk_gt_scores(duration: float, relevant_clip_ids: Sequence[int], saliency_scores, clip_length: float = 2,
                 ) -> np.ndarray:
    """Full-video GT saliency ``(int(duration / clip_length), n_annotators)``: zeros except at ``relevant_clip_ids``."""
    scores = np.asarray(saliency_scores, dtype=np.float64)
    ids = np.asarray(relevant_clip_ids, dtype=np.int64)
    if scores.ndim != 2 or len(scores) != len(ids):
        raise ValueError(f"saliency_scores must be (len(relevant_clip_ids), A), got {scores.shape} for {len(ids)} ids")
    n_clips = int(duration / clip_length)
    if len(ids) and (ids.min() < 0 or ids.max() >= n_clips):
        raise ValueError(f"relevant_clip_ids must lie in [0, {n_clips}) for duration {duration}")
    full = np.zeros((n_clips, scores.shape[1]))
    full[ids] = scores
    return full


def fit_length(pred, n: int) -> np.ndarray:
    """The official rule for a saliency prediction of the wrong length: truncate to ``n``, or zero-pad to ``n``."""
    pred = np.asarray(pred, dtype=np.float64)
    if len(pred) >= n:
        return pred[:n]
    return np.concatenate([pred, np.zeros(n - len(pred))])


def saliency_ap_columns(y_true, y_score) -> np.ndarray:
    """:func:`saliency_ap` for every column of ``y_true`` ``(T, A)`` against one score vector ``(T,)``: ``(A,)``."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_true = y_true.reshape(len(y_true), -1)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.shape != (len(y_true),):
        raise ValueError(f"y_score must have shape ({len(y_true)},), got {y_score.shape}")
    n = len(y_score)
    if n == 0:
        raise ValueError("saliency AP needs at least one clip")
    # sklearn's binary curve: descending scores, one threshold per distinct score
    order = np.argsort(y_score, kind="mergesort")[::-1]
    s, yt = y_score[order], y_true[order]
    thr_idx = np.r_[np.nonzero(np.diff(s))[0], n - 1]
    tps = np.cumsum(yt, axis=0)[thr_idx]  # (K, A)
    precision = tps / (thr_idx + 1.0)[:, None]
    total = tps[-1]
    recall = np.divide(tps, total, out=np.ones_like(tps), where=total > 0)
    # precision_recall_curve order: increasing threshold, then the (precision 1, recall 0) end point
    precision = np.vstack([precision[::-1], np.ones((1, tps.shape[1]))])
    recall = np.vstack([recall[::-1], np.zeros((1, tps.shape[1]))]).astype(np.float32)
    precision = np.maximum.accumulate(precision, axis=0)  # running-max "interpolation"
    changed = np.diff(recall, axis=0) != 0
    out = np.empty(y_true.shape[1])
    for a in range(y_true.shape[1]):
        col = y_true[:, a]
        if np.all(col == col[0]):
            out[a] = 0.0 if col[0] == 0 else 1.0
        else:
            out[a] = np.mean(precision[:-1, a][changed[:, a]])
    return out


def saliency_ap(y_true, y_score) -> float:
    """Average precision of binary clip labels ``y_true`` ranked by ``y_score`` (official ``get_ap``).

    Equivalent to sklearn's ``precision_recall_curve`` (tied scores share one threshold), then a running-max
    interpolated precision, then the mean of the precision at every recall change. All-zero labels give 0 and
    all-one labels give 1.
    """
    return float(saliency_ap_columns(np.asarray(y_true).reshape(-1, 1), y_score)[0])


def hl_hit1(pred_scores: Sequence, gt_binary: Sequence) -> float:
    """HL-Hit1 (fraction): the clip ``argmax(pred)`` (first on ties) is a hit when **any** annotator marks it positive.

    ``gt_binary[i]`` is ``(T_i, A)``; an argmax index ``>= T_i`` (prediction longer than the video) scores 0.
    """
    hits = np.zeros(len(pred_scores))
    for i, (pred, gt) in enumerate(zip(pred_scores, gt_binary)):
        clip = int(np.argmax(pred))
        if clip < len(gt):
            hits[i] = np.max(gt[clip])
    return float(np.mean(hits))


def eval_highlight(pred_scores: Sequence, gt_scores: Sequence,
                   thresholds: dict[str, int] | None = None) -> dict[str, dict[str, float]]:
    """QVHighlights HL metrics: ``{"HL-min-Fair": {"HL-mAP": .., "HL-Hit1": ..}, ...}`` (percent, 2 decimals).

    ``pred_scores[i]`` is the predicted saliency per 2-s clip, ``gt_scores[i]`` the full-range GT ``(T_i, 3)`` from
    :func:`mk_gt_scores`. Per threshold, each annotator column is binarised (``score >= min``); HL-mAP is the mean of
    the per-(query, annotator) :func:`saliency_ap`, where a prediction longer than ``T_i`` is truncated and a shorter
    one zero-padded (official behaviour); HL-Hit1 is :func:`hl_hit1` on the unmodified prediction.
    """
    thresholds = HL_THRESHOLDS if thresholds is None else thresholds
    if len(pred_scores) != len(gt_scores):
        raise ValueError(f"{len(pred_scores)} predictions but {len(gt_scores)} ground truths")
    names = list(thresholds)
    mins = np.array([thresholds[k] for k in names], dtype=np.float64)
    n_a = None
    ap = None
    for i, (pred, gt) in enumerate(zip(pred_scores, gt_scores)):
        gt = np.asarray(gt, dtype=np.float64)
        if n_a is None:
            n_a = gt.shape[1]
            ap = np.zeros((len(names), len(pred_scores), n_a))
        # one sort serves every (threshold, annotator) column: (T, n_thr * A)
        binary = (gt[:, None, :] >= mins[None, :, None]).reshape(len(gt), -1).astype(np.float64)
        ap[:, i, :] = saliency_ap_columns(binary, fit_length(pred, len(gt))).reshape(len(names), n_a)
    out = {}
    for j, name in enumerate(names):
        binary = [(np.asarray(g) >= mins[j]).astype(np.float64) for g in gt_scores]
        out[f"HL-min-{name}"] = {
            "HL-mAP": round_percent(np.mean(ap[j])) if ap is not None else float("nan"),
            "HL-Hit1": round_percent(hl_hit1(pred_scores, binary)),
        }
    return out


def trapezoid_ap(ranked_labels) -> float:
    """UMT's AP of binary labels already in ranked order (best first).

    Starting from recall 0 and precision 1, ``ap += (rec - rec_prev) * (prc + prc_prev) / 2`` at each rank, with
    recall relative to the positives **in this list**; 0 when the list has no positive.
    """
    labels = np.asarray(ranked_labels, dtype=np.float64).reshape(-1)
    num_gt = labels.sum()
    if num_gt == 0:
        return 0.0
    hits = np.cumsum(labels)
    rec = hits / num_gt
    prc = hits / np.arange(1, len(labels) + 1)
    rec_prev = np.r_[0.0, rec[:-1]]
    prc_prev = np.r_[1.0, prc[:-1]]
    return float(np.sum((rec - rec_prev) * (prc + prc_prev) / 2))


def _ranked(scores) -> np.ndarray:
    """Clip indices by descending score; ties keep the earlier clip first."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def tvsum_map(pred_scores: Sequence, labels: Sequence, top_k: int = 5) -> tuple[float, np.ndarray]:
    """TVSum top-k mAP (fraction) and the per-video AP (mean over annotators), UMT / lighthouse protocol.

    ``labels[i]`` is ``(T_i, A)`` (A = 20 annotators), ``pred_scores[i]`` is ``(T_i,)``. For each annotator the labels
    are binarised as ``label > median(label)``, clips are ranked by predicted score (stable: earlier clip first on
    ties) and the first ``top_k`` kept; AP is :func:`trapezoid_ap` of those. The result is the mean over annotators,
    then over videos (UMT averages over videos then annotators: identical when every video has the same number of
    annotators, as in TVSum).
    """
    per_video = np.zeros(len(pred_scores))
    for i, (pred, lab) in enumerate(zip(pred_scores, labels)):
        lab = np.asarray(lab, dtype=np.float64)
        if lab.ndim != 2 or lab.shape[0] != len(pred):
            raise ValueError(f"video {i}: labels {lab.shape} do not match {len(pred)} predicted clips")
        binary = (lab > np.median(lab, axis=0, keepdims=True)).astype(np.float64)
        top = binary[_ranked(pred)[:top_k]]
        per_video[i] = np.mean([trapezoid_ap(top[:, a]) for a in range(lab.shape[1])])
    return (float(np.mean(per_video)) if len(per_video) else float("nan")), per_video


def youtube_highlights_map(pred_scores: Sequence, labels: Sequence) -> float:
    """YouTube-Highlights mAP (fraction): per video, :func:`trapezoid_ap` of the binary labels (``label > 0``) of all
    clips ranked by predicted score (stable), then the mean over videos."""
    aps = []
    for i, (pred, lab) in enumerate(zip(pred_scores, labels)):
        lab = np.asarray(lab, dtype=np.float64).reshape(-1)
        if len(lab) != len(pred):
            raise ValueError(f"video {i}: {len(lab)} labels but {len(pred)} predicted clips")
        aps.append(trapezoid_ap((lab > 0)[_ranked(pred)]))
    return float(np.mean(aps)) if aps else float("nan")
