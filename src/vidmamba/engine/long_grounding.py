"""Long-video grounding experiments (Ego4D-NLQ, MAD, TACoS in the SnAG / HieraMamba format; config ``task: nlq``).

Config sections (see ``configs/hieramamba_*.yaml``):

* ``model``: ``name`` (a :func:`vidmamba.models.build_model` name) + model options; ``video_dim`` / ``text_dim``
  are read off the data when absent. SnAG-native models (HieraMamba) take the batch of
  :meth:`~vidmamba.data.snag.SnagDataset.collate` and ``predict`` a (K, 3) tensor ``[start, end, score]`` in grid
  units per query; lighthouse-batch models (MLVTG and its twins) are wrapped in :class:`PerQueryMomentAdapter`.
* ``data``: ``synthetic: {params}`` (the benchmark of :mod:`vidmamba.data.synthetic_long`, generated once under
  ``$VIDMAMBA_CACHE``; it fills the file and grid keys, explicit keys win) or ``annotations`` (the SnAG json);
  ``train_split`` / ``val_split`` (its split names; default "train" / "val"); ``video_features`` (list of feature
  folders, concatenated) and ``text_features`` (folder); ``clip_size`` / ``clip_stride`` (frames), ``downsample``,
  ``vid_stride`` (the seconds <-> grid conversion of :mod:`vidmamba.data.snag`); ``max_text_len``; training
  sampling: ``max_clips`` (input clips per training window; longer videos are cut at random keeping the ground
  truth), ``max_queries`` (per sample), ``crop_ratio``; ``eval_window`` (input clips: evaluate long videos in
  half-overlapping windows merged by NMS, for models that cannot take a whole video; default whole videos);
  ``video_dims`` / ``text_dim``.
* ``train``: :class:`~vidmamba.engine.config.TrainerConfig` options; the selection metric defaults to ``avg``
  (the Ego4D-NLQ average of R1@0.3, R1@0.5, R5@0.3, R5@0.5).

Predictions are converted back to seconds with :func:`~vidmamba.data.snag.grid_to_seconds` and scored by the ``nlq``
protocol of :func:`vidmamba.metrics.evaluate.evaluate_predictions` (R@{1,5,10,50} x IoU {0.1,0.3,0.5} + avg).
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vidmamba.data.features import align_lengths, find_feature_file, load_feature_array
from vidmamba.data.lighthouse import windows_to_foreground
from vidmamba.data.snag import SnagDataset, SnagTrainDataset, grid_to_seconds
from vidmamba.data.synthetic_long import SNAG_GRID, ensure_long_benchmark
from vidmamba.engine.checkpoint import Checkpoint, load_weights, run_checkpoint
from vidmamba.engine.config import TrainerConfig, check_data_keys, set_from_data
from vidmamba.engine.experiments import write_evaluation
from vidmamba.engine.trainer import Trainer, to_device
from vidmamba.metrics.evaluate import evaluate_predictions
from vidmamba.models import build_model
from vidmamba.models.mlvtg import MLVTG
from vidmamba.nn.nms import nms_1d

SELECTION_METRIC = "avg"
DATA_KEYS = {"synthetic", "annotations", "train_split", "val_split", "video_features", "text_features", "clip_size",
             "clip_stride", "downsample", "vid_stride", "max_text_len", "max_clips", "max_queries", "crop_ratio",
             "eval_window", "video_dims", "text_dim"}
WINDOW_NMS_IOU = 0.7  # merging the predictions of overlapping evaluation windows (hard NMS)


# ---------------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------------
def _data_options(data: dict) -> dict:
    """``data`` with ``synthetic`` resolved to files (explicit keys win); unknown / missing keys are errors."""
    check_data_keys(data, DATA_KEYS)
    if data.get("synthetic") is not None:
        root = ensure_long_benchmark(**data["synthetic"])
        data = {"annotations": str(root / "annotations.json"), "video_features": [str(root / "video")],
                "text_features": str(root / "text"), **SNAG_GRID, **data}
    check_data_keys(data, DATA_KEYS, ("annotations", "video_features", "text_features", "clip_size", "clip_stride"))
    if not isinstance(data["video_features"], (list, tuple)) or not data["video_features"]:
        raise ValueError(f"data.video_features must be a non-empty list of folders, got {data['video_features']!r}")
    return data


def split_name(data: dict, split: str) -> str:
    """The annotation-json split of ``split`` ("train" / "val" map through ``train_split`` / ``val_split``)."""
    return data.get(f"{split}_split", split) if split in ("train", "val") else split


def build_dataset(data: dict, split: str, *, train: bool = False) -> SnagDataset:
    """The ``split`` dataset of the ``data`` section: training samples (query groups, random truncation) when
    ``train``, else one item per video with all its queries."""
    data = _data_options(data)
    kw = dict(clip_size=data["clip_size"], clip_stride=data["clip_stride"], downsample=data.get("downsample", 1),
              vid_stride=data.get("vid_stride", 1), video_dims=data.get("video_dims"), text_dim=data.get("text_dim"),
              max_text_len=data.get("max_text_len"))
    args = (data["annotations"], split_name(data, split), data["video_features"], data["text_features"])
    if train:
        return SnagTrainDataset(*args, max_clips=data.get("max_clips"), max_queries=data.get("max_queries"),
                                crop_ratio=data.get("crop_ratio"), **kw)
    return SnagDataset(*args, **kw)


def resolve_dims(config: dict) -> dict:
    """A copy of ``config`` whose ``data`` fixes ``video_dims`` (per folder) and ``text_dim`` (read off the first
    training video and query when absent; every later file is checked against them) and whose ``model`` has the
    matching ``video_dim`` / ``text_dim``."""
    config = copy.deepcopy(config)
    data, model = _data_options(config["data"]), config["model"]
    config["data"] = data
    if "video_dims" not in data or "text_dim" not in data:
        video = build_dataset(data, "train").videos[0]
        item = f"video {video.vid}"
        data.setdefault("video_dims", [
            int(load_feature_array(find_feature_file(d, video.vid, item=item), item=item).shape[1])
            for d in data["video_features"]])
        tid = video.queries[0].text_id
        data.setdefault("text_dim", int(load_feature_array(
            find_feature_file(data["text_features"], tid, item=f"text id {tid}"), item=f"text id {tid}").shape[1]))
    set_from_data(model, video_dim=sum(data["video_dims"]), text_dim=data["text_dim"])
    return config


def ground_truth_rows(dataset: SnagDataset) -> list[dict]:
    """One ``nlq`` ground-truth row per query: ``qid`` (text id), ``vid``, ``duration``, ``relevant_windows``."""
    return [{"qid": q.text_id, "query": q.sentence, "vid": v.vid, "duration": v.duration,
             "relevant_windows": [list(q.segment)]} for v in dataset.videos for q in v.queries]


# ---------------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------------
def moment_batch(batch: dict) -> dict:
    """A SnAG batch as the lighthouse batch of :class:`~vidmamba.models.mlvtg.MLVTG`: one sample per query.

    Time unit = one clip (``clip_length`` 1) with clip ``i`` spanning ``[i, i + 1]``, i.e. grid + 0.5; ``windows``
    (Q, 1, 2) is the query's segment in that unit, ``foreground`` the clips it overlaps, ``duration`` the clip count.
    No saliency labels (the saliency losses are skipped).
    """
    qi = batch["query_index"]
    video, vmask = batch["video"][qi], batch["video_mask"][qi]
    lengths = vmask.sum(1)
    out = {"video": video, "video_mask": vmask, "text": batch["text"], "text_mask": batch["text_mask"],
           "clip_length": [1.0] * len(qi), "duration": lengths.float()}
    if "segments_grid" in batch:
        windows = (batch["segments_grid"].float() + 0.5).clamp(min=0)
        windows = torch.minimum(windows, lengths[:, None].float())
        out["windows"] = windows[:, None, :]
        out["windows_mask"] = torch.ones(len(qi), 1, dtype=torch.bool, device=windows.device)
        fg = [torch.from_numpy(windows_to_foreground([tuple(w)], video.shape[1], 1.0))
              for w in windows.detach().cpu().tolist()]
        out["foreground"] = torch.stack(fg).to(vmask.device) & vmask
    return out


class PerQueryMomentAdapter(nn.Module):
    """Trains / evaluates a lighthouse-batch model (MLVTG) on SnAG batches (see :func:`moment_batch`).

    ``predict`` returns, like the SnAG-native models, one (K, 3) float tensor ``[start, end, score]`` in grid units
    per query, sorted by score.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model(moment_batch(batch))

    @torch.no_grad()
    def predict(self, batch: dict) -> list[torch.Tensor]:
        preds = self.model.predict(moment_batch(batch))
        out = []
        for p in preds:
            w = torch.tensor(p["pred_relevant_windows"], dtype=torch.float32).reshape(-1, 3)
            w[:, :2] -= 0.5
            out.append(w)
        return out


def build_long_model(model_cfg: dict, data: dict | None = None) -> nn.Module:
    """The model of a ``model`` config section; lighthouse-batch models come wrapped in
    :class:`PerQueryMomentAdapter` (which needs ``data.vid_stride`` 1: grid = input clips)."""
    options = dict(model_cfg)
    model = build_model(options.pop("name"), **options)
    if isinstance(model, MLVTG):
        if data is not None and data.get("vid_stride", 1) != 1:
            raise ValueError(f"{model_cfg['name']} reads SnAG data one input clip per step; data.vid_stride must be 1, "
                             f"got {data['vid_stride']}")
        model = PerQueryMomentAdapter(model)
    return model


# ---------------------------------------------------------------------------------------------------------------------
# prediction
# ---------------------------------------------------------------------------------------------------------------------
def video_batches(batch: dict):
    """Split a SnAG batch into single-video batches (the collate keys, trimmed to the video's length)."""
    for b in range(batch["video"].shape[0]):
        rows = (batch["query_index"] == b).nonzero().squeeze(1)
        n = int(batch["video_mask"][b].sum())
        tl = int(batch["text_mask"][rows].sum(1).max())
        one = {"video": batch["video"][b:b + 1, :n], "video_mask": batch["video_mask"][b:b + 1, :n],
               "text": batch["text"][rows, :tl], "text_mask": batch["text_mask"][rows, :tl],
               "query_index": torch.zeros(len(rows), dtype=torch.long, device=rows.device)}
        for key in ("vid", "fps", "duration"):
            one[key] = [batch[key][b]]
        for key in ("sentences", "text_ids"):
            one[key] = [batch[key][int(r)] for r in rows]
        for key in ("segments", "segments_grid"):
            if key in batch:
                one[key] = batch[key][rows]
        yield one


def predict_windowed(model: nn.Module, batch: dict, window: int, vid_stride: int = 1) -> list[torch.Tensor]:
    """Predictions for a single-video batch from half-overlapping windows of ``window`` input clips: each window's
    predictions are shifted to the video's grid, pooled and reduced by hard NMS (IoU > 0.7) to as many as the most
    any window returned. (K, 3) per query, sorted by score."""
    n = batch["video"].shape[1]
    if n <= window:
        return model.predict(batch)
    step = max(vid_stride, window // 2 // vid_stride * vid_stride)
    starts = list(range(0, n - window, step)) + [-(-(n - window) // vid_stride) * vid_stride]  # last: to the end
    pooled: list[list[torch.Tensor]] = [[] for _ in range(batch["text"].shape[0])]
    for a in sorted(set(starts)):
        sub = {**batch, "video": batch["video"][:, a:a + window], "video_mask": batch["video_mask"][:, a:a + window]}
        for q, p in enumerate(model.predict(sub)):
            p = p.detach().float().cpu().clone()
            p[:, :2] += a / vid_stride
            pooled[q].append(p)
    out = []
    for parts in pooled:
        keep = max(len(p) for p in parts)
        allp = torch.cat(parts)
        segs, scores, _ = nms_1d(allp[:, :2], allp[:, 2], "hard", WINDOW_NMS_IOU, min_score=float("-inf"),
                                 max_num=keep)
        out.append(torch.cat([segs, scores[:, None]], 1))
    return out


@torch.no_grad()
def predict_rows(model: nn.Module, loader: DataLoader, data: dict, device="cpu") -> list[dict]:
    """``nlq`` prediction rows (``qid`` = text id, ``query``, ``vid``, ``pred_relevant_windows`` in seconds, sorted
    by score) for every query of the loader's dataset."""
    conv = dict(clip_size=data["clip_size"], stride=data["clip_stride"] * data.get("downsample", 1),
                vid_stride=data.get("vid_stride", 1))
    window = data.get("eval_window")
    rows = []
    for batch in loader:
        batch = to_device(batch, torch.device(device))
        for one in video_batches(batch):
            if window:
                preds = predict_windowed(model, one, int(window), conv["vid_stride"])
            else:
                preds = model.predict(one)
            fps, duration = one["fps"][0], one["duration"][0]
            for q, p in enumerate(preds):
                p = p.detach().double().cpu().reshape(-1, 3)
                secs = grid_to_seconds(p[:, :2], fps=fps, duration=duration, **conv)
                rows.append({"qid": one["text_ids"][q], "query": one["sentences"][q], "vid": one["vid"][0],
                             "pred_relevant_windows": [[float(s), float(e), float(c)] for (s, e), c in
                                                       zip(secs.tolist(), p[:, 2].tolist())]})
    return rows


def make_evaluate_fn(data: dict, dataset: SnagDataset):
    """``evaluate_fn(model, loader)`` for the trainer: predict, score with the ``nlq`` protocol (brief metrics)."""
    gt = ground_truth_rows(dataset)

    def evaluate_fn(model, loader):
        device = next(model.parameters()).device
        metrics = evaluate_predictions("nlq", predict_rows(model, loader, data, device), gt)
        return {k: float(v) for k, v in metrics["brief"].items() if v is not None}

    return evaluate_fn


# ---------------------------------------------------------------------------------------------------------------------
# the three entry points of an experiment family
# ---------------------------------------------------------------------------------------------------------------------
def train(config: dict, resume=None) -> dict:
    """Train the model described by ``config``; returns the trainer's summary (best metric, final metrics)."""
    config = resolve_dims(config)
    data = config["data"]
    train_ds, val_ds = build_dataset(data, "train", train=True), build_dataset(data, "val")
    trainer_opts = dict(config.get("train", {}))
    if "metric" not in trainer_opts:  # a percentage, higher is better
        trainer_opts.update(metric=SELECTION_METRIC, higher_is_better=True)
    torch.manual_seed(int(trainer_opts.get("seed", 0)))
    model = build_long_model(config["model"], data)
    with Trainer(model, trainer_opts, train_ds, val_ds, collate_fn=SnagDataset.collate,
                 evaluate_fn=make_evaluate_fn(data, val_ds), resume=resume,
                 model_config={**config, "train": trainer_opts}) as trainer:
        return trainer.fit()


def load_trained(ckpt) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint folder (or of a run folder's ``best``) and load its (EMA) weights."""
    folder = run_checkpoint(ckpt)
    config = Checkpoint(folder).config["model"]
    model = build_long_model(config["model"], config["data"])
    load_weights(folder, model, use_ema=True)
    return model.eval(), config


def evaluate(ckpt, out_dir, split: str = "val", data: dict | None = None) -> tuple[dict, list[dict]]:
    """Predict ``split`` with a checkpoint, write ``<out_dir>/<split>_preds.jsonl`` and ``<split>_metrics.json``;
    returns (metrics, prediction rows).

    ``split``: "train" / "val" (through ``train_split`` / ``val_split``) or any split name of the annotation json.
    ``data``: a config's data section; it overrides the checkpoint's, whose feature widths stay in force.
    """
    model, config = load_trained(ckpt)
    data = {**config["data"], **(data or {})}
    for key in ("video_dims", "text_dim"):
        data[key] = config["data"][key]
    dataset = build_dataset(data, split)
    loader = DataLoader(dataset, batch_size=TrainerConfig.from_dict(config["train"]).eval_batch, shuffle=False,
                        collate_fn=dataset.collate)
    rows = predict_rows(model, loader, data)
    metrics = evaluate_predictions("nlq", rows, ground_truth_rows(dataset))
    write_evaluation(out_dir, split, rows, metrics)
    return metrics, rows


def predict_features(ckpt, video_feature_files, query_feature_file, query: str = "", *, fps: float | None = None,
                     duration: float | None = None) -> dict:
    """Moments for one video and one query from SnAG feature files, prepared as in training.

    ``video_feature_files``: one ``.npy``/``.pt`` (T, C_i) per feature folder of the checkpoint's config, in its
    order; ``query_feature_file``: the query's (L, D) text features. ``fps`` (frames per second of the video the
    features came from) is required: it maps the feature grid back to seconds (``vidmamba.data.snag``).
    ``duration`` defaults to the span the features cover. Returns ``{"query", "windows": [[start_s, end_s, score],
    ...] (sorted by score), "fps", "duration"}``."""
    if fps is None or not fps > 0:
        raise ValueError("predicting with an nlq (SnAG) checkpoint needs the video's frame rate: pass --fps")
    model, config = load_trained(ckpt)
    data = config["data"]
    files = list(video_feature_files) if isinstance(video_feature_files, (list, tuple)) else [video_feature_files]
    if len(files) != len(data["video_dims"]):
        raise ValueError(f"the checkpoint reads {len(data['video_dims'])} video feature file(s) per video "
                         f"(widths {data['video_dims']}), got {len(files)}: {[str(f) for f in files]}")
    arrays = [load_feature_array(f, dim=d, item="video features") for f, d in zip(files, data["video_dims"])]
    video = np.concatenate(align_lengths(arrays, files, mode="pad_last", item="video features"), axis=1)
    video = video[::data.get("downsample", 1)]
    text = load_feature_array(query_feature_file, dim=data["text_dim"], item="query features")
    if data.get("max_text_len"):
        text = text[:data["max_text_len"]]
    stride = data["clip_stride"] * data.get("downsample", 1)
    if duration is None:
        duration = ((len(video) - 1) * stride + data["clip_size"]) / fps
    item = {"vid": Path(files[0]).stem, "fps": float(fps), "duration": float(duration),
            "video": torch.from_numpy(np.ascontiguousarray(video)), "texts": [torch.from_numpy(text)],
            "sentences": [query], "text_ids": ["query"], "segments": torch.zeros(1, 2),
            "segments_grid": torch.zeros(1, 2)}
    row = predict_rows(model, [SnagDataset.collate([item])], data)[0]
    return {"query": query, "windows": row["pred_relevant_windows"], "fps": float(fps), "duration": float(duration)}
