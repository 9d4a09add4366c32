"""Grounding tasks (moment retrieval + highlight detection on lighthouse-style data; MLVTG and its twins).

Tasks: "qvhighlights", "moment_retrieval", "tvsum", "youtube" — the metric protocols of
:func:`vidmamba.metrics.evaluate.evaluate_predictions`. Config sections (see ``configs/mlvtg_*.yaml``):

* ``model``: ``name`` (a :func:`vidmamba.models.create_model` name) + model options; ``video_dim`` / ``text_dim``
  are read off the data when absent;
* ``data``: ``dataset`` (clip length and file naming, :mod:`vidmamba.data.lighthouse`), ``feature_root``,
  ``train`` / ``val`` annotation jsonl, ``video_features`` (list of feature folders), ``text_features``,
  ``max_text_len``, ``normalize_video``. ``dataset: tvsum_umt`` reads TVSum in the UMT layout instead
  (:class:`~vidmamba.data.tvsum_umt.TVSumUMTDataset`): ``feature_root`` is the UMT folder, ``domain`` one of the 10
  domains (one model per domain), ``train`` / ``val`` name the split's part (default the split name itself),
  ``audio`` appends the audio stream; the ground truth (20-annotator ``label``) comes from ``tvsum_anno.json``.
  ``dataset: youtube_umt`` reads YouTube Highlights in UMT's release layout the same way
  (:class:`~vidmamba.data.youtube.YouTubeUMTDataset`: ``domain`` one of the 6, the query is the domain name encoded
  as a one-hot of ``text_dim`` unless ``query_dir`` holds text features; GT from ``youtube_anno.json``). Lighthouse
  layouts with a ``domain`` key (TVSum, YouTube) keep that domain's lines only;
* ``train``: :class:`~vidmamba.engine.config.TrainerConfig` options.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidmamba.data.collate import pad_sequences
from vidmamba.data.features import l2_normalize, load_feature_array
from vidmamba.data.lighthouse import (DATASETS, MomentDataset, get_dataset_spec, load_text_file, load_video_files,
                                      video_feature_path)
from vidmamba.data.tvsum_umt import TVSUM_CLIP_LENGTH, TVSumUMTDataset
from vidmamba.data.umt import I3D_DIM
from vidmamba.data.youtube import YOUTUBE_CLIP_STEP_FRAMES, YouTubeUMTDataset
from vidmamba.engine.config import require, set_from_data
from vidmamba.engine.trainer import to_device
from vidmamba.metrics.evaluate import evaluate_predictions
from vidmamba.metrics.validation import GroundTruthError, read_jsonl
from vidmamba.models import create_model
from vidmamba.errors import ConfigError
from vidmamba.tasks.base import MomentTask, register
from vidmamba.tasks.data_config import GroundingData

UMT = "tvsum_umt"       # data.dataset value of the TVSum UMT layout
YOUTUBE_UMT = "youtube_umt"
UMT_LAYOUTS = (UMT, YOUTUBE_UMT)
YOUTUBE_FPS = 30.0      # the usual frame rate: a YouTube UMT clip every 50 frames (batches carry each video's own)


def build_dataset(data: dict, split: str, *, train: bool = False):
    """The ``split`` ("train" / "val") dataset described by the (checked) ``data`` config section; ``train``: every
    annotation line must carry the training target (an error naming the line otherwise)."""
    umt = dict(normalize=data["normalize_video"], audio=data["audio"])
    if data["dataset"] == UMT:
        return TVSumUMTDataset(data["feature_root"], data["domain"], data.get(split, split), **umt)
    if data["dataset"] == YOUTUBE_UMT:
        return YouTubeUMTDataset(data["feature_root"], data["domain"], data.get(split, split), **umt,
                                 text_dim=data.get("text_dim", 512), query_dir=data.get("query_dir"))
    if split not in data:
        raise ConfigError(f"data.{split} is missing: the {split!r} annotation file")
    return MomentDataset(data[split], data["feature_root"], data["video_features"], data["text_features"],
                         dataset=data["dataset"], max_text_len=data.get("max_text_len"), domain=data.get("domain"),
                         normalize_video=data["normalize_video"], window_tol=data["window_tol"],
                         video_dims=data.get("video_dims"), text_dim=data.get("text_dim"), require_targets=train)


def clip_length(data: dict) -> float:
    """Seconds per clip of a data section (training config or pretrained conventions)."""
    if "clip_length" in data:
        return float(data["clip_length"])
    if data["dataset"] == YOUTUBE_UMT:
        return YOUTUBE_CLIP_STEP_FRAMES / YOUTUBE_FPS
    return TVSUM_CLIP_LENGTH if data["dataset"] == UMT else get_dataset_spec(data["dataset"]).clip_length


def ground_truth(data: dict, split: str, dataset) -> tuple[list[dict], str]:
    """(GT rows for :func:`~vidmamba.metrics.evaluate.evaluate_predictions`, their source for error messages).

    Lighthouse layouts: the split's annotation jsonl. TVSum UMT layout: one row per video, ``qid`` = vid, ``label`` =
    its (T, 20) annotator scores (the ``tvsum`` protocol's GT format), read from ``tvsum_anno.json``; YouTube UMT
    layout: the dataset's rows (per-clip ``match``) from ``youtube_anno.json``."""
    if data["dataset"] == YOUTUBE_UMT:
        return dataset.gt_rows(), str(Path(data["feature_root"]) / "youtube_anno.json")
    if data["dataset"] != UMT:
        return read_jsonl(data[split], GroundTruthError), data[split]
    return ([{"qid": vid, "label": dataset.videos[vid].scores.tolist()} for vid in dataset.vids],
            str(Path(data["feature_root"]) / "tvsum_anno.json"))


def training_clips(data: dict, dataset) -> int:
    """Clips of the longest training video (the model's ``train_clips``), from the annotations: no feature file is
    read (UMT layouts: the annotation's per-clip scores / matches; lighthouse: ``duration`` over the clip length)."""
    if data["dataset"] in UMT_LAYOUTS:
        return max(dataset.videos[vid].num_clips for vid in dataset.vids)
    per_clip = 1.0 if duration_in_clips(data) else clip_length(data)
    return max(math.ceil(a.duration / per_clip - 1e-6) for a in dataset.annotations)


def duration_in_clips(data: dict) -> bool:
    """True when the dataset's annotated ``duration`` is a clip count, not seconds (lighthouse's TVSum jsonl)."""
    return data["dataset"] not in UMT_LAYOUTS and get_dataset_spec(data["dataset"]).name == "tvsum"


@torch.no_grad()
def predict_loader(model, loader: DataLoader, device="cpu", duration_in_clips: bool = False) -> list[dict]:
    """Official prediction rows (qid, query, vid, pred_relevant_windows, pred_saliency_scores) for every sample.

    ``duration_in_clips``: the batches' ``duration`` counts clips; it is turned into seconds (x ``clip_length``)
    before the model clamps its windows to it."""
    rows = []
    for batch in loader:
        if duration_in_clips:
            batch = {**batch, "duration": [float(d) * float(c) for d, c in zip(batch["duration"],
                                                                                 batch["clip_length"])]}
        rows.extend(model.predict(to_device(batch, torch.device(device))))
    return rows


class GroundingTask(MomentTask):
    """Moment retrieval / highlight detection on lighthouse-style batches (one query per sample). ``exportable``:
    its checkpoints become pretrained folders (tasks whose queries are text)."""

    family = "grounding"
    input_keys = ("video_dims", "text_dim")
    data_config = GroundingData

    def __init__(self, name: str, selection_metric: str, exportable: bool = True):
        super().__init__(name, selection_metric)
        self.exportable = exportable

    def data_options(self, data: dict) -> dict:
        data = GroundingData.complete(data)
        GroundingData.check_required(data)
        require(data, ("domain",) if data["dataset"] in UMT_LAYOUTS else ("video_features", "text_features"), "data")
        return data

    def check_data(self, dataset) -> None:
        """UMT layouts (whole videos, a few hundred files): read every item now, so a missing, short, wide or NaN
        feature file is an error before the first step or any write."""
        if isinstance(dataset, (TVSumUMTDataset, YouTubeUMTDataset)):
            for i in range(len(dataset)):
                dataset[i]

    def build_dataset(self, data: dict, split: str, *, train: bool = False):
        return build_dataset(data, split, train=train)

    def has_split(self, data: dict, split: str) -> bool:
        return True  # a missing annotation file is an error naming it, not a run without validation

    def read_widths(self, config: dict, train_set) -> None:
        """Fix ``video_dims`` (per feature type) and ``text_dim`` from the first training sample when absent (every
        later file is checked against them), and the model's ``video_dim`` / ``text_dim`` / ``clip_length``."""
        data, model = config["data"], config["model"]
        if "video_dims" not in data or "text_dim" not in data:
            first = train_set[0]
            if data["dataset"] in UMT_LAYOUTS:
                width = int(first["video"].shape[1])            # rgb 1024 + flow 1024 (+ audio)
                data.setdefault("video_dims", [I3D_DIM, I3D_DIM] + ([width - 2 * I3D_DIM] if data.get("audio")
                                                                    else []))
            else:
                vid = train_set.annotations[0].vid
                data.setdefault("video_dims", [
                    int(load_feature_array(video_feature_path(data["feature_root"], t, vid), key="features").shape[1])
                    for t in data["video_features"]])
                train_set.video_dims = data["video_dims"]
            data.setdefault("text_dim", int(first["text"].shape[1]))
            if data["dataset"] not in UMT_LAYOUTS:
                train_set.text_dim = data["text_dim"]
        set_from_data(model, video_dim=sum(data["video_dims"]), text_dim=data["text_dim"])
        model.setdefault("clip_length", clip_length(data))
        model.setdefault("train_clips", training_clips(data, train_set))

    def build_model(self, config: dict) -> torch.nn.Module:
        return create_model(**config["model"])

    def predict(self, model, loader, data: dict, device="cpu") -> list[dict]:
        return predict_loader(model, loader, device, duration_in_clips(data))

    def scorer(self, data: dict, split: str, dataset):
        gt_rows, gt_path = ground_truth(data, split, dataset)
        return lambda rows: evaluate_predictions(self.name, rows, gt_rows, gt_path=gt_path)

    # ------------------------------------------------------------------ inference on one video
    def conventions(self, config: dict) -> tuple[float, bool]:
        """(seconds per clip, L2-normalise text tokens) a video's inputs are prepared with: a pretrained folder's
        ``data.clip_length`` / ``data.normalize_text``, else the model's ``clip_length`` and the training dataset's
        conventions."""
        data, model = config["data"], config.get("model", {})
        spec = get_dataset_spec(data["dataset"]) if data.get("dataset") not in (None, *UMT_LAYOUTS) else None
        length = data.get("clip_length", model.get("clip_length"))
        if length is None:
            length = clip_length(data)
        normalize_text = data.get("normalize_text", spec.normalize_text if spec else True)
        return float(length), bool(normalize_text)

    @torch.no_grad()
    def predict_clips(self, model, config: dict, video: torch.Tensor, texts: list[torch.Tensor],
                      duration: float, fps: float | None = None) -> list[dict]:
        """See :meth:`MomentTask.predict_clips`; ``fps`` is not needed (clips of fixed seconds)."""
        length, _ = self.conventions(config)
        text, text_mask = pad_sequences(list(texts))
        q, t = len(texts), len(video)
        batch = {"video": video[None].expand(q, t, video.shape[1]),  # one copy of the video, shared
                 "video_mask": torch.ones(q, t, dtype=torch.bool), "text": text, "text_mask": text_mask,
                 "clip_length": torch.full((q,), length), "duration": torch.full((q,), float(duration))}
        return [{"windows": p["pred_relevant_windows"], "saliency": p["pred_saliency_scores"]}
                for p in model.predict(batch)]

    def prepare_inputs(self, config: dict, video: np.ndarray, texts: list[np.ndarray]) -> tuple:
        """A raw video's features (T, D) and its queries' token features [(L, Dq)] prepared as the training readers
        prepare them (per-clip L2 of the video when ``data.normalize_video``, ``max_text_len``, the dataset's text
        normalisation): (video tensor, [text tensors])."""
        data = config["data"]
        if data["normalize_video"]:
            video = l2_normalize(video)
        max_len = data.get("max_text_len")
        texts = [t[:max_len] if max_len is not None else t for t in texts]
        if self.conventions(config)[1]:
            texts = [l2_normalize(t) for t in texts]
        return torch.from_numpy(np.ascontiguousarray(video)), [torch.from_numpy(t) for t in texts]

    def read_feature_files(self, config: dict, video_files, query_file, *, fps: float | None = None,
                           duration: float | None = None) -> tuple:
        """See :meth:`MomentTask.read_feature_files`: the training readers' normalisation, ``max_text_len`` and
        width checks. ``video_files``: one npz (key ``features``) per feature type of the checkpoint, in its order
        (UMT layout: the ``_rgb.npy`` and ``_opt.npy`` files); ``query_file``: the query's token features (npz key
        ``last_hidden_state``, TVSum ``token``). ``fps`` is not needed (clips of fixed seconds); ``duration``
        defaults to the clips' span."""
        data = config["data"]
        video = torch.from_numpy(load_video_files(list(video_files), normalize=data["normalize_video"],
                                                  dims=data["video_dims"]))
        text_format = "tvsum" if data.get("dataset") == UMT else data.get("dataset", "qvhighlight")
        text = torch.from_numpy(load_text_file(query_file, dataset=text_format, max_len=data.get("max_text_len"),
                                               dim=data["text_dim"]))
        length = self.conventions(config)[0]
        duration = len(video) * length if duration is None else float(duration)
        return video, [text], {"duration": duration, "fps": None, "clip_length": length}

    def pretrained_data(self, experiment: dict) -> dict:
        """The feature types, widths, normalisations and clip length of the training data (and the lighthouse
        dataset's text normalisation)."""
        src, model_cfg = experiment["data"], experiment["model"]
        spec = DATASETS.get(src.get("dataset"))
        data = {k: src[k] for k in ("video_features", "text_features", "video_dims", "text_dim", "normalize_video",
                                    "max_text_len", "dataset") if k in src}
        data["clip_length"] = model_cfg.get("clip_length", spec.clip_length if spec else None)
        if spec is not None:
            data["normalize_text"] = spec.normalize_text
        return data


# The checkpoint-selection metric of each protocol (lighthouse: MR-full-mAP for MR data, mAP for HD data).
register(GroundingTask("qvhighlights", "MR-full-mAP"), GroundingTask("moment_retrieval", "MR-full-mAP"),
         GroundingTask("tvsum", "HL-top5-mAP"),
         GroundingTask("youtube", "HL-mAP", exportable=False))  # its queries are domain labels, not text

__all__ = ["GroundingTask", "build_dataset", "clip_length", "duration_in_clips", "ground_truth",
           "predict_loader", "training_clips"]
