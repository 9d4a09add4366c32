"""The ``data:`` section of each task family as a dataclass: its keys, their types and their defaults, in one place.

Built once per experiment (:meth:`vidmamba.tasks.base.Task.check_config`) before any file is read or written, with
strict keys (an unknown key names the closest known one) and types (``data.max_text_len: expected int or null``).
:meth:`DataSection.complete` gives the section as a dict with every default filled in, so the readers index it
(``data["downsample"]``) instead of repeating defaults.

Time has one name per meaning: ``clip_length`` is always **seconds per feature row** (an input clip);
``clip_size`` / ``clip_stride`` are the SnAG extractor's window and hop **in frames**, ``downsample`` keeps every
n-th feature row and ``vid_stride`` is the model's grid step in rows (so a grid step lasts
``clip_stride * downsample * vid_stride / fps`` seconds, the step :func:`vidmamba.tasks.long_grounding.timing` gives
the model).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vidmamba.engine.config import Section, require


class DataSection(Section):
    """Shared behaviour of the data sections."""

    section = "data"
    required: tuple[str, ...] = ()  # keys training and evaluation need (after a generated benchmark is resolved)

    @classmethod
    def complete(cls, data: dict | None) -> dict:
        """The section with every default filled in (keys whose value is None are left out: absent means None)."""
        return {k: v for k, v in cls.from_dict(data).to_dict().items() if v is not None}

    @classmethod
    def check_required(cls, data: dict) -> None:
        require(data, cls.required, cls.section)


@dataclass
class GroundingData(DataSection):
    """Grounding tasks (qvhighlights, moment_retrieval, tvsum, youtube): lighthouse layouts, or the UMT layouts of
    TVSum / YouTube Highlights (``dataset: tvsum_umt | youtube_umt``); see :mod:`vidmamba.tasks.grounding`."""

    dataset: str | None = None               # lighthouse dataset name (clip length, file naming) or a UMT layout
    feature_root: str | None = None
    train: str | None = None                 # annotation jsonl (UMT layouts: the split's part, default "train")
    val: str | None = None
    video_features: list[str] | None = None  # feature folders under feature_root, concatenated
    text_features: str | None = None
    max_text_len: int | None = None          # query tokens kept (None: all)
    normalize_video: bool = True             # L2-normalise each feature type per clip
    window_tol: float = 0.5                  # seconds a window may pass the video's end
    video_dims: list[int] | None = None      # feature widths, read off the first training sample when absent
    text_dim: int | None = None
    domain: str | None = None                # TVSum / YouTube domain (one model per domain)
    audio: bool = False                      # UMT layouts: append the audio stream
    query_dir: str | None = None             # YouTube UMT: text features instead of the one-hot domain query
    clip_length: float | None = None         # seconds per feature row (None: the dataset's)

    required = ("dataset", "feature_root")  # + domain (UMT layouts) or video_features, text_features (lighthouse)


@dataclass
class SnagData(DataSection):
    """The long-video grounding task (nlq: Ego4D-NLQ, MAD, TACoS in the SnAG format); see
    :mod:`vidmamba.tasks.long_grounding`."""

    synthetic: dict[str, Any] | None = None  # generated benchmark parameters (fills the file and grid keys)
    annotations: str | None = None           # the SnAG json
    train_split: str = "train"
    val_split: str = "val"
    video_features: list[str] | None = None
    text_features: str | None = None
    clip_size: float | None = None           # frames per feature clip
    clip_stride: float | None = None         # frames between feature clips
    downsample: int = 1                      # keep every n-th feature row
    vid_stride: int = 1                      # feature rows per model grid step
    max_text_len: int | None = None          # query tokens kept when reading (None: all)
    max_clips: int | None = None             # input clips per training window
    max_queries: int | None = None           # queries per training sample
    crop_ratio: list[float] | None = None    # [lo, hi] random crop of shorter training videos
    trunc_thresh: float | None = None        # training windows may cut a ground truth to > this fraction (official 0.5)
    eval_window: int | None = None           # input clips per evaluation window (None: whole videos)
    negative_queries: int = 0                # queries per training window whose truth lies outside it
    video_dims: list[int] | None = None
    text_dim: int | None = None
    clip_length: float | None = None         # seconds per feature row (None: clip_stride / fps of the training videos)

    required = ("annotations", "video_features", "text_features", "clip_size", "clip_stride")

    def __post_init__(self):
        """The ranges the readers need (:class:`~vidmamba.data.snag.SnagTrainDataset` checks them too), as one
        :class:`ConfigError` naming ``data.key`` before any file is read or generated."""
        bad = self.reject
        for name in ("downsample", "vid_stride"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("max_text_len", "max_clips", "max_queries", "eval_window"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(name, "must be >= 1 or null")
        if self.negative_queries < 0:
            bad("negative_queries", "must be >= 0")
        if self.crop_ratio is not None and not (len(self.crop_ratio) == 2
                                                and 0.0 < self.crop_ratio[0] <= self.crop_ratio[1] <= 1.0):
            bad("crop_ratio", "must be [lo, hi] with 0 < lo <= hi <= 1, or null")
        if self.trunc_thresh is not None and not 0.0 <= self.trunc_thresh < 1.0:
            bad("trunc_thresh", "must be in [0, 1) (official 0.5) or null")


@dataclass
class ActionData(DataSection):
    """The action tasks (action, anticipation: EK100 and its synthetic twin); see :mod:`vidmamba.tasks.action`."""

    synthetic: dict[str, Any] | None = None
    train: str | None = None                 # annotation CSVs
    val: str | None = None
    test: str | None = None
    verb_classes: str | None = None
    noun_classes: str | None = None
    features: str | None = None              # feature folder
    fps: float | None = None                 # anticipation: feature rows per second
    obs_seconds: float | None = None         # anticipation: observed seconds before tau_a
    tau_a: float = 1.0                       # anticipation gap (seconds)
    text_encoder: dict[str, Any] | None = None  # {kind: words, dim, seed, max_length} or {kind: hf, path, max_length}
    question_seed: int = 0
    question_context: str | None = None      # "narration" (recognition) or None
    predicted_actions: str | None = None     # JSON {narration_id: [verb, noun]} of an external model
    action_mode: str = "outer"               # action top-k: "outer" (EK100) or "both_in_topk" (MambaVL's code)
    feat_dim: int | None = None
    vocab: list[str] | None = None

    required = ("train", "verb_classes", "noun_classes", "features")


__all__ = ["ActionData", "DataSection", "GroundingData", "SnagData"]
