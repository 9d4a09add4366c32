"""The official QVHighlights evaluation (moment_detr ``standalone_eval``), reimplemented with numpy.

:func:`eval_qvhighlights` returns the same nested dict, with the same keys, key order and values, as the official
``eval_submission`` (verified to the last digit on the released validation sample). Rules reproduced:

* MR is scored only when ``pred_relevant_windows`` is present, HL only when ``pred_saliency_scores`` is; unlike the
  official script, a submission without ``pred_relevant_windows`` is an error unless ``highlights_only`` is asked for;
* MR-mAP: the first 10 windows **by list position**, per-query ActivityNet AP at IoU 0.5:0.05:0.95 averaged over
  queries; MR-R1: the **first listed** window (not the best-scored) against the GT window it overlaps most;
* length buckets short (0, 10], middle (10, 30], long (30, 150] drop GT windows outside the range and keep the
  queries with at least one left; ``full`` keeps everything;
* HL: GT from :func:`~vidmamba.metrics.highlight.mk_gt_scores` (2-s clips), thresholds Fair/Good/VeryGood = 2/3/4;
* every value ``float(f"{100*v:.2f}")``; "average" rounded after averaging.

Input checks (stricter than the official script, which would assert, crash or silently mis-score):

* the submitted qid set must equal the GT qid set (official) and qids must be unique (official: duplicates are
  silently merged); a ``SubmissionError`` names the missing / extra / duplicated qids;
* windows must be ``[start, end, score]`` of finite numbers with ``start <= end``; the window list must not be empty
  (the official R1 would crash);
* saliency scores must be a non-empty list of finite numbers. **A saliency list of the wrong length is accepted**, as
  in the official code: for HL-mAP it is truncated to the number of GT clips (``int(duration / 2)``) or zero-padded to
  it; for HL-Hit1 the argmax of the unmodified list is used and scores 0 when it falls beyond the GT clips;
* both prediction fields must be present in all entries or in none (the official code only looks at the first entry).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from vidmamba.metrics.common import QVH_IOU_THRESHOLDS, threshold_key
from vidmamba.metrics.highlight import eval_highlight, mk_gt_scores
from vidmamba.metrics.moment_retrieval import mr_map, mr_recall_at_1
from vidmamba.metrics.validation import GroundTruthError, SubmissionError, as_score_vector, as_windows, match_rows

__all__ = ["LENGTH_BUCKETS", "eval_qvhighlights", "eval_moment_retrieval_buckets"]

MR_FIELD = "pred_relevant_windows"
HL_FIELD = "pred_saliency_scores"

#: (name, min_len, max_len): a GT window is in a bucket when ``min_len < end - start <= max_len``.
LENGTH_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("short", 0, 10), ("middle", 10, 30), ("long", 30, 150), ("full", 0, 150))


def eval_moment_retrieval_buckets(pred_windows: dict, gt_windows: dict,
                                  buckets: Sequence[tuple[str, float, float]] = LENGTH_BUCKETS) -> dict:
    """``{bucket: {"MR-mAP": ..., "MR-R1": ...}}`` for qid-keyed predictions ``(P, 3)`` and GT ``(G, 2)``.

    ``pred_windows`` order is the query order. ``(0, 150)`` is the official "full" short-circuit (no filtering).
    A bucket without any query gets ``None`` values (the official script reports nan).
    """
    out = {}
    for name, lo, hi in buckets:
        if lo == 0 and hi == 150:
            gts = gt_windows
        else:
            gts = {}
            for qid, g in gt_windows.items():
                length = g[:, 1] - g[:, 0]
                kept = g[(lo < length) & (length <= hi)]
                if len(kept):
                    gts[qid] = kept
        qids = [q for q in pred_windows if q in gts]
        if not qids:  # the official script would report nan here
            keys = [threshold_key(t) for t in QVH_IOU_THRESHOLDS]
            out[name] = {"MR-mAP": dict.fromkeys(keys + ["average"]), "MR-R1": dict.fromkeys(keys)}
            continue
        preds = [pred_windows[q] for q in qids]
        g_list = [gts[q] for q in qids]
        out[name] = {"MR-mAP": mr_map(preds, g_list), "MR-R1": mr_recall_at_1(preds, g_list)}
    return out


def _field_presence(rows: Sequence[dict], field: str, path) -> bool:
    present = field in rows[0]
    for row in rows:
        if (field in row) != present:
            raise SubmissionError(
                f"present in some entries but not in others (first entry {'has' if present else 'lacks'} it)",
                path=path, line=row.get("__line__"), qid=row.get("qid"), field=field)
    return present


def eval_qvhighlights(submission: Sequence[dict], ground_truth: Sequence[dict], *, submission_path=None,
                      gt_path=None, highlights_only: bool = False) -> OrderedDict:
    """Score QVHighlights-format predictions against GT rows (lists of dicts as in the jsonl files).

    Returns the official structure: ``{"brief": {...}, "HL-min-Fair": ..., ..., "full": ..., "long": ...,
    "middle": ..., "short": ...}``. Raises :class:`SubmissionError` / :class:`GroundTruthError` on invalid input
    (see the module docstring for the rules, including the saliency length padding/truncation).

    A submission without ``pred_relevant_windows`` is an error (the official script silently drops the MR metrics)
    unless ``highlights_only``, which scores ``pred_saliency_scores`` alone (any windows are then ignored).
    """
    sub, gt = match_rows(submission, ground_truth, submission_path, gt_path)
    rows = list(sub.values())
    has_mr = _field_presence(rows, MR_FIELD, submission_path)
    has_hl = _field_presence(rows, HL_FIELD, submission_path)
    if not (has_mr or has_hl):
        raise SubmissionError(f"entries have neither '{MR_FIELD}' nor '{HL_FIELD}'", path=submission_path,
                              qid=rows[0]["qid"])
    has_mr = has_mr and not highlights_only
    if highlights_only and not has_hl:
        raise SubmissionError("missing: highlights-only scoring needs a saliency score per clip",
                              path=submission_path, line=rows[0].get("__line__"), qid=rows[0]["qid"], field=HL_FIELD)
    if not has_mr and not highlights_only:
        raise SubmissionError("missing: the moment-retrieval metrics need it (to score the saliency alone, use "
                              "--highlights-only / highlights_only=True)", path=submission_path,
                              line=rows[0].get("__line__"), qid=rows[0]["qid"], field=MR_FIELD)

    metrics: dict = {}
    brief: OrderedDict = OrderedDict()
    if has_mr:
        preds = {q: as_windows(r, MR_FIELD, submission_path, with_score=True) for q, r in sub.items()}
        gts = {q: as_windows(gt[q], "relevant_windows", gt_path, error_cls=GroundTruthError, with_score=False)
               for q in sub}
        mr = eval_moment_retrieval_buckets(preds, gts)
        metrics.update(mr)
        mr_brief = {
            "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
            "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
            "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
            "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
            "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
            "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
            "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
            "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
        }
        brief.update(sorted(mr_brief.items()))
    if has_hl:
        preds = [as_score_vector(r, HL_FIELD, submission_path) for r in rows]
        gts = [_gt_saliency(gt[q], gt_path) for q in sub]
        hl = eval_highlight(preds, gts)
        metrics.update(hl)
        brief.update((f"{k}-{sub_k.split('-')[1]}", v) for k, d in hl.items() for sub_k, v in d.items())
    out = OrderedDict(brief=brief)
    out.update(sorted(metrics.items()))
    return out


def _gt_saliency(row: dict, path) -> np.ndarray:
    """Validated full-range GT saliency ``(int(duration / 2), 3)`` of one GT row."""
    loc = {"path": path, "line": row.get("__line__"), "qid": row.get("qid")}
    for field in ("duration", "relevant_clip_ids", "saliency_scores"):
        if field not in row:
            raise GroundTruthError("missing field (needed for highlight metrics)", field=field, **loc)
    try:
        duration = float(row["duration"])
        if not np.isfinite(duration) or int(duration / 2) < 1:
            raise ValueError(f"duration {row['duration']!r} gives no 2-s clip")
        return mk_gt_scores(duration, row["relevant_clip_ids"], row["saliency_scores"])
    except (TypeError, ValueError, IndexError) as exc:
        raise GroundTruthError(f"invalid saliency annotation ({exc})", field="saliency_scores", **loc) from None
