"""EPIC-KITCHENS-100 action annotations (official CSVs) and per-segment / per-video features.

Annotation CSV (``EPIC_100_train.csv`` / ``EPIC_100_validation.csv``) columns: narration_id, participant_id,
video_id, narration_timestamp, start_timestamp, stop_timestamp, start_frame, stop_frame, narration, verb,
verb_class, noun, noun_class, all_nouns, all_noun_classes. Timestamps are ``HH:MM:SS.fff``; ``all_nouns`` /
``all_noun_classes`` are Python list literals (``"['tap', 'water']"``, ``"[0, 10]"``). Label-free files (the test
timestamps CSV) have only the id, timing and frame columns: read them with ``labels=False``.

Class-key CSVs (``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv``): id, key, instances (list literal of
synonyms), category. Ids must be 0..N-1 in order.

Feature layouts chosen here (the sources fix none):

- recognition: one file per action segment, ``<feat_dir>/<narration_id>.npy`` (else ``.pt``), (T, D), the features
  of the frames between start and stop;
- anticipation: one file per video, ``<feat_dir>/<video_id>.npy`` (else ``.pt``), (T_v, D) sampled at ``fps``; row i
  summarises the time span ``[i / fps, (i + 1) / fps)``. For an action starting at ``s``, the observed window is
  ``[s - tau_a - obs_seconds, s - tau_a]`` (``tau_a = 1 s``, the EK100 anticipation protocol) clipped at 0, and the
  rows used are those whose whole span lies inside it: ``i`` in ``[ceil(a * fps), floor(b * fps))``, so no row sees
  anything after ``s - tau_a``. Actions whose window holds no full row (``s < tau_a + 1 / fps``) cannot be observed
  and are dropped by :class:`EK100Dataset` (listed in ``dropped``), or are an error with ``drop_unobservable=False``.
"""
from __future__ import annotations

import ast
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import short_repr
from .collate import PaddedCollate
from .errors import DataFormatError
from .features import find_feature_file, load_feature_array

EK100_COLUMNS = ("narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                 "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                 "noun_class", "all_nouns", "all_noun_classes")
EK100_TIMING_COLUMNS = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp",
                        "start_frame", "stop_frame")
EK100_CLASS_COLUMNS = ("id", "key", "instances", "category")
EK100_NUM_VERBS, EK100_NUM_NOUNS = 97, 300

_TIMESTAMP = re.compile(r"^(\d+):([0-5]?\d):([0-5]?\d(?:\.\d+)?)$")


def parse_timestamp(text: str) -> float:
    """``"HH:MM:SS.ff"`` (any number of fraction digits, or none) -> seconds. ValueError on anything else."""
    m = _TIMESTAMP.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"bad timestamp {text!r}; expected HH:MM:SS.ff")
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


@dataclass
class EK100Action:
    narration_id: str
    participant_id: str
    video_id: str
    start: float  # seconds
    stop: float
    start_frame: int
    stop_frame: int
    narration_time: float | None = None
    narration: str | None = None
    verb: str | None = None
    verb_class: int | None = None
    noun: str | None = None
    noun_class: int | None = None
    all_nouns: list[str] | None = None
    all_noun_classes: list[int] | None = None
    line: int = 0


@dataclass
class EK100Class:
    id: int
    key: str
    instances: list[str]
    category: str


def _read_csv(path, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict]]]:
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "CSV file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        missing = [c for c in required if c not in header]
        if missing:
            raise DataFormatError(path, "missing columns", item="header", field=missing[0],
                                  expected=f"columns {list(required)}",
                                  found=f"missing {missing} in header {header}")
        rows = []
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise DataFormatError(path, "row does not have one value per column", item=f"line {reader.line_num}",
                                      expected=f"{len(header)} values", found=short_repr(list(row.values())))
            rows.append((reader.line_num, row))
    if not rows:
        raise DataFormatError(path, "CSV has no data rows", expected="at least one row", found="header only")
    return header, rows


def _cell_int(path, item, row, name) -> int:
    text = row[name].strip()
    if not re.fullmatch(r"\d+", text):
        raise DataFormatError(path, "bad value", item=item, field=name, expected="a non-negative integer",
                              found=repr(row[name]))
    return int(text)


def _cell_time(path, item, row, name) -> float:
    try:
        return parse_timestamp(row[name])
    except ValueError:
        raise DataFormatError(path, "bad timestamp", item=item, field=name, expected="HH:MM:SS.ff",
                              found=repr(row[name])) from None


def _cell_list(path, item, row, name, kind: type) -> list:
    try:
        value = ast.literal_eval(row[name].strip())
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise DataFormatError(path, "bad list", item=item, field=name,
                              expected=f"a list literal of {kind.__name__}", found=repr(row[name]))
    return value


def read_ek100_annotations(path, *, labels: bool = True) -> list[EK100Action]:
    """Read and validate an EK100 annotation CSV.

    With ``labels`` (default) all of :data:`EK100_COLUMNS` are required; otherwise only
    :data:`EK100_TIMING_COLUMNS` (label columns present are still read). Errors (DataFormatError naming file, line,
    narration_id and column): missing columns, a repeated narration_id, bad timestamps, stop <= start, bad frame
    numbers or stop_frame < start_frame, bad class ids, malformed list columns, all_nouns / all_noun_classes of
    different lengths.
    """
    header, rows = _read_csv(path, EK100_COLUMNS if labels else EK100_TIMING_COLUMNS)
    has_labels = all(c in header for c in EK100_COLUMNS)
    out, seen = [], {}
    for line, row in rows:
        nid = row["narration_id"].strip()
        item = f"line {line} (narration_id {nid!r})"
        if not nid:
            raise DataFormatError(path, "empty value", item=f"line {line}", field="narration_id",
                                  expected="a narration id", found="''")
        if nid in seen:
            raise DataFormatError(path, "repeated narration_id", item=item, field="narration_id",
                                  expected="unique ids", found=f"also on line {seen[nid]}")
        seen[nid] = line
        for name in ("participant_id", "video_id"):
            if not row[name].strip():
                raise DataFormatError(path, "empty value", item=item, field=name, expected="an id", found="''")
        start, stop = _cell_time(path, item, row, "start_timestamp"), _cell_time(path, item, row, "stop_timestamp")
        if stop <= start:
            raise DataFormatError(path, "segment has zero or negative length", item=item, field="stop_timestamp",
                                  expected=f"after start_timestamp {row['start_timestamp']}",
                                  found=repr(row["stop_timestamp"]))
        f0, f1 = _cell_int(path, item, row, "start_frame"), _cell_int(path, item, row, "stop_frame")
        if f1 < f0:
            raise DataFormatError(path, "stop_frame before start_frame", item=item, field="stop_frame",
                                  expected=f">= {f0}", found=f1)
        act = EK100Action(nid, row["participant_id"].strip(), row["video_id"].strip(), start, stop, f0, f1, line=line)
        if "narration_timestamp" in row:
            act.narration_time = _cell_time(path, item, row, "narration_timestamp")
        if has_labels:
            act.narration, act.verb, act.noun = row["narration"], row["verb"], row["noun"]
            act.verb_class = _cell_int(path, item, row, "verb_class")
            act.noun_class = _cell_int(path, item, row, "noun_class")
            act.all_nouns = _cell_list(path, item, row, "all_nouns", str)
            act.all_noun_classes = _cell_list(path, item, row, "all_noun_classes", int)
            if len(act.all_nouns) != len(act.all_noun_classes):
                raise DataFormatError(path, "all_nouns and all_noun_classes differ in length", item=item,
                                      field="all_noun_classes", expected=f"{len(act.all_nouns)} entries",
                                      found=f"{len(act.all_noun_classes)} entries")
        out.append(act)
    return out


def read_ek100_classes(path) -> list[EK100Class]:
    """Read ``EPIC_100_{verb,noun}_classes.csv`` -> list indexed by class id (ids must be 0..N-1 in order)."""
    _, rows = _read_csv(path, EK100_CLASS_COLUMNS)
    out = []
    for line, row in rows:
        item = f"line {line}"
        cid = _cell_int(path, item, row, "id")
        if cid != len(out):
            raise DataFormatError(path, "class ids must be 0..N-1 in order", item=item, field="id",
                                  expected=len(out), found=cid)
        key = row["key"].strip()
        if not key:
            raise DataFormatError(path, "empty value", item=item, field="key", expected="a class key", found="''")
        out.append(EK100Class(cid, key, _cell_list(path, item, row, "instances", str), row["category"].strip()))
    return out


def observed_rows(start: float, *, fps: float, obs_seconds: float, tau_a: float = 1.0) -> tuple[int, int]:
    """Rows ``[first, end)`` of a per-video feature file (row i spans ``[i/fps, (i+1)/fps)``) that lie wholly in the
    anticipation window ``[start - tau_a - obs_seconds, start - tau_a]`` clipped at 0. ``first == end`` when empty."""
    if fps <= 0 or obs_seconds <= 0 or tau_a < 0:
        raise ValueError(f"need fps > 0, obs_seconds > 0, tau_a >= 0; got {fps}, {obs_seconds}, {tau_a}")
    a = max(start - tau_a - obs_seconds, 0.0)
    b = start - tau_a
    eps = 1e-6  # timestamps are given to the millisecond; keep exact multiples of 1/fps on the grid
    first = math.ceil(a * fps - eps)
    end = max(math.floor(b * fps + eps), first)
    return first, end


class EK100Dataset(PaddedCollate, Dataset):
    """EK100 recognition (``mode="recognition"``) or anticipation (``mode="anticipation"``) samples.

    Items: ``narration_id``, ``video_id``, ``start`` / ``stop`` (s), ``narration`` (str, "" without labels),
    ``video`` (T, D) float32, ``verb`` / ``noun`` (0-dim long tensors; -1 without labels). Anticipation items add ``obs_start`` / ``obs_end`` (s, the span the
    rows cover). Labels are the action's own (for anticipation: the action to anticipate). When class lists are
    given, class ids must be in range. ``video_ids`` keeps only those videos; an empty result is an error.
    """

    sequence_keys = ("video",)

    def __init__(self, csv_path, feat_dir, *, mode: str = "recognition", labels: bool = True,
                 fps: float | None = None, obs_seconds: float | None = None, tau_a: float = 1.0,
                 verb_classes: Sequence[EK100Class] | None = None, noun_classes: Sequence[EK100Class] | None = None,
                 feat_dim: int | None = None, video_ids: Sequence[str] | None = None,
                 drop_unobservable: bool = True):
        if mode not in ("recognition", "anticipation"):
            raise ValueError(f"mode must be 'recognition' or 'anticipation', got {mode!r}")
        if mode == "anticipation" and (fps is None or obs_seconds is None):
            raise ValueError("anticipation needs fps and obs_seconds")
        actions = read_ek100_annotations(csv_path, labels=labels)
        for classes, attr in ((verb_classes, "verb_class"), (noun_classes, "noun_class")):
            if classes is None:
                continue
            for a in actions:
                cid = getattr(a, attr)
                if cid is not None and cid >= len(classes):
                    raise DataFormatError(csv_path, "class id out of range",
                                          item=f"line {a.line} (narration_id {a.narration_id!r})", field=attr,
                                          expected=f"< {len(classes)} classes", found=cid)
        if video_ids is not None:
            keep = set(video_ids)
            actions = [a for a in actions if a.video_id in keep]
        self.dropped: list[str] = []
        if mode == "anticipation":
            ok = []
            for a in actions:
                first, end = observed_rows(a.start, fps=fps, obs_seconds=obs_seconds, tau_a=tau_a)
                if end > first:
                    ok.append(a)
                elif drop_unobservable:
                    self.dropped.append(a.narration_id)
                else:
                    raise DataFormatError(csv_path, "action starts too early to observe anything before it",
                                          item=f"line {a.line} (narration_id {a.narration_id!r})",
                                          field="start_timestamp", expected=f">= tau_a + 1/fps = {tau_a + 1 / fps:g} s",
                                          found=f"{a.start:g} s")
            actions = ok
        if not actions:
            raise DataFormatError(csv_path, "dataset is empty after filtering", expected="at least one action",
                                  found=f"none (video_ids filter: {sorted(video_ids) if video_ids else None}, "
                                        f"{len(self.dropped)} unobservable dropped)")
        self.actions = actions
        self.feat_dir = Path(feat_dir)
        self.mode, self.fps, self.obs_seconds, self.tau_a = mode, fps, obs_seconds, tau_a
        self.feat_dim = feat_dim
        self._cache: tuple[str, np.ndarray, Path] | None = None

    def __len__(self) -> int:
        return len(self.actions)

    def _video_file(self, video_id: str) -> tuple[np.ndarray, Path]:
        if self._cache is None or self._cache[0] != video_id:
            item = f"video_id {video_id}"
            path = find_feature_file(self.feat_dir, video_id, item=item)
            self._cache = (video_id, load_feature_array(path, dim=self.feat_dim, item=item), path)
        return self._cache[1], self._cache[2]

    def __getitem__(self, index: int) -> dict:
        a = self.actions[index]
        out = {"narration_id": a.narration_id, "video_id": a.video_id, "start": a.start, "stop": a.stop,
               "narration": a.narration or ""}
        if self.mode == "recognition":
            item = f"narration_id {a.narration_id}"
            path = find_feature_file(self.feat_dir, a.narration_id, item=item)
            video = load_feature_array(path, dim=self.feat_dim, item=item)
        else:
            feats, path = self._video_file(a.video_id)
            first, end = observed_rows(a.start, fps=self.fps, obs_seconds=self.obs_seconds, tau_a=self.tau_a)
            if end > feats.shape[0]:
                raise DataFormatError(path, "per-video feature file too short for the observed window",
                                      item=f"narration_id {a.narration_id}",
                                      expected=f">= {end} rows at {self.fps:g} fps (window ends "
                                               f"{a.start - self.tau_a:g} s)", found=f"{feats.shape[0]} rows")
            video = feats[first:end]
            out["obs_start"], out["obs_end"] = first / self.fps, end / self.fps
        out["video"] = torch.from_numpy(np.ascontiguousarray(video))
        out["verb"] = torch.tensor(-1 if a.verb_class is None else a.verb_class, dtype=torch.long)
        out["noun"] = torch.tensor(-1 if a.noun_class is None else a.noun_class, dtype=torch.long)
        return out
