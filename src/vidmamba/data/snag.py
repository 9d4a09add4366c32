"""SnAG / HieraMamba format (Ego4D-NLQ, MAD, TACoS): one annotation json + per-video ``.npy``/``.pt`` features.

Annotation json::

    {"<split>": {"<video_id>": {"fps": float, "duration": float, "num_clips": int (optional),
                                "annotations": [{"segment": [start_s, end_s], "sentence": str,
                                                 "sentence_id": str (optional),
                                                 "context": [start_s, end_s] (optional)}, ...]}}}

- ``text_id`` = ``sentence_id`` or ``f"{video_id}_{idx:04d}"`` (idx = position in the video's list); text ids must
  be unique in the file since they name the text feature files.
- Segments are clipped to [0, duration]; a segment that has zero (or negative) length after clipping is an error
  naming the video, the annotation index and the segment (the reference code silently drops it).
- ``context`` (optional): the part of the video the answer depends on (e.g. the event "after Y" refers to), clipped
  like a segment; training windows keep it together with the segment when both fit (:class:`SnagTrainDataset`).
- Video features: ``<dir>/<video_id>.npy`` (else ``.pt``, else the ``features`` array of a ``.npz``: what
  ``vidmamba extract`` writes), (T, C). Several dirs are concatenated along channels; lengths within 1 of each other
  are padded by repeating the last row, a larger mismatch is an error.
- Text features: ``<text_dir>/<text_id>.npy`` (else ``.pt``, else the ``last_hidden_state`` array of a ``.npz``),
  (L, C).

Seconds <-> feature grid (HieraMamba ``libs/data/dataset.py``, worker.py), with ``clip_size`` frames per clip,
``stride`` = effective frames between consecutive grid points (raw clip stride x downsample rate) and ``vid_stride``::

    grid    = (clip(t * fps, 0, num_frames) / stride - 0.5 * clip_size / stride) / vid_stride
    seconds = clip((grid * vid_stride * stride + 0.5 * clip_size) / fps, 0, duration)

The grid point of a feature is its clip's centre frame.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import expect_int, expect_real, expect_str, is_real, short_repr
from .collate import pad_sequences
from .errors import DataFormatError
from .features import align_lengths, find_feature_file, load_feature_array
from .lighthouse import read_moment_jsonl, text_feature_path


@dataclass
class SnagQuery:
    segment: tuple[float, float]  # seconds, clipped to [0, duration]
    sentence: str
    text_id: str
    index: int
    context: tuple[float, float] | None = None  # seconds, clipped to [0, duration]; see the module docstring


@dataclass
class SnagVideo:
    vid: str
    split: str
    fps: float
    duration: float
    num_clips: int | None
    queries: list[SnagQuery] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        """``int(duration * fps)``, as HieraMamba derives it."""
        return int(self.duration * self.fps)


def _parse_video(path, split: str, vid: str, rec) -> SnagVideo:
    item = f"split {split!r}, video {vid}"
    if not isinstance(rec, dict):
        raise DataFormatError(path, "bad video entry", item=item, expected="an object", found=type(rec).__name__)
    for name in ("fps", "duration", "annotations"):
        if name not in rec:
            raise DataFormatError(path, "required field missing", item=item, field=name, found=f"keys {sorted(rec)}")
    fps = expect_real(rec["fps"], path, item, "fps", positive=True)
    duration = expect_real(rec["duration"], path, item, "duration", positive=True)
    num_clips = None
    if rec.get("num_clips") is not None:
        num_clips = expect_int(rec["num_clips"], path, item, "num_clips", minimum=1)
    anns = rec["annotations"]
    if not isinstance(anns, list):
        raise DataFormatError(path, "bad value", item=item, field="annotations", expected="a list",
                              found=short_repr(anns))
    video = SnagVideo(vid, split, fps, duration, num_clips)
    for idx, a in enumerate(anns):
        aitem = f"{item}, annotation {idx}"
        if not isinstance(a, dict) or "segment" not in a or "sentence" not in a:
            raise DataFormatError(path, "bad annotation", item=aitem, field="segment",
                                  expected="an object with 'segment' and 'sentence'", found=short_repr(a))
        s, e = _parse_span(path, aitem, "segment", a["segment"], duration)
        context = None if a.get("context") is None else _parse_span(path, aitem, "context", a["context"], duration)
        sentence = expect_str(a["sentence"], path, aitem, "sentence")
        sid = a.get("sentence_id")
        if sid is None:
            text_id = f"{vid}_{idx:04d}"
        elif isinstance(sid, (str, int)) and not isinstance(sid, bool) and str(sid):
            text_id = str(sid)
        else:
            raise DataFormatError(path, "bad value", item=aitem, field="sentence_id",
                                  expected="a non-empty string", found=short_repr(sid))
        video.queries.append(SnagQuery((s, e), sentence, text_id, idx, context))
    return video


def _parse_span(path, item: str, name: str, span, duration: float) -> tuple[float, float]:
    """``[start_s, end_s]`` of field ``name`` clipped to ``[0, duration]``; not a pair of numbers, or zero length
    after clipping, is an error naming the file, item and field."""
    if not (isinstance(span, list) and len(span) == 2 and all(is_real(v) for v in span)):
        raise DataFormatError(path, "bad value", item=item, field=name,
                              expected="[start_s, end_s] of two finite numbers", found=short_repr(span))
    s, e = max(float(span[0]), 0.0), min(float(span[1]), duration)
    if e <= s:
        raise DataFormatError(path, f"{name} {span} has zero length after clipping to [0, {duration:g}]",
                              item=item, field=name, expected="start < end inside the video", found=f"[{s:g}, {e:g}]")
    return s, e


def read_snag_json(path, split: str | None = None) -> dict[str, list[SnagVideo]] | list[SnagVideo]:
    """Read and validate a SnAG / HieraMamba annotation json.

    Returns ``{split: [SnagVideo, ...]}``, or the list of one split when ``split`` is given (missing split = error).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "annotation file not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, "invalid JSON", found=str(e)) from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise DataFormatError(path, "bad top level", expected="{split: {video_id: {...}}}",
                              found=short_repr(data))
    if split is not None and split not in data:
        raise DataFormatError(path, "split not found", field=split, expected=f"one of {sorted(data)}",
                              found=repr(split))
    out: dict[str, list[SnagVideo]] = {}
    owner: dict[str, str] = {}
    for sp, videos in data.items():
        out[sp] = []
        for vid, rec in videos.items():
            v = _parse_video(path, sp, vid, rec)
            for q in v.queries:
                if q.text_id in owner:
                    raise DataFormatError(path, "repeated text id", item=f"split {sp!r}, video {vid}, "
                                          f"annotation {q.index}", field="sentence_id", expected="unique ids",
                                          found=f"{q.text_id!r} also used by {owner[q.text_id]}")
                owner[q.text_id] = f"video {vid}"
            out[sp].append(v)
    return out if split is None else out[split]


def snag_from_lighthouse(split_files: dict[str, Path], *, clip_length: float, dataset: str = "qvhighlight") -> dict:
    """The SnAG json object of lighthouse jsonl files, one per split (``{split: path}``): what ``vidmamba extract
    --annotations`` writes beside the features so that one annotation format serves both model families.

    Each video gets ``fps = 1 / clip_length`` (one feature row per clip: ``clip_size = clip_stride = 1``) and its
    ``duration``; each query one annotation whose ``sentence_id`` is the stem of its text feature file (e.g.
    ``qid7``), so the nlq task reads the text features ``extract`` wrote. A query must have exactly one relevant
    window, and the lines of one video must agree on its duration (else a DataFormatError naming the line).
    """
    out: dict[str, dict] = {}
    for split, path in split_files.items():
        videos = out.setdefault(split, {})
        for ann in read_moment_jsonl(path, dataset=dataset, clip_length=clip_length):
            item = f"line {ann.line} (qid {ann.qid})"
            if not ann.windows or len(ann.windows) != 1:
                raise DataFormatError(path, "the nlq task (HieraMamba) takes one relevant window per query; write "
                                      "one line (own qid) per window", item=item, field="relevant_windows",
                                      expected="exactly one window", found=len(ann.windows or []))
            video = videos.setdefault(ann.vid, {"fps": 1.0 / clip_length, "duration": ann.duration,
                                                "annotations": []})
            if video["duration"] != ann.duration:
                raise DataFormatError(path, f"video {ann.vid} has two durations", item=item, field="duration",
                                      expected=video["duration"], found=ann.duration)
            text_id = text_feature_path("", "", ann.qid, dataset).stem
            video["annotations"].append({"segment": list(ann.windows[0]), "sentence": ann.query,
                                         "sentence_id": text_id})
    return out


def _clip(x, lo, hi):
    if isinstance(x, torch.Tensor):
        return x.clamp(lo, hi)
    return np.clip(x, lo, hi)


def seconds_to_grid(t, *, fps: float, clip_size: float, stride: float, num_frames: float | None = None,
                    vid_stride: int = 1):
    """Seconds -> feature-grid coordinates (see module docstring). Works on floats, numpy arrays and tensors.

    ``num_frames`` (default: no upper clip) bounds ``t * fps`` as in the reference.
    """
    frames = _clip(t * fps, 0.0, np.inf if num_frames is None else num_frames)
    return (frames / stride - 0.5 * clip_size / stride) / vid_stride


def grid_to_seconds(g, *, fps: float, clip_size: float, stride: float, duration: float | None = None,
                    vid_stride: int = 1):
    """Feature-grid coordinates -> seconds, clipped to [0, duration] (the inverse of :func:`seconds_to_grid`)."""
    return _clip((g * vid_stride * stride + 0.5 * clip_size) / fps, 0.0, np.inf if duration is None else duration)


SNAG_EXTS = (".npy", ".pt", ".npz")
NPZ_KEYS = {"video": "features", "text": "last_hidden_state"}  # the arrays of `vidmamba extract`'s npz files


def load_snag_file(path, kind: str, *, dim: int | None = None, item: str) -> np.ndarray:
    """The (T, C) ``kind`` ("video" / "text") feature array of one ``.npy`` / ``.pt`` / ``.npz`` file (an ``.npz``:
    its :data:`NPZ_KEYS` array)."""
    return load_feature_array(path, key=NPZ_KEYS[kind] if Path(path).suffix == ".npz" else None, dim=dim, item=item)


def load_snag_feature(directory, stem: str, kind: str, *, dim: int | None = None,
                      item: str) -> tuple[np.ndarray, Path]:
    """(array, path) of ``<directory>/<stem>`` with the first of :data:`SNAG_EXTS` that exists
    (:func:`load_snag_file`)."""
    path = find_feature_file(directory, stem, SNAG_EXTS, item=item, expected=f"a (T, D) {kind} feature file")
    return load_snag_file(path, kind, dim=dim, item=item), path


def load_snag_video_features(video_dirs: Sequence, vid: str, *, dims: Sequence[int | None] | None = None,
                             downsample: int = 1) -> np.ndarray:
    """``<dir>/<vid>.npy|.pt|.npz`` (T, C_i) from each dir, aligned (pad <= 1 row) and concatenated: (T, sum C_i)."""
    if not video_dirs:
        raise ValueError("video_dirs must name at least one directory")
    dims = list(dims) if dims is not None else [None] * len(video_dirs)
    item = f"video {vid}"
    arrays, files = zip(*(load_snag_feature(d, vid, "video", dim=w, item=item) for d, w in zip(video_dirs, dims)))
    feats = np.concatenate(align_lengths(list(arrays), list(files), mode="pad_last", item=item), axis=1)
    return np.ascontiguousarray(feats[::downsample])


def load_snag_text_features(text_dir, text_id: str, *, dim: int | None = None,
                            max_len: int | None = None) -> np.ndarray:
    """``<text_dir>/<text_id>.npy|.pt|.npz`` (L, C), optionally truncated to ``max_len`` tokens."""
    a, _ = load_snag_feature(text_dir, text_id, "text", dim=dim, item=f"text id {text_id}")
    return a if max_len is None else a[:max_len]


class SnagDataset(Dataset):
    """One item per video with all its queries (the HieraMamba evaluation layout; training code may sample groups).

    Item keys: ``vid``, ``fps``, ``duration``, ``video`` (T, C) float32, ``texts`` (list of (L_q, D) tensors),
    ``sentences``, ``text_ids``, ``segments`` (Q, 2) seconds and ``segments_grid`` (Q, 2) in grid units.
    Videos without queries are skipped; a split with none left is an error.
    ``stride`` in the grid conversion is ``clip_stride * downsample``.
    """

    def __init__(self, json_path, split: str, video_dirs: Sequence, text_dir, *, clip_size: float,
                 clip_stride: float, downsample: int = 1, vid_stride: int = 1,
                 video_dims: Sequence[int | None] | None = None, text_dim: int | None = None,
                 max_text_len: int | None = None):
        videos = [v for v in read_snag_json(json_path, split) if v.queries]
        if not videos:
            raise DataFormatError(json_path, "dataset is empty: no video with annotations in this split",
                                  field=split, expected="at least one annotated video", found="none")
        self.videos = videos
        self.video_dirs = list(video_dirs)
        self.text_dir = text_dir
        self.clip_size, self.stride = clip_size, clip_stride * downsample
        self.downsample, self.vid_stride = downsample, vid_stride
        self.video_dims, self.text_dim, self.max_text_len = video_dims, text_dim, max_text_len

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        return self.load(self.videos[index])

    def load(self, v: SnagVideo, queries: Sequence[int] | None = None) -> dict:
        """The item of video ``v`` with the queries at positions ``queries`` (default: all)."""
        qs = v.queries if queries is None else [v.queries[i] for i in queries]
        video = load_snag_video_features(self.video_dirs, v.vid, dims=self.video_dims, downsample=self.downsample)
        texts = [torch.from_numpy(load_snag_text_features(self.text_dir, q.text_id, dim=self.text_dim,
                                                          max_len=self.max_text_len)) for q in qs]
        segments = torch.tensor([q.segment for q in qs], dtype=torch.float64)
        grid = seconds_to_grid(segments, fps=v.fps, clip_size=self.clip_size, stride=self.stride,
                               num_frames=v.num_frames, vid_stride=self.vid_stride)
        return {"vid": v.vid, "fps": v.fps, "duration": v.duration, "video": torch.from_numpy(video),
                "texts": texts, "sentences": [q.sentence for q in qs], "text_ids": [q.text_id for q in qs],
                "segments": segments.float(), "segments_grid": grid.float()}

    @staticmethod
    def collate(batch: list[dict]) -> dict:
        """Pad videos (``video``, ``video_mask``) and flatten all queries of the batch: ``text`` (Q, L, D),
        ``text_mask``, ``query_index`` (Q,) = batch position of each query's video, ``segments`` /
        ``segments_grid`` (Q, 2); ``vid``, ``fps``, ``duration``, ``sentences``, ``text_ids`` are per-query or
        per-video lists as named."""
        if not batch:
            raise ValueError("cannot collate an empty batch")
        video, video_mask = pad_sequences([b["video"] for b in batch])
        text, text_mask = pad_sequences([t for b in batch for t in b["texts"]])
        return {
            "video": video, "video_mask": video_mask, "text": text, "text_mask": text_mask,
            "query_index": torch.tensor([i for i, b in enumerate(batch) for _ in b["texts"]], dtype=torch.long),
            "segments": torch.cat([b["segments"] for b in batch]),
            "segments_grid": torch.cat([b["segments_grid"] for b in batch]),
            "vid": [b["vid"] for b in batch], "fps": [b["fps"] for b in batch],
            "duration": [b["duration"] for b in batch],
            "sentences": [s for b in batch for s in b["sentences"]],
            "text_ids": [t for b in batch for t in b["text_ids"]],
            **({"negative": torch.cat([b["negative"] for b in batch])} if all("negative" in b for b in batch) else {}),
        }


# ---------------------------------------------------------------------------------------------------------------------
# training samples: video-centric query groups + random truncation (HieraMamba ``VideoCentricDataset``)
# ---------------------------------------------------------------------------------------------------------------------
def group_queries(spans: Sequence[tuple[float, float]], window: float | None) -> list[list[int]]:
    """Greedy video-centric grouping of one video's queries (HieraMamba ``_group_with_max_len``).

    ``spans``: (start, end) of each query's ground truth in input-clip units (clip ``i`` is centred at ``i``).
    Queries are sorted by start; a group opens at the first ungrouped query and takes every following query whose
    end stays within ``window - 1`` of the group's first start (so one training window of ``window`` clips can hold
    all of them). ``window=None``: one group with all queries. Returns lists of query indices.
    """
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1]))
    if window is None:
        return [order] if order else []
    groups: list[list[int]] = []
    for i in order:
        if groups and max(spans[j][1] for j in groups[-1] + [i]) - spans[groups[-1][0]][0] <= window - 1:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def truncation_window(num_clips: int, spans: np.ndarray, length: int, generator: torch.Generator | None = None,
                      align: int = 1) -> int:
    """Start ``a`` of a random window ``[a, a + length)`` of input clips that keeps every ground truth.

    ``spans`` (Q, 2) in input-clip units (clip ``i`` covers ``[i - 0.5, i + 0.5]``). When possible every span lies
    inside the window: ``a`` is uniform over the multiples of ``align`` in ``[end + 0.5 - length, start + 0.5]``
    (all spans) within ``[0, num_clips - length]``. When no such window exists (the spans are further apart than
    ``length``), ``a`` is uniform over the windows that overlap every span's centre (or, failing that, the first
    span's centre, within the video's aligned starts), so each span keeps a non-empty part where alignment allows.
    ``length >= num_clips`` returns 0.
    """
    if length >= num_clips:
        return 0
    last = (num_clips - length) // align * align

    def pick(lo: float, hi: float) -> int | None:
        lo_i = max(0, math.ceil(lo / align - 1e-9) * align)
        hi_i = min(last, math.floor(hi / align + 1e-9) * align)
        if lo_i > hi_i:
            return None
        n = (hi_i - lo_i) // align + 1
        return lo_i + align * int(torch.randint(n, (1,), generator=generator))

    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    if not len(spans):
        return pick(0, last)
    start = pick(spans[:, 1].max() + 0.5 - length, spans[:, 0].min() + 0.5)
    if start is None:
        centres = spans.mean(1)
        start = pick(centres.max() + 0.5 - length, centres.min() + 0.5)
    if start is None:  # the first span's centre, the window clamped to the video (aligned starts stop at ``last``)
        c = float(spans[0].mean())
        start = pick(min(max(c + 0.5 - length, 0), last), max(min(c + 0.5, last), 0))
    return start


def threshold_window(num_clips: int, spans: np.ndarray, length: int, thresh: float,
                     generator: torch.Generator | None = None, align: int = 1) -> int | None:
    """Start ``a`` of a random window ``[a, a + length)`` of input clips that keeps MORE than ``thresh`` of every
    ground truth (the official HieraMamba crop, ``trunc_thresh``; clip ``i`` covers ``[i - 0.5, i + 0.5]``): uniform
    over the multiples of ``align`` in ``[0, num_clips - length]`` where every span's overlap with
    ``[a - 0.5, a + length - 0.5]`` exceeds ``thresh`` times its length (official: rejection sampling of uniform
    starts, the same distribution). None when no such start exists. spans (Q, 2) in input-clip units."""
    if length >= num_clips:
        return 0
    starts = np.arange(0, num_clips - length + 1, align, dtype=np.float64)[:, None]                  # (S, 1)
    spans = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    overlap = np.minimum(spans[:, 1], starts + length - 0.5) - np.maximum(spans[:, 0], starts - 0.5)  # (S, Q)
    ok = (overlap.clip(min=0) > thresh * np.maximum(spans[:, 1] - spans[:, 0], 1e-5)).all(1)
    candidates = np.flatnonzero(ok)
    if not len(candidates):
        return None
    return int(starts[candidates[int(torch.randint(len(candidates), (1,), generator=generator))], 0])


class SnagTrainDataset(SnagDataset):
    """Training samples of the SnAG format: one item per (video, query group), not per video.

    Queries of each video are grouped with :func:`group_queries` (window ``max_clips`` input clips); an item holds at
    most ``max_queries`` queries of its group (a random subset, redrawn on every access, when the group is larger,
    as the reference's ``max_num_text``). Videos longer than ``max_clips`` input clips are cut to a random window of
    ``max_clips`` clips that keeps the group's ground truth (:func:`truncation_window`), and with it each query's
    ``context`` (the span its answer depends on) where the query's ground truth and context fit in one window (groups
    are formed over those spans) and the item's all fit in the window (not where ``trunc_thresh`` picks the window);
    shorter ones are cut to a
    random ``crop_ratio`` fraction (uniform in ``[lo, hi]``) of their length when ``crop_ratio`` is given, but never
    shorter than the span that holds all the item's ground truth. Grid coordinates are shifted with the window, so
    ``segments_grid`` stay aligned with ``video``; ``segments`` stay in seconds of the full video. Windows start on
    multiples of ``vid_stride``. Randomness comes from torch's global RNG (seeded and checkpointed by the trainer).
    Extra item key: ``offset`` (first input clip of the window).

    ``negative_queries`` (default 0): each item also takes up to this many random other queries of the same video
    whose ground truth lies wholly outside the item's window (item key ``negative`` (Q,) bool marks them): training
    pairs without the truth, for a model that scores windows of a long video against each other (MLVTG). Their
    ``segments_grid`` are clamped to the window like the others' and mean nothing; models that do not read
    ``negative`` must not be given them.

    ``trunc_thresh`` (official HieraMamba: 0.5): windows and crops may cut a ground truth as long as MORE than this
    fraction of each one stays inside (:func:`threshold_window`; crops are then not lengthened to hold the ground
    truth); when no window keeps that much, the whole-keeping rule above decides. None (default): ground truth is
    kept whole.
    """

    def __init__(self, *args, max_clips: int | None = None, max_queries: int | None = None,
                 crop_ratio: Sequence[float] | None = None, trunc_thresh: float | None = None,
                 negative_queries: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        if max_clips is not None and max_clips < 1:
            raise ValueError(f"max_clips must be >= 1 (input clips per training window), got {max_clips}")
        if max_queries is not None and max_queries < 1:
            raise ValueError(f"max_queries must be >= 1, got {max_queries}")
        if crop_ratio is not None and not (len(crop_ratio) == 2 and 0.0 < crop_ratio[0] <= crop_ratio[1] <= 1.0):
            raise ValueError(f"crop_ratio must be [lo, hi] with 0 < lo <= hi <= 1, got {crop_ratio}")
        if trunc_thresh is not None and not 0.0 <= trunc_thresh < 1.0:
            raise ValueError(f"trunc_thresh must be in [0, 1) (the fraction of each ground truth a training window "
                             f"keeps; official 0.5) or null, got {trunc_thresh}")
        self.max_clips, self.max_queries, self.crop_ratio = max_clips, max_queries, crop_ratio
        self.trunc_thresh = trunc_thresh
        if negative_queries < 0:
            raise ValueError(f"negative_queries must be >= 0, got {negative_queries}")
        self.negative_queries = negative_queries
        self.samples: list[tuple[int, list[int]]] = []  # (video index, query indices)
        for vi, v in enumerate(self.videos):
            spans = self._clip_spans(v, range(len(v.queries)), within=max_clips)
            self.samples += [(vi, g) for g in group_queries([tuple(s) for s in spans], max_clips)]

    def _clip_spans(self, v: SnagVideo, queries, within: int | None = None) -> np.ndarray:
        """(Q, 2) ground truth of ``queries`` of video ``v`` in input-clip units (grid x vid_stride); with
        ``within``, each span grown to hold the query's ``context`` too where both fit in ``within`` clips."""
        qs = [v.queries[q] for q in queries]
        to_grid = lambda seconds: seconds_to_grid(  # noqa: E731
            np.array(seconds, dtype=np.float64).reshape(-1, 2), fps=v.fps, clip_size=self.clip_size,
            stride=self.stride, num_frames=v.num_frames, vid_stride=1)
        spans = to_grid([q.segment for q in qs])
        if within is not None:
            for i, q in enumerate(qs):
                if q.context is not None:
                    grown = to_grid([min(q.segment[0], q.context[0]), max(q.segment[1], q.context[1])])
                    spans[i] = grown[0] if self._clips_holding(grown) <= within else spans[i]
        return spans

    def _clips_holding(self, spans: np.ndarray) -> int:
        """Input clips a window needs to hold every span of ``spans`` (Q, 2) (input-clip units) whole."""
        return math.ceil(spans[:, 1].max() + 0.5 - math.floor(spans[:, 0].min() + 0.5)) + self.vid_stride - 1

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        vi, group = self.samples[index]
        if self.max_queries is not None and len(group) > self.max_queries:
            group = sorted(group[i] for i in torch.randperm(len(group))[: self.max_queries].tolist())
        item = self.load(self.videos[vi], group)
        T = item["video"].shape[0]
        length = self.max_clips if self.max_clips is not None and T > self.max_clips else T
        spans = item["segments_grid"].double().numpy() * self.vid_stride
        # clips that hold every ground truth of the item (a crop is never shorter, unless a cut is allowed)
        needed = self._clips_holding(spans)
        crop = length == T and self.crop_ratio is not None
        if crop:
            lo, hi = self.crop_ratio
            length = max(round(T * (lo + (hi - lo) * float(torch.rand(())))), 1)
        start = None
        if self.trunc_thresh is not None:
            start = threshold_window(T, spans, length, self.trunc_thresh, align=self.vid_stride)
        if start is None:
            if crop:
                length = min(T, max(length, needed))
            kept = self._clip_spans(self.videos[vi], group, within=length)  # ground truth with the contexts that fit
            start = truncation_window(T, kept if self._clips_holding(kept) <= length else spans, length,
                                      align=self.vid_stride)
        item["video"] = item["video"][start: start + length]
        grid = item["segments_grid"] - start / self.vid_stride
        # a span longer than the window keeps only its part inside it
        item["segments_grid"] = grid.clamp(-0.5 / self.vid_stride, (length - 0.5) / self.vid_stride)
        item["offset"] = start
        if self.negative_queries:
            self._add_negatives(item, self.videos[vi], group, start, length)
        return item

    def _add_negatives(self, item: dict, v: SnagVideo, group: list[int], start: int, length: int) -> None:
        """Append to ``item`` up to ``negative_queries`` random queries of ``v`` outside ``group`` whose ground truth
        lies wholly outside the input clips ``[start, start + length)``, and the ``negative`` flags."""
        others = [q for q in range(len(v.queries)) if q not in group]
        outside = [q for q, (a, b) in zip(others, self._clip_spans(v, others))
                   if b + 0.5 <= start or a - 0.5 >= start + length]
        picked = sorted(outside[i] for i in torch.randperm(len(outside))[: self.negative_queries].tolist())
        item["negative"] = torch.arange(len(group) + len(picked)) >= len(group)
        if not picked:
            return
        extra = self.load(v, picked)
        for key in ("texts", "sentences", "text_ids"):
            item[key] = item[key] + extra[key]
        item["segments"] = torch.cat([item["segments"], extra["segments"]])
        grid = extra["segments_grid"] - start / self.vid_stride
        item["segments_grid"] = torch.cat([item["segments_grid"],
                                           grid.clamp(-0.5 / self.vid_stride, (length - 0.5) / self.vid_stride)])
