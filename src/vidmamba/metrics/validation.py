"""Reading and validating prediction / ground-truth jsonl files (numpy only).

Every problem is reported with an exception that names the file, the line (for malformed JSON), the qid and the
field, so that a user can fix a submission without reading the evaluation code:

* :class:`SubmissionError` for the prediction file,
* :class:`GroundTruthError` for the annotation file.

Both derive from :class:`MetricsInputError`, itself a :class:`ValueError`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from vidmamba.errors import VidmambaError

__all__ = [
    "MetricsInputError",
    "SubmissionError",
    "GroundTruthError",
    "read_jsonl",
    "index_by_qid",
    "check_qid_sets",
    "match_rows",
    "as_windows",
    "as_score_vector",
]


class MetricsInputError(VidmambaError, ValueError):
    """A prediction or ground-truth input cannot be evaluated.

    Attributes ``path``, ``line``, ``qid`` and ``field`` hold what is known about the location (else ``None``).
    """

    kind = "input"

    def __init__(self, message: str, *, path=None, line: int | None = None, qid=None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        self.qid = qid
        self.field = field
        where = []
        if self.path is not None:
            where.append(f"{self.kind} file '{self.path}'" + (f" line {line}" if line is not None else ""))
        if qid is not None:
            where.append(f"qid {qid!r}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class SubmissionError(MetricsInputError):
    """The prediction (submission) file is missing, malformed or inconsistent with the ground truth."""

    kind = "submission"


class GroundTruthError(MetricsInputError):
    """The ground-truth annotation file is missing or malformed."""

    kind = "ground-truth"


def read_jsonl(path, error_cls: type[MetricsInputError] = SubmissionError) -> list[dict]:
    """Read a jsonl file whose every non-blank line is a JSON object; errors name the file and the 1-based line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error_cls("file not found", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error_cls(f"cannot read file ({exc})", path=path) from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error_cls(f"malformed JSON ({exc.msg} at column {exc.colno})", path=path, line=lineno) from None
        if not isinstance(row, dict):
            raise error_cls(f"expected a JSON object, got {type(row).__name__}", path=path, line=lineno)
        row["__line__"] = lineno
        rows.append(row)
    if not rows:
        raise error_cls("file contains no entries", path=path)
    return rows


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _loc(row: dict, path) -> dict:
    return {"path": path, "line": row.get("__line__"), "qid": row.get("qid")}


def _check_qid(row: dict, path, error_cls) -> Any:
    if "qid" not in row:
        raise error_cls("missing field", field="qid", path=path, line=row.get("__line__"))
    qid = row["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        raise error_cls(f"qid must be an int or a string, got {qid!r}", field="qid", **_loc(row, path))
    return qid


def index_by_qid(rows: Sequence[dict], path=None, error_cls: type[MetricsInputError] = SubmissionError) -> dict:
    """Map qid -> row, preserving file order; rejects a missing/invalid qid and duplicated qids."""
    out: dict = {}
    for row in rows:
        qid = _check_qid(row, path, error_cls)
        if qid in out:
            first = out[qid].get("__line__")
            raise error_cls(f"duplicate qid (first seen on line {first})", field="qid", **_loc(row, path))
        out[qid] = row
    return out


def check_qid_sets(pred_qids: Iterable, gt_qids: Iterable, path=None) -> None:
    """Require the submitted qid set to equal the GT qid set (the official assert); the error names the offenders."""
    pred_qids, gt_qids = list(pred_qids), list(gt_qids)
    pred_set, gt_set = set(pred_qids), set(gt_qids)
    missing = [q for q in gt_qids if q not in pred_set]
    extra = [q for q in pred_qids if q not in gt_set]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} ground-truth qid(s) have no prediction, e.g. {missing[:5]}")
    if extra:
        parts.append(f"{len(extra)} predicted qid(s) are not in the ground truth, e.g. {extra[:5]}")
    msg = "; ".join(parts)
    types_p = {type(q).__name__ for q in pred_qids}
    types_g = {type(q).__name__ for q in gt_qids}
    if types_p != types_g:
        msg += f" (qid types differ: submission {sorted(types_p)}, ground truth {sorted(types_g)})"
    raise SubmissionError(msg, path=path, qid=(missing or extra)[0], field="qid")


def match_rows(submission: Sequence[dict], ground_truth: Sequence[dict], submission_path=None,
               gt_path=None) -> tuple[dict, dict]:
    """Index both row lists by qid (unique qids) and require equal qid sets; returns ``(sub, gt)`` qid -> row."""
    if not submission:
        raise SubmissionError("no predictions", path=submission_path)
    if not ground_truth:
        raise GroundTruthError("no ground-truth entries", path=gt_path)
    sub = index_by_qid(submission, submission_path, SubmissionError)
    gt = index_by_qid(ground_truth, gt_path, GroundTruthError)
    check_qid_sets(sub, gt, submission_path)
    return sub, gt


def _field_value(row: dict, field: str, path, error_cls) -> tuple[Any, dict]:
    """``row[field]`` (an ndarray as a list) and the error location; a missing field is an error."""
    loc = dict(_loc(row, path), field=field)
    if field not in row:
        raise error_cls("missing field", **loc)
    value = row[field]
    return (value.tolist() if isinstance(value, np.ndarray) else value), loc


def as_windows(row: dict, field: str, path=None, *, error_cls: type[MetricsInputError] = SubmissionError,
               with_score: bool, allow_empty: bool = False) -> np.ndarray:
    """Validate ``row[field]`` as a list of ``[st, ed(, score)]`` and return a float64 array ``(N, 2 or 3)``.

    Rejects: a missing field, a non-list, an item of the wrong length, non-numeric or non-finite values, ``st > ed``
    and (unless ``allow_empty``) an empty list. Zero-length windows (``st == ed``) are allowed.
    """
    width = 3 if with_score else 2
    value, loc = _field_value(row, field, path, error_cls)
    if not isinstance(value, (list, tuple)):
        raise error_cls(f"expected a list of [start, end{', score' if with_score else ''}], got {value!r:.80}", **loc)
    if not value and not allow_empty:
        raise error_cls("empty window list", **loc)
    for i, w in enumerate(value):
        if not isinstance(w, (list, tuple)) or len(w) != width:
            raise error_cls(f"window {i} must be [start, end{', score' if with_score else ''}], got {w!r:.80}", **loc)
        for x in w:
            if not _is_number(x):
                raise error_cls(f"window {i} has a non-numeric value {x!r:.40}", **loc)
            if not math.isfinite(x):
                raise error_cls(f"window {i} has a non-finite value {x!r}", **loc)
        if w[0] > w[1]:
            raise error_cls(f"window {i} has start {w[0]} > end {w[1]}", **loc)
    return np.asarray(value, dtype=np.float64).reshape(len(value), width)


def as_score_vector(row: dict, field: str, path=None, *,
                    error_cls: type[MetricsInputError] = SubmissionError) -> np.ndarray:
    """Validate ``row[field]`` as a non-empty list of finite numbers; returns float64 ``(T,)``."""
    value, loc = _field_value(row, field, path, error_cls)
    if not isinstance(value, (list, tuple)) or not value:
        raise error_cls(f"expected a non-empty list of numbers, got {value!r:.80}", **loc)
    for i, x in enumerate(value):
        if not _is_number(x):
            raise error_cls(f"item {i} is not a number: {x!r:.40}", **loc)
        if not math.isfinite(x):
            raise error_cls(f"item {i} is not finite: {x!r}", **loc)
    return np.asarray(value, dtype=np.float64)
