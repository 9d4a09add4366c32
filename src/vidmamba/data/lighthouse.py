"""moment_detr / lighthouse format: jsonl annotations + per-video ``.npz`` features.

Annotation file: one JSON object per line, fields

- ``qid`` (int, or str for TACoS / TVSum / YouTube), ``query`` (str), ``vid`` (str), ``duration`` (number),
- ``relevant_windows``: ``[[start_s, end_s], ...]`` (absent or null on test splits and on TVSum / YouTube),
- ``relevant_clip_ids`` + ``saliency_scores`` (QVHighlights): ids of the ``clip_length``-second clips inside the
  windows and one row of annotator scores per id (3 annotators, 0..4),
- ``label`` (TVSum / YouTube Highlights): per-clip annotator scores ``(T, A)`` (TVSum: 20 annotators, 1..5), plus
  ``domain``.

Facts checked on the real files (``shared/data``): Charades-STA test 3720 queries (int qid, duration in s with 0.01
resolution, windows to 0.1 s); TACoS test 4001 (str qids ``"<vid>_<k>"``); QVHighlights val 1550 (windows are
multiples of 2 s and ``relevant_clip_ids`` are exactly the 2-s clips overlapping them); TVSum val 10 videos, where
``duration`` is **the number of 2-s clips** (equal to ``len(label)``), not seconds, and ``qid == vid``.
YouTube Highlights (lighthouse ``data/youtube_highlight/youtube_highlight_{train,val}_release.jsonl``, read from
github line/lighthouse): ``qid == vid``, ``query`` is the domain name ("dog", ...), ``duration`` in seconds
(``frames / fps``), ``relevant_windows`` / ``relevant_clip_ids`` null, ``label`` (T, 1) in {0, 1} equal to UMT's
``match > 0``, plus ``domain``, ``fps``, ``frames``, ``clip`` ([start, end] frames: 100-frame clips every ~50
frames) and ``match`` (-1 / 0 / 1) kept in ``extra``. Lighthouse trains on it with ``clip_length: 1``.

Features (lighthouse layout): video ``<root>/<feat_type>/<vid>.npz`` key ``features`` (T, D); text
``<root>/<text_type>/qid<qid>.npz`` key ``last_hidden_state`` (L, D). TACoS, TVSum and YouTube name the text file
``<qid>.npz`` (their qids are strings), and TVSum stores the tokens under ``token``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ._checks import expect_int, expect_matrix, expect_real, expect_str, is_real, short_repr
from .collate import PaddedCollate
from .errors import DataFormatError
from .features import FeatureCache, align_lengths, l2_normalize, load_feature_array, temporal_endpoint_features

FEATURE_CACHE_BYTES = 512 * 2**20   # per dataset: the feature files a MomentDataset keeps in memory


@dataclass(frozen=True)
class DatasetSpec:
    """Per-dataset constants of the lighthouse format.

    clip_length: seconds per feature clip (lighthouse ``clip_length``: base default 1, overridden to 2 for
    QVHighlights, TACoS and TVSum; Charades keeps 1, YouTube Highlights sets 1).
    text_file: text feature file name pattern inside ``<root>/<text_type>/``.
    text_key: array name in the text ``.npz``.
    normalize_text: lighthouse L2-normalises text tokens except for TVSum / YouTube.
    uses_label: highlight-only dataset with a per-clip ``label`` matrix instead of windows (its training target);
    otherwise a moment-retrieval dataset, whose training target is ``relevant_windows``.
    label_foreground: how a ``label`` (T, A) becomes the foreground target of a grounding model's fg / span heads
    (see :func:`label_foreground`): ``"positive"`` (YouTube: mean over annotators > 0, i.e. UMT's ``match > 0``) or
    ``"median"`` (TVSum: mean annotator score > the video's median).
    """

    name: str
    clip_length: float
    text_file: str = "qid{qid}.npz"
    text_key: str = "last_hidden_state"
    normalize_text: bool = True
    uses_label: bool = False
    label_foreground: str | None = None

    @property
    def target_field(self) -> str:
        """The jsonl field a training line must carry: ``label`` or ``relevant_windows``."""
        return "label" if self.uses_label else "relevant_windows"


DATASETS: dict[str, DatasetSpec] = {
    "qvhighlight": DatasetSpec("qvhighlight", 2.0),
    "charades": DatasetSpec("charades", 1.0),
    "tacos": DatasetSpec("tacos", 2.0, text_file="{qid}.npz"),
    "tvsum": DatasetSpec("tvsum", 2.0, text_file="{qid}.npz", text_key="token", normalize_text=False,
                         uses_label=True, label_foreground="median"),
    "youtube_highlight": DatasetSpec("youtube_highlight", 1.0, text_file="{qid}.npz", normalize_text=False,
                                     uses_label=True, label_foreground="positive"),
}
_ALIASES = {"qvhighlights": "qvhighlight", "qvh": "qvhighlight", "charades_sta": "charades",
            "charades-sta": "charades", "youtube": "youtube_highlight", "youtube_highlights": "youtube_highlight"}


def get_dataset_spec(name: str) -> DatasetSpec:
    """Look up a :class:`DatasetSpec` by name (case-insensitive; a few aliases such as ``qvhighlights``)."""
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in DATASETS:
        raise ValueError(f"unknown lighthouse dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[key]


@dataclass
class MomentAnnotation:
    """One validated line of a lighthouse jsonl file. Windows are ``(start_s, end_s)`` clipped to [0, duration]."""

    qid: int | str
    query: str
    vid: str
    duration: float
    windows: list[tuple[float, float]] | None = None
    clip_ids: list[int] | None = None
    saliency_scores: list[list[float]] | None = None
    label: np.ndarray | None = None
    domain: str | None = None
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_KNOWN = {"qid", "query", "vid", "duration", "relevant_windows", "relevant_clip_ids", "saliency_scores", "label",
          "domain"}


def _parse_windows(raw, path, item: str, duration: float, tol: float) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise DataFormatError(path, "bad value", item=item, field="relevant_windows",
                              expected="a list of [start, end] pairs", found=short_repr(raw))
    out = []
    for k, w in enumerate(raw):
        if not (isinstance(w, list) and len(w) == 2 and all(is_real(v) for v in w)):
            raise DataFormatError(path, f"bad window {k}", item=item, field="relevant_windows",
                                  expected="[start, end] of two finite numbers", found=short_repr(w))
        s, e = float(w[0]), float(w[1])
        if e <= s:
            raise DataFormatError(path, f"window {k} {w} has zero or negative length", item=item,
                                  field="relevant_windows", expected="start < end", found=f"start {s}, end {e}")
        if s < -tol or e > duration + tol:
            raise DataFormatError(path, f"window {k} {w} lies outside the video", item=item,
                                  field="relevant_windows", expected=f"inside [0, {duration:g}] +- {tol:g} s",
                                  found=f"start {s:g}, end {e:g}")
        out.append((max(s, 0.0), min(e, duration)))
    return out


def _parse_line(rec: dict, path, lineno: int, clip_length: float | None, tol: float) -> MomentAnnotation:
    item = f"line {lineno}"
    if "qid" not in rec:
        raise DataFormatError(path, "required field missing", item=item, field="qid", expected="int or str qid",
                              found=f"keys {sorted(rec)}")
    qid = rec["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)) or (isinstance(qid, str) and not qid):
        raise DataFormatError(path, "bad value", item=item, field="qid", expected="an int or a non-empty string",
                              found=short_repr(qid))
    item = f"line {lineno} (qid {qid!r})"
    for name in ("query", "vid", "duration"):
        if name not in rec:
            raise DataFormatError(path, "required field missing", item=item, field=name,
                                  found=f"keys {sorted(rec)}")
    query = expect_str(rec["query"], path, item, "query")
    vid = expect_str(rec["vid"], path, item, "vid")
    duration = expect_real(rec["duration"], path, item, "duration", positive=True)

    windows = None
    if rec.get("relevant_windows") is not None:
        windows = _parse_windows(rec["relevant_windows"], path, item, duration, tol)

    clip_ids = scores = None
    if rec.get("relevant_clip_ids") is not None:
        raw_ids = rec["relevant_clip_ids"]
        if not isinstance(raw_ids, list):
            raise DataFormatError(path, "bad value", item=item, field="relevant_clip_ids",
                                  expected="a list of clip indices", found=short_repr(raw_ids))
        clip_ids = [expect_int(v, path, item, "relevant_clip_ids", minimum=0) for v in raw_ids]
        if len(set(clip_ids)) != len(clip_ids):
            raise DataFormatError(path, "repeated clip ids", item=item, field="relevant_clip_ids",
                                  expected="unique ids", found=short_repr(raw_ids))
        if clip_length is not None and clip_ids:
            n_clips = math.ceil(duration / clip_length - 1e-6)
            if max(clip_ids) >= n_clips:
                raise DataFormatError(path, "clip id beyond the end of the video", item=item,
                                      field="relevant_clip_ids",
                                      expected=f"ids < {n_clips} (duration {duration:g} s / {clip_length:g} s clips)",
                                      found=f"id {max(clip_ids)}")
    if rec.get("saliency_scores") is not None:
        if clip_ids is None:
            raise DataFormatError(path, "saliency_scores given without relevant_clip_ids", item=item,
                                  field="relevant_clip_ids", expected="one clip id per saliency row",
                                  found="missing")
        scores = expect_matrix(rec["saliency_scores"], path, item, "saliency_scores") if rec["saliency_scores"] \
            else []
        if len(scores) != len(clip_ids):
            raise DataFormatError(path, "saliency_scores and relevant_clip_ids differ in length", item=item,
                                  field="saliency_scores", expected=f"{len(clip_ids)} rows (one per clip id)",
                                  found=f"{len(scores)} rows")

    label = None
    if rec.get("label") is not None:
        label = np.asarray(expect_matrix(rec["label"], path, item, "label"), dtype=np.float32)
    domain = None
    if rec.get("domain") is not None:
        domain = expect_str(rec["domain"], path, item, "domain")
    extra = {k: v for k, v in rec.items() if k not in _KNOWN}
    return MomentAnnotation(qid, query, vid, duration, windows, clip_ids, scores, label, domain, lineno, extra)


def read_moment_jsonl(path, *, dataset: str | None = None, clip_length: float | None = None,
                      window_tol: float = 0.5) -> list[MomentAnnotation]:
    """Read and validate a lighthouse / moment_detr jsonl annotation file.

    Args:
        path: the ``.jsonl`` file. Blank lines are skipped.
        dataset: optional dataset name (see :data:`DATASETS`); gives ``clip_length`` when that is not set.
        clip_length: seconds per clip; when known, ``relevant_clip_ids`` must start inside the video.
        window_tol: seconds a window may stick out of [0, duration] (it is then clipped); further out is an error.

    Raises DataFormatError (naming the file, the line and qid, and the field) for invalid JSON, missing or mistyped
    fields, an empty query, a non-positive duration, a window of zero/negative length or outside the video, repeated
    or out-of-range clip ids, saliency rows that do not match the clip ids, a ragged ``label``, a repeated qid, or a
    file with no annotations.
    """
    path = Path(path)
    if clip_length is None and dataset is not None:
        clip_length = get_dataset_spec(dataset).clip_length
    if not path.is_file():
        raise DataFormatError(path, "annotation file not found")
    out: list[MomentAnnotation] = []
    seen: dict[Any, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, "invalid JSON", item=f"line {lineno}", expected="one JSON object",
                                      found=str(e)) from e
            if not isinstance(rec, dict):
                raise DataFormatError(path, "not a JSON object", item=f"line {lineno}", expected="a JSON object",
                                      found=type(rec).__name__)
            ann = _parse_line(rec, path, lineno, clip_length, window_tol)
            if ann.qid in seen:
                raise DataFormatError(path, "repeated qid", item=f"line {lineno}", field="qid",
                                      expected="unique qids", found=f"qid {ann.qid!r} also on line {seen[ann.qid]}")
            seen[ann.qid] = lineno
            out.append(ann)
    if not out:
        raise DataFormatError(path, "no annotations in file", expected="at least one JSON line", found="none")
    return out


def video_feature_path(root, feat_type: str, vid: str) -> Path:
    return Path(root) / feat_type / f"{vid}.npz"


def text_feature_path(root, text_type: str, qid, dataset: str = "qvhighlight") -> Path:
    return Path(root) / text_type / get_dataset_spec(dataset).text_file.format(qid=qid)


def load_video_features(root, feat_types: Sequence[str], vid: str, *, normalize: bool = True,
                        dims: Sequence[int | None] | None = None, cache: FeatureCache | None = None) -> np.ndarray:
    """Load ``<root>/<feat_type>/<vid>.npz`` (key ``features``, (T, D_i)) for each feature type and concatenate
    them with :func:`load_video_files`. Returns float32 (T, sum D_i)."""
    if not feat_types:
        raise ValueError("feat_types must name at least one feature type")
    return load_video_files([video_feature_path(root, t, vid) for t in feat_types], normalize=normalize, dims=dims,
                            item=f"vid {vid}", cache=cache)


def load_video_files(files: Sequence, *, normalize: bool = True, dims: Sequence[int | None] | None = None,
                     item: str | None = None, cache: FeatureCache | None = None) -> np.ndarray:
    """One video's feature files (npz, key ``features``, (T, D_i)), one per feature type, as the model input.

    Each type is L2-normalised per clip (when ``normalize``) **before** concatenation. As in moment_detr /
    lighthouse, types of different length are all truncated to the shortest one (extractors disagree by a clip
    at the end of a video). ``dims`` optionally fixes each type's D; ``cache``: see :func:`load_feature_array`.
    Returns float32 (T, sum D_i).
    """
    dims = list(dims) if dims is not None else [None] * len(files)
    if len(dims) != len(files):
        raise ValueError(f"expected {len(dims)} video feature file(s), one per feature type, got {len(files)}")
    arrays = []
    for p, d in zip(files, dims):
        a = load_feature_array(p, key="features", dim=d, item=item, cache=cache)
        arrays.append(l2_normalize(a) if normalize else a)
    return np.concatenate(align_lengths(arrays, files, mode="truncate", item=item), axis=1)


def load_text_features(root, text_type: str, qid, *, dataset: str = "qvhighlight", normalize: bool | None = None,
                       max_len: int | None = None, dim: int | None = None,
                       cache: FeatureCache | None = None) -> np.ndarray:
    """Load the token features of one query from the dataset's text folder (see :func:`load_text_file`)."""
    return load_text_file(text_feature_path(root, text_type, qid, dataset), dataset=dataset, normalize=normalize,
                          max_len=max_len, dim=dim, item=f"qid {qid!r}", cache=cache)


def load_text_file(path, *, dataset: str = "qvhighlight", normalize: bool | None = None, max_len: int | None = None,
                   dim: int | None = None, item: str | None = None, cache: FeatureCache | None = None) -> np.ndarray:
    """The token features of one query as the model input: (L, D) float32, optionally truncated to ``max_len``.

    The key follows the dataset (see :class:`DatasetSpec`); ``normalize`` defaults to the dataset's lighthouse
    behaviour (L2 per token, except TVSum / YouTube); ``cache``: see :func:`load_feature_array`.
    """
    spec = get_dataset_spec(dataset)
    a = load_feature_array(path, key=spec.text_key, dim=dim, item=item, cache=cache)
    if max_len is not None:
        a = a[:max_len]
    if spec.normalize_text if normalize is None else normalize:
        a = l2_normalize(a)
    return a


def windows_to_foreground(windows: Sequence[tuple[float, float]], num_clips: int, clip_length: float) -> np.ndarray:
    """(T,) bool: clip i, spanning [i*clip_length, (i+1)*clip_length], overlaps some window by a positive amount.

    On QVHighlights this reproduces ``relevant_clip_ids`` exactly.
    """
    fg = np.zeros(num_clips, dtype=bool)
    starts = np.arange(num_clips) * clip_length
    for s, e in windows:
        fg |= (starts < e) & (starts + clip_length > s)
    return fg


def foreground_windows(foreground, clip_length: float) -> np.ndarray:
    """Windows (N, 2) float32 seconds, one per maximal run of True clips in ``foreground`` (T,): clips i..j-1
    give ``[i * clip_length, j * clip_length]``. The inverse of :func:`windows_to_foreground` on the clip grid."""
    fg = np.asarray(foreground, dtype=bool).reshape(-1)
    edges = np.diff(np.r_[0, fg.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return (np.stack([starts, ends], axis=1) * clip_length).astype(np.float32).reshape(-1, 2)


def label_foreground(label, rule: str) -> np.ndarray:
    """(T,) bool foreground of a per-clip ``label`` (T, A) or (T,): ``"positive"`` = mean over annotators > 0
    (YouTube's binary labels, UMT's ``match > 0``); ``"median"`` = mean > the median of the means (TVSum)."""
    mean = np.asarray(label, dtype=np.float64).reshape(len(label), -1).mean(axis=1)
    if rule == "positive":
        return mean > 0
    if rule == "median":
        return mean > np.median(mean)
    raise ValueError(f"unknown label_foreground rule {rule!r}; expected 'positive' or 'median'")


def label_targets(label, rule: str, clip_length: float) -> dict:
    """Foreground / window targets of a highlight-only video, from its per-clip ``label`` (T, A).

    Returns ``foreground`` (T,) bool (:func:`label_foreground`), ``windows`` (N, 2) seconds, one per run of
    foreground clips (:func:`foreground_windows`), and ``windows_norm`` = windows / (T * clip_length), as torch
    tensors: what a grounding model's fg and span heads train on when a dataset has no annotated windows.
    """
    fg = label_foreground(label, rule)
    windows = foreground_windows(fg, clip_length)
    return {"foreground": torch.from_numpy(fg), "windows": torch.from_numpy(windows),
            "windows_norm": torch.from_numpy(windows / np.float32(len(fg) * clip_length))}


def check_targets(annotations: Sequence[MomentAnnotation], source, spec: DatasetSpec, *,
                  require_targets: bool) -> None:
    """Every line must carry the same targets (else samples could not be batched): ``relevant_windows`` /
    ``label`` (the spec's :attr:`~DatasetSpec.target_field`) and ``saliency_scores`` each on all lines or none; with
    ``require_targets`` (training) the target field on all. DataFormatError names the file and first bad line."""
    fields = {"relevant_windows": lambda a: a.windows is not None, "label": lambda a: a.label is not None,
              "saliency_scores": lambda a: a.saliency_scores is not None}
    for name, has in fields.items():
        flags = [has(a) for a in annotations]
        must = require_targets and name == spec.target_field
        if all(flags) or (not any(flags) and not must):
            continue
        bad = next(a for a, f in zip(annotations, flags) if not f)
        first = next((a for a, f in zip(annotations, flags) if f), None)
        why = (f"it on every line of {spec.name} training data" if must else
               f"it on every line, as line {first.line} has it (samples are batched together)")
        raise DataFormatError(source, "required field missing", item=f"line {bad.line} (qid {bad.qid!r})",
                              field=name, expected=why, found="absent or null")


class MomentDataset(PaddedCollate, Dataset):
    """Moment retrieval / highlight detection samples in the lighthouse format, one per query.

    Each item is a dict:

    - ``qid``, ``vid``, ``query``, ``duration`` (the annotation's value; for TVSum that is a clip count),
      ``clip_length``;
    - ``video``: (T, D) float32 (``+2`` tef columns when ``use_tef``); ``text``: (L, Dq) float32;
    - ``windows``: (N, 2) seconds and ``windows_norm``: (N, 2) divided by ``duration`` (N = 0 when unannotated);
    - ``foreground``: (T,) bool, clips overlapping a window (only when windows are annotated);
    - highlight-only datasets (TVSum, YouTube: ``label`` and the spec's ``label_foreground``): ``foreground`` from the
      label and ``windows`` = its runs of foreground clips on the ``clip_length`` grid, ``windows_norm`` divided by
      ``T * clip_length`` (:func:`label_targets`), so the fg and span heads get a target;
    - ``saliency``: (T,) float32, mean annotator score per clip (0 outside ``relevant_clip_ids``), and
      ``saliency_annotators``: (T, A), when ``saliency_scores`` or ``label`` are annotated.

    Length rules (no silent truncation beyond these): ``relevant_clip_ids`` may point at most one clip past the
    feature length (that clip is dropped: extractors often lose the last partial clip); further is an error. A
    ``label`` matrix that differs from the feature length by one row is cut with the features to the shorter
    length; more is an error.

    ``require_targets`` (set it for training): every line must carry the dataset's target (``relevant_windows``, or
    ``label`` for TVSum / YouTube); without it, targets must still be on all lines or none (see
    :func:`check_targets`).

    The feature files read are kept in memory (:class:`~vidmamba.data.features.FeatureCache`, at most
    ``cache_bytes``; 0 turns it off), so later epochs do not parse them again.
    """

    sequence_keys = ("video", "text", "windows", "windows_norm", "foreground", "saliency", "saliency_annotators")

    def __init__(self, annotations, feature_root, video_feat_types: Sequence[str], text_feat_type: str, *,
                 dataset: str, use_tef: bool = False, normalize_video: bool = True, max_text_len: int | None = None,
                 domain: str | None = None, video_dims: Sequence[int | None] | None = None,
                 text_dim: int | None = None, window_tol: float = 0.5, require_targets: bool = False,
                 cache_bytes: int = FEATURE_CACHE_BYTES):
        self.feature_cache = FeatureCache(cache_bytes) if cache_bytes else None
        self.spec = get_dataset_spec(dataset)
        if isinstance(annotations, (str, Path)):
            self.source = str(annotations)
            annotations = read_moment_jsonl(annotations, dataset=dataset, window_tol=window_tol)
        else:
            self.source = "<annotation list>"
            annotations = list(annotations)
        if domain is not None:
            annotations = [a for a in annotations if a.domain == domain]
        if not annotations:
            raise DataFormatError(self.source, "dataset is empty after filtering", field="domain",
                                  expected="at least one annotation",
                                  found=f"none with domain {domain!r}" if domain is not None else "none")
        check_targets(annotations, self.source, self.spec, require_targets=require_targets)
        self.annotations = annotations
        self.feature_root = Path(feature_root)
        self.video_feat_types = list(video_feat_types)
        self.text_feat_type = text_feat_type
        self.use_tef = use_tef
        self.normalize_video = normalize_video
        self.max_text_len = max_text_len
        self.video_dims = video_dims
        self.text_dim = text_dim

    def __len__(self) -> int:
        return len(self.annotations)

    def sample_lengths(self) -> list[int]:
        """Clips per item from the annotations alone (``label`` rows, else duration / clip length), for
        length-grouped batches; the feature files may differ by a clip."""
        return [len(a.label) if a.label is not None else math.ceil(a.duration / self.spec.clip_length - 1e-6)
                for a in self.annotations]

    def _saliency(self, ann: MomentAnnotation, video: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        T = video.shape[0]
        vfile = video_feature_path(self.feature_root, self.video_feat_types[0], ann.vid)
        item = f"qid {ann.qid!r} (line {ann.line})"
        if ann.label is not None:
            n = ann.label.shape[0]
            if abs(n - T) > 1:
                raise DataFormatError(vfile, "label rows and feature length differ by more than one clip",
                                      item=item, field="label", expected=f"{T} +- 1 rows", found=f"{n} rows")
            m = min(n, T)
            return video[:m], ann.label[:m]
        if ann.saliency_scores is None:
            return video, None
        width = len(ann.saliency_scores[0]) if ann.saliency_scores else 1
        sal = np.zeros((T, width), dtype=np.float32)
        for cid, row in zip(ann.clip_ids, ann.saliency_scores):
            if cid > T:
                raise DataFormatError(vfile, "relevant_clip_ids point past the end of the features", item=item,
                                      field="relevant_clip_ids", expected=f"ids <= {T} (features have {T} clips)",
                                      found=f"id {cid}")
            if cid < T:
                sal[cid] = row
        return video, sal

    def __getitem__(self, index: int) -> dict:
        ann = self.annotations[index]
        video = load_video_features(self.feature_root, self.video_feat_types, ann.vid,
                                    normalize=self.normalize_video, dims=self.video_dims, cache=self.feature_cache)
        video, sal = self._saliency(ann, video)
        T = video.shape[0]
        if self.use_tef:
            video = np.concatenate([video, temporal_endpoint_features(T)], axis=1)
        text = load_text_features(self.feature_root, self.text_feat_type, ann.qid, dataset=self.spec.name,
                                  max_len=self.max_text_len, dim=self.text_dim, cache=self.feature_cache)
        windows = np.asarray(ann.windows or [], dtype=np.float32).reshape(-1, 2)
        out = {
            "qid": ann.qid, "vid": ann.vid, "query": ann.query, "duration": ann.duration,
            "clip_length": self.spec.clip_length,
            "video": torch.from_numpy(video), "text": torch.from_numpy(text),
            "windows": torch.from_numpy(windows), "windows_norm": torch.from_numpy(windows / ann.duration),
        }
        if ann.windows is not None:
            out["foreground"] = torch.from_numpy(windows_to_foreground(ann.windows, T, self.spec.clip_length))
        elif ann.label is not None and self.spec.label_foreground is not None:
            out.update(label_targets(sal, self.spec.label_foreground, self.spec.clip_length))
        if sal is not None:
            out["saliency_annotators"] = torch.from_numpy(sal)
            out["saliency"] = torch.from_numpy(sal.mean(axis=1))
        return out
