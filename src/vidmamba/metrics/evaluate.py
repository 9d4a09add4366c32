"""File-level evaluation entry point used by ``vidmamba evaluate TASK --submission P --gt G``.

Tasks (all files are jsonl, one JSON object per line, matched by ``qid``; the submitted qid set must equal the
GT qid set and qids must be unique):

``qvhighlights``
    The official QVHighlights evaluation (:mod:`vidmamba.metrics.qvhighlights`): GT rows as in
    ``highlight_val_release.jsonl``, prediction rows with ``pred_relevant_windows`` and/or ``pred_saliency_scores``.
``moment_retrieval``
    Charades-STA / TACoS / ActivityNet in lighthouse format: GT ``relevant_windows``, predictions
    ``pred_relevant_windows`` ``[[st, ed, score], ...]`` sorted by score (the first is the top-1). R1@{0.3, 0.5..0.95},
    mIoU, mAP@{0.5..0.95} + average (:func:`~vidmamba.metrics.moment_retrieval.eval_moment_retrieval`).
``nlq``
    Same files as ``moment_retrieval`` (any number of predicted windows, possibly none); R@{1,5,10,50} at IoU
    {0.1,0.3,0.5}, predictions ranked by score (:func:`~vidmamba.metrics.moment_retrieval.eval_nlq`).
``tvsum``
    GT rows with ``label`` ``(T, 20)`` as in ``tvsum_val_release.jsonl``; predictions with ``pred_saliency_scores``
    (one per clip). A prediction longer than ``T`` is truncated to ``T``; a shorter one is rejected. Top-5 mAP
    (:func:`~vidmamba.metrics.highlight.tvsum_map`).
``youtube``
    YouTube Highlights (UMT protocol, github TencentARC/UMT ``datasets/youtube.py``). The GT may also be UMT's release
    file ``youtube_anno.json`` itself (``{vid: {"match": [...]}}``, any ``.json`` file): its rows are then the val
    videos of UMT's split of each domain that the submission's qids (video ids) belong to. GT rows carry either
    ``label``, the per-clip labels ``(T,)`` or ``(T, 1)`` as in lighthouse's ``youtube_highlight_val_release.jsonl`` (0 / 1), or
    UMT's ``match`` ``(T,)`` in {-1, 0, 1}; a clip is a highlight when its value is > 0. An optional ``domain`` adds a
    per-domain mAP. Predictions: ``pred_saliency_scores`` (one per clip; longer is truncated to ``T``, shorter is
    rejected). Per video, clips are ranked by score (stable) and the trapezoid AP over **all** clips is taken
    (:func:`~vidmamba.metrics.highlight.youtube_highlights_map`); ``HL-mAP`` is the mean over videos (a video with no
    highlight counts 0, as in UMT). UMT trains and reports one model per domain, so its number for a domain is the
    ``HL-mAP`` of that domain's val videos (``per_domain`` here when the GT mixes domains). ``HL-mAP`` (``brief``) is
    the checkpoint-selection metric (lighthouse selects HD datasets on ``mAP``).

Errors: :class:`~vidmamba.metrics.validation.SubmissionError` / ``GroundTruthError`` (``ValueError``) naming the
file, line, qid and field.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from vidmamba.metrics.common import round_percent
from vidmamba.metrics.highlight import tvsum_map, youtube_highlights_map
from vidmamba.metrics.moment_retrieval import eval_moment_retrieval, eval_nlq
from vidmamba.metrics.qvhighlights import eval_qvhighlights
from vidmamba.metrics.validation import (GroundTruthError, SubmissionError, as_score_vector, as_windows, match_rows,
                                        read_jsonl)

__all__ = ["PROTOCOLS", "evaluate_prediction_files", "evaluate_predictions"]

#: the metric protocols (each the name of the task that trains for it: :data:`vidmamba.tasks.TASKS`)
PROTOCOLS: tuple[str, ...] = ("qvhighlights", "moment_retrieval", "nlq", "tvsum", "youtube")


def _eval_windows(task, submission, ground_truth, submission_path, gt_path):
    sub, gt = match_rows(submission, ground_truth, submission_path, gt_path)
    allow_empty = task == "nlq"
    qids = list(gt)
    preds = [as_windows(sub[q], "pred_relevant_windows", submission_path, with_score=True, allow_empty=allow_empty)
             for q in qids]
    gts = [as_windows(gt[q], "relevant_windows", gt_path, error_cls=GroundTruthError, with_score=False)
           for q in qids]
    if task == "nlq":
        return eval_nlq(preds, gts)
    return eval_moment_retrieval(preds, gts)


def _tvsum_labels(row, path) -> np.ndarray:
    loc = {"path": path, "line": row.get("__line__"), "qid": row.get("qid"), "field": "label"}
    if "label" not in row:
        raise GroundTruthError("missing field", **loc)
    try:
        lab = np.asarray(row["label"], dtype=np.float64)
    except (TypeError, ValueError):
        raise GroundTruthError("label must be a (clips x annotators) matrix of numbers", **loc) from None
    if lab.ndim != 2 or lab.size == 0 or not np.all(np.isfinite(lab)):
        raise GroundTruthError(f"label must be a finite non-empty (clips x annotators) matrix, got {lab.shape}", **loc)
    return lab


def _youtube_labels(row, path) -> np.ndarray:
    """(T,) binary highlight labels of a GT row: ``label`` (T,) / (T, 1), else UMT's ``match``; positive = > 0."""
    field = "label" if "label" in row else "match"
    loc = {"path": path, "line": row.get("__line__"), "qid": row.get("qid"), "field": field}
    if field not in row:
        raise GroundTruthError("missing field: a YouTube GT row needs 'label' (lighthouse) or 'match' (UMT)", **loc)
    try:
        lab = np.asarray(row[field], dtype=np.float64)
    except (TypeError, ValueError):
        raise GroundTruthError(f"{field} must be a list of numbers, one per clip", **loc) from None
    if lab.ndim == 2 and lab.shape[1] == 1:
        lab = lab[:, 0]
    if lab.ndim != 1 or lab.size == 0 or not np.all(np.isfinite(lab)):
        raise GroundTruthError(f"{field} must be a finite non-empty list with one value per clip (or (T, 1)), "
                               f"got shape {lab.shape}", **loc)
    return (lab > 0).astype(np.float64)


def _clip_scores(sub, gt, labels, submission_path) -> list[np.ndarray]:
    """The submitted ``pred_saliency_scores`` per GT qid: at least one per labelled clip, cut to the label length."""
    preds = []
    for q, lab in zip(gt, labels):
        pred = as_score_vector(sub[q], "pred_saliency_scores", submission_path)
        if len(pred) < len(lab):
            raise SubmissionError(f"{len(pred)} scores for {len(lab)} labelled clips", path=submission_path,
                                  line=sub[q].get("__line__"), qid=q, field="pred_saliency_scores")
        preds.append(pred[: len(lab)])
    return preds


def _labelled_scores(submission, ground_truth, submission_path, gt_path, read_labels):
    """(GT rows by qid, qids, per-clip labels by ``read_labels(row, gt_path)``, the submitted scores cut to them)."""
    sub, gt = match_rows(submission, ground_truth, submission_path, gt_path)
    qids = list(gt)
    labels = [read_labels(gt[q], gt_path) for q in qids]
    return gt, qids, labels, _clip_scores(sub, gt, labels, submission_path)


def _eval_youtube(submission, ground_truth, submission_path, gt_path):
    gt, qids, labels, preds = _labelled_scores(submission, ground_truth, submission_path, gt_path, _youtube_labels)
    per_video = np.array([youtube_highlights_map([p], [lab]) for p, lab in zip(preds, labels)])
    out = OrderedDict(brief={"HL-mAP": round_percent(np.mean(per_video))})
    domains = [gt[q].get("domain") for q in qids]
    if any(d is not None for d in domains):
        names = sorted({str(d) for d in domains})
        out["per_domain"] = {n: round_percent(np.mean(per_video[[str(d) == n for d in domains]])) for n in names}
    out["per_video"] = {str(q): round_percent(v) for q, v in zip(qids, per_video)}
    return out


def _eval_tvsum(submission, ground_truth, submission_path, gt_path):
    _, qids, labels, preds = _labelled_scores(submission, ground_truth, submission_path, gt_path, _tvsum_labels)
    mean_ap, per_video = tvsum_map(preds, labels, top_k=5)
    return OrderedDict(brief={"HL-top5-mAP": round_percent(mean_ap)}, per_video={
        str(q): round_percent(v) for q, v in zip(qids, per_video)})


def evaluate_predictions(task: str, submission: list[dict], ground_truth: list[dict], *, submission_path=None,
                         gt_path=None, highlights_only: bool = False) -> dict:
    """Score already loaded rows (lists of dicts) for ``task`` (one of :data:`PROTOCOLS`).

    ``highlights_only`` (``qvhighlights`` only): score ``pred_saliency_scores`` alone; without it a submission that
    lacks ``pred_relevant_windows`` is an error rather than a silent drop of the moment-retrieval metrics.
    """
    if highlights_only and task != "qvhighlights":
        raise ValueError(f"highlights_only applies to the qvhighlights task only, not {task!r}")
    if task == "qvhighlights":
        return eval_qvhighlights(submission, ground_truth, submission_path=submission_path, gt_path=gt_path,
                                 highlights_only=highlights_only)
    if task in ("moment_retrieval", "nlq"):
        return _eval_windows(task, submission, ground_truth, submission_path, gt_path)
    if task == "tvsum":
        return _eval_tvsum(submission, ground_truth, submission_path, gt_path)
    if task == "youtube":
        return _eval_youtube(submission, ground_truth, submission_path, gt_path)
    raise ValueError(f"unknown task {task!r}; expected one of {', '.join(PROTOCOLS)}")


def _umt_youtube_gt(gt_path, submission: list[dict]) -> list[dict]:
    """GT rows from UMT's ``youtube_anno.json``: the val videos of UMT's split of every domain a submitted qid (a video
    id) belongs to."""
    from vidmamba.data.youtube import domain_of, read_youtube_annotations, umt_gt_rows

    videos = read_youtube_annotations(gt_path)
    domains = sorted({d for row in submission if (d := domain_of(str(row.get("qid")))) is not None})
    if not domains:
        raise GroundTruthError("no submitted qid is a video of UMT's YouTube Highlights splits (with UMT's "
                               "youtube_anno.json as the ground truth, the qids are video ids)", path=gt_path,
                               field="qid")
    return [row for domain in domains for row in umt_gt_rows(videos, domain)]


def evaluate_prediction_files(task: str, submission_path, gt_path, *, highlights_only: bool = False) -> dict:
    """Read the prediction and GT jsonl files and return the metrics dict for ``task`` (see the module docstring)."""
    if task not in PROTOCOLS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(PROTOCOLS)}")
    submission = read_jsonl(submission_path, SubmissionError)
    ground_truth = _umt_youtube_gt(gt_path, submission) if task == "youtube" and str(gt_path).endswith(".json") \
        else read_jsonl(gt_path, GroundTruthError)
    return evaluate_predictions(task, submission, ground_truth, submission_path=submission_path, gt_path=gt_path,
                                highlights_only=highlights_only)
