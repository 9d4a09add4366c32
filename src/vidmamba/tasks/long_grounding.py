"""Long-video grounding (Ego4D-NLQ, MAD, TACoS in the SnAG / HieraMamba format; task "nlq").

Config sections (see ``configs/hieramamba_*.yaml``):

* ``model``: ``name`` (a :func:`vidmamba.models.create_model` name) + model options; ``video_dim`` / ``text_dim``
  are read off the data when absent. SnAG-native models (HieraMamba) take the batch of
  :meth:`~vidmamba.data.snag.SnagDataset.collate`; lighthouse-batch models (MLVTG and its twins) are wrapped in
  :class:`PerQueryMomentAdapter`. Both answer ``predict`` with the grounding contract of :mod:`vidmamba.models`.
* ``data``: ``synthetic: {params}`` (the benchmark of :mod:`vidmamba.data.synthetic_long`, or with ``generator:
  long_context`` that of :mod:`vidmamba.data.synthetic_long_context`, generated once under ``$VIDMAMBA_CACHE``; it fills the file and grid keys, explicit keys win) or ``annotations`` (the SnAG json);
  ``train_split`` / ``val_split`` (its split names; default "train" / "val"); ``video_features`` (list of feature
  folders, concatenated) and ``text_features`` (folder); ``clip_size`` / ``clip_stride`` (frames), ``downsample``,
  ``vid_stride`` (the seconds <-> grid conversion of :mod:`vidmamba.data.snag`); ``max_text_len``; training
  sampling: ``max_clips`` (input clips per training window; longer videos are cut at random keeping the ground
  truth), ``max_queries`` (per sample), ``crop_ratio``, ``trunc_thresh`` (null: ground truth kept whole; official
  0.5: a window keeps more than half of each), ``negative_queries`` (per window, up
  to this many other queries of the video whose truth lies outside it, trained as all-background, so the scores of
  windows compare; MLVTG's ``train_clips`` is set to ``max_clips``); ``eval_window`` (input clips: evaluate long videos in
  half-overlapping windows merged by NMS, for models that cannot take a whole video; default whole videos);
  ``video_dims`` / ``text_dim``; ``clip_length`` (seconds per feature row; read off the training annotations when
  every video has the same fps, needed to answer a raw video with ``vidmamba predict VIDEO``).
* ``train``: :class:`~vidmamba.engine.config.TrainerConfig` options; the selection metric defaults to ``avg``
  (the Ego4D-NLQ average of R1@0.3, R1@0.5, R5@0.3, R5@0.5).

Grid coordinates map to seconds as :func:`~vidmamba.data.snag.grid_to_seconds` does (the batch's ``clip_length`` /
``clip_offset``, :func:`timing`); predictions are scored by the ``nlq`` protocol of
:func:`vidmamba.metrics.evaluate.evaluate_predictions` (R@{1,5,10,50} x IoU {0.1,0.3,0.5} + avg).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vidmamba.data.features import align_lengths
from vidmamba.data.lighthouse import windows_to_foreground
from vidmamba.data.snag import SnagDataset, SnagTrainDataset, load_snag_feature, load_snag_file, seconds_to_grid
from vidmamba.data.synthetic_long import SNAG_GRID
from vidmamba.data.synthetic_long_context import ensure_synthetic_snag
from vidmamba.engine.config import set_from_data
from vidmamba.engine.trainer import to_device
from vidmamba.metrics.evaluate import evaluate_predictions
from vidmamba.models import MODELS, create_model
from vidmamba.models.hieramamba import grid_timing
from vidmamba.nn.nms import nms_1d
from vidmamba.errors import ConfigError, InputError
from vidmamba.tasks.base import MomentTask, register
from vidmamba.tasks.data_config import SnagData

WINDOW_NMS_IOU = 0.7  # merging the predictions of overlapping evaluation windows (hard NMS)


# ---------------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------------
def data_options(data: dict) -> dict:
    """``data`` (:class:`~vidmamba.tasks.data_config.SnagData`) completed, with ``synthetic`` resolved to files
    (explicit keys win); unknown / missing keys are errors."""
    data = SnagData.complete(data)
    if data.get("synthetic") is not None:
        root = ensure_synthetic_snag(data["synthetic"])
        data = SnagData.complete({"annotations": str(root / "annotations.json"), "video_features": [str(root / "video")],
                                  "text_features": str(root / "text"), **SNAG_GRID, **data})
    SnagData.check_required(data)
    if not data["video_features"]:
        raise ConfigError("data.video_features: expected a non-empty list of folders, got []")
    return data


def split_name(data: dict, split: str) -> str:
    """The annotation-json split of ``split`` ("train" / "val" map through ``train_split`` / ``val_split``)."""
    return data[f"{split}_split"] if split in ("train", "val") else split


def build_dataset(data: dict, split: str, *, train: bool = False) -> SnagDataset:
    """The ``split`` dataset of the (resolved) ``data`` section: training samples (query groups, random truncation)
    when ``train``, else one item per video with all its queries."""
    kw = dict(clip_size=data["clip_size"], clip_stride=data["clip_stride"], downsample=data["downsample"],
              vid_stride=data["vid_stride"], video_dims=data.get("video_dims"), text_dim=data.get("text_dim"),
              max_text_len=data.get("max_text_len"))
    args = (data["annotations"], split_name(data, split), data["video_features"], data["text_features"])
    if train:
        return SnagTrainDataset(*args, max_clips=data.get("max_clips"), max_queries=data.get("max_queries"),
                                crop_ratio=data.get("crop_ratio"), trunc_thresh=data.get("trunc_thresh"),
                                negative_queries=data.get("negative_queries", 0), **kw)
    return SnagDataset(*args, **kw)


def ground_truth_rows(dataset: SnagDataset) -> list[dict]:
    """One ``nlq`` ground-truth row per query: ``qid`` (text id), ``vid``, ``duration``, ``relevant_windows``."""
    return [{"qid": q.text_id, "query": q.sentence, "vid": v.vid, "duration": v.duration,
             "relevant_windows": [list(q.segment)]} for v in dataset.videos for q in v.queries]


def training_clips(data: dict, train_set: SnagTrainDataset) -> int:
    """Input clips of the longest training input: ``max_clips`` when training windows are cut, else the longest
    training video's clip count (its duration on the input-clip grid)."""
    if data.get("max_clips"):
        return int(data["max_clips"])
    ends = [seconds_to_grid(np.array([[0.0, v.duration]]), fps=v.fps, clip_size=train_set.clip_size,
                            stride=train_set.stride, num_frames=v.num_frames, vid_stride=1)[0, 1]
            for v in train_set.videos]
    return int(max(ends)) + 1


def timing(data: dict, fps: float) -> dict:
    """The batch keys that put a video's grid in seconds (as :func:`~vidmamba.data.snag.grid_to_seconds`): grid
    point g is at ``g * clip_length + clip_offset`` seconds."""
    stride = data["clip_stride"] * data["downsample"]
    return {"clip_length": [data["vid_stride"] * stride / fps], "clip_offset": [0.5 * data["clip_size"] / fps]}


# ---------------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------------
def moment_batch(batch: dict) -> dict:
    """A SnAG batch as the lighthouse batch of :class:`~vidmamba.models.mlvtg.MLVTG`: one sample per query.

    Time unit = one clip (``clip_length`` 1) with clip ``i`` spanning ``[i, i + 1]``, i.e. grid + 0.5; ``windows``
    (Q, 1, 2) is the query's segment in that unit, ``foreground`` the clips it overlaps, ``duration`` the clip count.
    ``saliency`` = ``foreground`` as 0 / 1 (UniVTG's interval -> curve labels). Queries flagged ``negative`` (their
    truth is outside the window: :class:`~vidmamba.data.snag.SnagTrainDataset`'s ``negative_queries``) have no
    foreground, no window and zero saliency.
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
        positive = ~batch["negative"].to(windows.device) if "negative" in batch else \
            torch.ones(len(qi), dtype=torch.bool, device=windows.device)
        out["windows_mask"] = positive[:, None]
        fg = [torch.from_numpy(windows_to_foreground([tuple(w)], video.shape[1], 1.0))
              for w in windows.detach().cpu().tolist()]
        out["foreground"] = torch.stack(fg).to(vmask.device) & vmask & positive[:, None].to(vmask.device)
        out["saliency"] = out["foreground"].float()  # UniVTG's interval -> curve labels: 1 inside the moment
    return out


class PerQueryMomentAdapter(nn.Module):
    """Trains / evaluates a lighthouse-batch model (MLVTG) on SnAG batches (see :func:`moment_batch`); ``predict``
    answers with the grounding contract, timed like :meth:`vidmamba.models.HieraMamba.predict`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> dict:
        return self.model(moment_batch(batch))

    @torch.no_grad()
    def predict(self, batch: dict) -> list[dict]:
        length, offset, end = grid_timing(batch)
        rows = []
        for p, v in zip(self.model.predict(moment_batch(batch)), batch["query_index"].tolist()):
            def to_time(t):  # clip units (grid + 0.5) -> seconds of video v
                return min(max((t - 0.5) * length[v] + offset[v], 0.0), end[v])

            windows = [[to_time(s), to_time(e), c] for s, e, c in p["pred_relevant_windows"]]
            rows.append({"pred_relevant_windows": windows, "pred_saliency_scores": p["pred_saliency_scores"]})
        return rows


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


def predict_windowed(model: nn.Module, batch: dict, window: int, vid_stride: int = 1) -> list[dict]:
    """Predictions for a single-video batch from half-overlapping windows of ``window`` input clips: each window's
    moments are shifted to the video's time, pooled and reduced by hard NMS (IoU > 0.7) to as many as the most any
    window returned; each grid step's saliency is the mean over the windows that cover it. The batch's timing keys
    (:func:`timing`) apply as in ``model.predict``."""
    n = batch["video"].shape[1]
    if n <= window:
        return model.predict(batch)
    (length,), _, (end,) = grid_timing(batch)
    step = max(vid_stride, window // 2 // vid_stride * vid_stride)
    starts = list(range(0, n - window, step)) + [-(-(n - window) // vid_stride) * vid_stride]  # last: to the end
    queries = batch["text"].shape[0]
    pooled: list[list[torch.Tensor]] = [[] for _ in range(queries)]
    grid = -(-n // vid_stride)
    sal_sum, sal_count = torch.zeros(queries, grid, dtype=torch.float64), torch.zeros(grid, dtype=torch.float64)
    for a in sorted(set(starts)):
        sub = {**batch, "video": batch["video"][:, a:a + window], "video_mask": batch["video_mask"][:, a:a + window],
               "duration": [float("inf")]}
        g0 = a // vid_stride
        for q, p in enumerate(model.predict(sub)):
            w = torch.tensor(p["pred_relevant_windows"], dtype=torch.float64).reshape(-1, 3)
            w[:, :2] += g0 * length
            pooled[q].append(w)
            sal = torch.tensor(p["pred_saliency_scores"], dtype=torch.float64)
            sal_sum[q, g0:g0 + len(sal)] += sal
        sal_count[g0:g0 + len(sal)] += 1
    out = []
    for parts, sal in zip(pooled, sal_sum / sal_count.clamp(min=1)):
        keep = max(len(p) for p in parts)
        allp = torch.cat(parts)
        segs, scores, _ = nms_1d(allp[:, :2].clamp(0.0, end), allp[:, 2], "hard", WINDOW_NMS_IOU,
                                 min_score=float("-inf"), max_num=keep)
        out.append({"pred_relevant_windows": [[s, e, c] for (s, e), c in zip(segs.tolist(), scores.tolist())],
                    "pred_saliency_scores": sal.tolist()})
    return out


@torch.no_grad()
def predict_rows(model: nn.Module, loader, data: dict, device="cpu") -> list[dict]:
    """``nlq`` prediction rows (``qid`` = text id, ``query``, ``vid``, ``pred_relevant_windows`` in seconds, sorted
    by score) for every query of the loader's dataset."""
    window = data.get("eval_window")
    rows = []
    for batch in loader:
        batch = to_device(batch, torch.device(device))
        for one in video_batches(batch):
            one.update(timing(data, one["fps"][0]))
            if window:
                preds = predict_windowed(model, one, int(window), data["vid_stride"])
            else:
                preds = model.predict(one)
            for q, p in enumerate(preds):
                rows.append({"qid": one["text_ids"][q], "query": one["sentences"][q], "vid": one["vid"][0],
                             "pred_relevant_windows": p["pred_relevant_windows"]})
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------------------------------------------------
class NLQTask(MomentTask):
    """Natural-language queries in long videos (SnAG batches: one video, several queries)."""

    family = "nlq"
    input_keys = ("video_dims", "text_dim", "clip_length")
    data_config = SnagData

    def data_options(self, data: dict) -> dict:
        return data_options(data)

    def build_dataset(self, data: dict, split: str, *, train: bool = False) -> SnagDataset:
        return build_dataset(data, split, train=train)

    def has_split(self, data: dict, split: str) -> bool:
        return True

    def read_widths(self, config: dict, train_set) -> None:
        """Fix ``video_dims`` (per folder) and ``text_dim`` from the first training video and query when absent
        (every later file is checked against them), ``clip_length`` when every training video has one fps, and the
        model's ``video_dim`` / ``text_dim``."""
        data, model = config["data"], config["model"]
        if "video_dims" not in data or "text_dim" not in data:
            video = train_set.videos[0]
            data.setdefault("video_dims", [load_snag_feature(d, video.vid, "video", item=f"video {video.vid}")[0]
                                           .shape[1] for d in data["video_features"]])
            tid = video.queries[0].text_id
            data.setdefault("text_dim", load_snag_feature(data["text_features"], tid, "text",
                                                          item=f"text id {tid}")[0].shape[1])
            train_set.video_dims, train_set.text_dim = data["video_dims"], data["text_dim"]
        if MODELS[model["name"]][0].batch_format == "lighthouse":  # measures spans in clips of its training length
            model.setdefault("train_clips", training_clips(data, train_set))
        rates = {float(v.fps) for v in train_set.videos}
        if "clip_length" not in data and len(rates) == 1:
            data["clip_length"] = data["clip_stride"] / rates.pop()  # seconds per feature row
        set_from_data(model, video_dim=sum(data["video_dims"]), text_dim=data["text_dim"])

    def build_model(self, config: dict) -> nn.Module:
        """The model of the config; lighthouse-batch models (``batch_format``) come wrapped in
        :class:`PerQueryMomentAdapter` (which needs ``data.vid_stride`` 1: grid = input clips)."""
        model = create_model(**config["model"])
        if model.batch_format not in ("snag", "lighthouse"):
            raise ConfigError(f"model.name: {config['model']['name']} does not find moments (it takes "
                              f"{model.batch_format} batches); the nlq task trains hieramamba or mlvtg models")
        if model.batch_format == "lighthouse":
            stride = config["data"]["vid_stride"]
            if stride != 1:
                raise ConfigError(f"{config['model']['name']} reads SnAG data one input clip per step; data.vid_stride "
                                 f"must be 1, got {stride}")
            model = PerQueryMomentAdapter(model)
        return model

    def predict(self, model, loader, data: dict, device="cpu") -> list[dict]:
        return predict_rows(model, loader, data, device)

    def scorer(self, data: dict, split: str, dataset):
        gt = ground_truth_rows(dataset)
        return lambda rows: evaluate_predictions("nlq", rows, gt)

    # ------------------------------------------------------------------ inference on one video
    def conventions(self, config: dict) -> tuple[float, bool]:
        """(seconds per feature row (before ``downsample``), L2-normalise text tokens: never for SnAG features) of a
        checkpoint's inputs."""
        data = config["data"]
        if "clip_length" not in data:
            raise InputError("the checkpoint's data section has no clip_length (its training videos had different "
                             "frame rates): set data.clip_length (seconds per input clip) and retrain, or predict "
                             "from feature files with --fps")
        return float(data["clip_length"]), False

    def prepare_inputs(self, config: dict, video: np.ndarray, texts: list[np.ndarray]) -> tuple:
        """Features as the SnAG readers give them (``downsample``, ``max_text_len``; no normalisation)."""
        data = config["data"]
        video = video[::data["downsample"]]
        max_len = data.get("max_text_len")
        texts = [t[:max_len] if max_len else t for t in texts]
        return torch.from_numpy(np.ascontiguousarray(video)), [torch.from_numpy(np.ascontiguousarray(t))
                                                               for t in texts]

    @torch.no_grad()
    def predict_clips(self, model, config: dict, video: torch.Tensor, texts: list[torch.Tensor],
                      duration: float, fps: float | None = None) -> list[dict]:
        """See :meth:`MomentTask.predict_clips`: ``video`` (T, D) input clips; ``fps`` default from the checkpoint's
        ``clip_length``; the saliency of each grid step is repeated over its input clips."""
        data = config["data"]
        if fps is None:
            fps = data["clip_stride"] / self.conventions(config)[0]
        item = {"vid": "video", "fps": float(fps), "duration": float(duration), "video": video, "texts": list(texts),
                "sentences": [""] * len(texts), "text_ids": [str(i) for i in range(len(texts))],
                "segments": torch.zeros(len(texts), 2), "segments_grid": torch.zeros(len(texts), 2)}
        one = SnagDataset.collate([item])
        one.update(timing(data, fps))
        window = data.get("eval_window")
        stride = data["vid_stride"]
        preds = predict_windowed(model, one, int(window), stride) if window else model.predict(one)
        return [{"windows": p["pred_relevant_windows"],
                 "saliency": np.repeat(p["pred_saliency_scores"], stride)[:len(video)].tolist()} for p in preds]

    def read_feature_files(self, config: dict, video_files, query_file, *, fps: float | None = None,
                           duration: float | None = None) -> tuple:
        """See :meth:`MomentTask.read_feature_files`, from SnAG feature files: one ``.npy`` / ``.pt`` / ``.npz``
        (T, C_i) per feature folder of the checkpoint, in its order, and the query's (L, D) text features (``.npz``:
        the ``features`` / ``last_hidden_state`` arrays). ``fps`` (needed) maps the grid to seconds: an input clip
        every ``clip_stride * downsample`` frames; ``duration`` defaults to the span the features cover."""
        if fps is None or not fps > 0:
            raise InputError("predicting with an nlq (SnAG) checkpoint from feature files needs the video's frame "
                             "rate: pass --fps")
        data = config["data"]
        files = list(video_files)
        if len(files) != len(data["video_dims"]):
            raise InputError(f"the checkpoint reads {len(data['video_dims'])} video feature file(s) per video "
                             f"(widths {data['video_dims']}), got {len(files)}: {[str(f) for f in files]}")
        arrays = [load_snag_file(f, "video", dim=d, item="video features") for f, d in zip(files, data["video_dims"])]
        video = np.concatenate(align_lengths(arrays, files, mode="pad_last", item="video features"), axis=1)
        text = load_snag_file(query_file, "text", dim=data["text_dim"], item="query features")
        video, texts = self.prepare_inputs(config, video, [text])
        stride = data["clip_stride"] * data["downsample"]
        if duration is None:
            duration = ((len(video) - 1) * stride + data["clip_size"]) / fps
        return video, texts, {"duration": float(duration), "fps": float(fps), "clip_length": stride / fps}


register(NLQTask("nlq", "avg"))  # avg: the Ego4D-NLQ average of R1@0.3, R1@0.5, R5@0.3, R5@0.5

__all__ = ["NLQTask", "PerQueryMomentAdapter", "build_dataset", "data_options", "ground_truth_rows",
           "moment_batch", "predict_rows", "predict_windowed", "timing", "video_batches"]
