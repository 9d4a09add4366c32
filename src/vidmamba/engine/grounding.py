"""Grounding experiments (moment retrieval + highlight detection) from a config: datasets, model, train, evaluate.

Config sections (see ``configs/mlvtg_*.yaml``):

* ``task``: the metric protocol of :func:`vidmamba.metrics.evaluate.evaluate_predictions` ("qvhighlights",
  "moment_retrieval", "tvsum");
* ``model``: ``name`` (a :func:`vidmamba.models.build_model` name) + model options; ``video_dim`` / ``text_dim``
  are read off the data when absent;
* ``data``: ``dataset`` (clip length and file naming, :mod:`vidmamba.data.lighthouse`), ``feature_root``,
  ``train`` / ``val`` annotation jsonl, ``video_features`` (list of feature folders), ``text_features``,
  ``max_text_len``, ``normalize_video``. ``dataset: tvsum_umt`` reads TVSum in the UMT layout instead
  (:class:`~vidmamba.data.tvsum_umt.TVSumUMTDataset`): ``feature_root`` is the UMT folder, ``domain`` one of the 10
  domains (one model per domain), ``train`` / ``val`` name the split's part (default the split name itself),
  ``audio`` appends the audio stream; the ground truth (20-annotator ``label``) comes from ``tvsum_anno.json``;
* ``train``: :class:`~vidmamba.engine.config.TrainerConfig` options.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from vidmamba.data.features import load_feature_array
from vidmamba.data.lighthouse import (MomentDataset, get_dataset_spec, load_text_file, load_video_files,
                                      video_feature_path)
from vidmamba.data.tvsum_umt import I3D_DIM, TVSUM_CLIP_LENGTH, TVSumUMTDataset
from vidmamba.engine.config import TrainerConfig, check_data_keys, set_from_data
from vidmamba.engine.checkpoint import Checkpoint, load_weights, run_checkpoint
from vidmamba.engine.experiments import write_evaluation
from vidmamba.engine.trainer import Trainer, to_device
from vidmamba.metrics.evaluate import evaluate_predictions
from vidmamba.metrics.validation import GroundTruthError, read_jsonl
from vidmamba.models import build_model

# The checkpoint-selection metric of each protocol (lighthouse: MR-full-mAP for MR data, mAP for HD data).
SELECTION_METRIC = {"qvhighlights": "MR-full-mAP", "moment_retrieval": "MR-full-mAP", "tvsum": "HL-top5-mAP"}
DATA_KEYS = {"dataset", "feature_root", "train", "val", "video_features", "text_features", "max_text_len",
             "normalize_video", "window_tol", "video_dims", "text_dim", "domain", "audio"}
UMT = "tvsum_umt"       # data.dataset value of the TVSum UMT layout


def _data_options(data: dict) -> dict:
    required = ("feature_root", "domain") if data.get("dataset") == UMT else \
        ("feature_root", "video_features", "text_features")
    check_data_keys(data, DATA_KEYS, ("dataset",) + required)
    return data


def build_dataset(data: dict, split: str) -> MomentDataset | TVSumUMTDataset:
    """The ``split`` ("train" / "val") dataset described by the ``data`` config section."""
    data = _data_options(data)
    if data["dataset"] == UMT:
        return TVSumUMTDataset(data["feature_root"], data["domain"], data.get(split, split),
                               normalize=data.get("normalize_video", True), audio=data.get("audio", False))
    if split not in data:
        raise ValueError(f"data config has no {split!r} annotation file")
    return MomentDataset(data[split], data["feature_root"], data["video_features"], data["text_features"],
                         dataset=data["dataset"], max_text_len=data.get("max_text_len"),
                         normalize_video=data.get("normalize_video", True), window_tol=data.get("window_tol", 0.5),
                         video_dims=data.get("video_dims"), text_dim=data.get("text_dim"))


def resolve_dims(config: dict) -> dict:
    """A copy of ``config`` whose ``data`` fixes every feature width (``video_dims`` per type, ``text_dim``; read off
    the first training sample when absent, so every later file is checked against them and a mismatch is an error
    naming the file) and whose ``model`` has the matching ``video_dim`` / ``text_dim`` / ``clip_length``."""
    config = copy.deepcopy(config)
    data, model = config["data"], config["model"]
    if data.get("dataset") == UMT:
        if "video_dims" not in data or "text_dim" not in data:
            first = build_dataset(data, "train")[0]
            width = int(first["video"].shape[1])            # rgb 1024 + flow 1024 (+ audio)
            data.setdefault("video_dims", [I3D_DIM, I3D_DIM] + ([width - 2 * I3D_DIM] if data.get("audio") else []))
            data.setdefault("text_dim", int(first["text"].shape[1]))
    elif "video_dims" not in data or "text_dim" not in data:
        first_ds = build_dataset(data, "train")
        ann = first_ds.annotations[0]
        data.setdefault("video_dims", [
            int(load_feature_array(video_feature_path(data["feature_root"], t, ann.vid), key="features").shape[1])
            for t in data["video_features"]])
        data.setdefault("text_dim", int(first_ds[0]["text"].shape[1]))
    set_from_data(model, video_dim=sum(data["video_dims"]), text_dim=data["text_dim"])
    model.setdefault("clip_length", _clip_length(data))
    return config


def _clip_length(data: dict) -> float:
    return TVSUM_CLIP_LENGTH if data["dataset"] == UMT else get_dataset_spec(data["dataset"]).clip_length


def ground_truth(data: dict, split: str) -> tuple[list[dict], str]:
    """(GT rows for :func:`~vidmamba.metrics.evaluate.evaluate_predictions`, their source for error messages).

    Lighthouse layouts: the split's annotation jsonl. UMT layout: one row per video, ``qid`` = vid, ``label`` = its
    (T, 20) annotator scores (the ``tvsum`` protocol's GT format), read from ``tvsum_anno.json``."""
    if data["dataset"] != UMT:
        return read_jsonl(data[split], GroundTruthError), data[split]
    ds = build_dataset(data, split)
    return ([{"qid": vid, "label": ds.videos[vid].scores.tolist()} for vid in ds.vids],
            str(Path(data["feature_root"]) / "tvsum_anno.json"))


def build_grounding_model(model_cfg: dict) -> torch.nn.Module:
    options = dict(model_cfg)
    name = options.pop("name", "mlvtg")
    return build_model(name, **options)


def duration_in_clips(data: dict) -> bool:
    """True when the dataset's annotated ``duration`` is a clip count, not seconds (lighthouse's TVSum jsonl)."""
    return data["dataset"] != UMT and get_dataset_spec(data["dataset"]).name == "tvsum"


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


def make_evaluate_fn(task: str, data: dict, split: str = "val"):
    """``evaluate_fn(model, loader)`` for the trainer: predict the loader, score with the ``task`` protocol against
    the ``split`` ground truth of the ``data`` config section."""
    gt_rows, gt_path = ground_truth(data, split)

    def evaluate_fn(model, loader):
        device = next(model.parameters()).device
        rows = predict_loader(model, loader, device, duration_in_clips(data))
        metrics = evaluate_predictions(task, rows, gt_rows, gt_path=gt_path)
        return {k: float(v) for k, v in metrics["brief"].items() if v is not None}

    return evaluate_fn


def train(config: dict, resume=None) -> dict:
    """Train the model described by ``config``; returns the trainer's summary (best metric, final metrics)."""
    task = config.get("task", "qvhighlights")
    config = resolve_dims(config)
    train_ds, val_ds = build_dataset(config["data"], "train"), build_dataset(config["data"], "val")
    trainer_opts = dict(config.get("train", {}))
    if "metric" not in trainer_opts:  # the protocol's selection metric: a percentage, higher is better
        trainer_opts.update(metric=SELECTION_METRIC[task], higher_is_better=True)
    torch.manual_seed(int(trainer_opts.get("seed", 0)))
    model = build_grounding_model(config["model"])
    with Trainer(model, trainer_opts, train_ds, val_ds, collate_fn=train_ds.collate,
                 evaluate_fn=make_evaluate_fn(task, config["data"]), resume=resume,
                 model_config={**config, "train": trainer_opts}) as trainer:
        return trainer.fit()


def load_trained(ckpt) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint folder (or of a run folder's ``best``, or of a pretrained folder from
    :func:`vidmamba.engine.pretrained.save_pretrained`) and load its (EMA) weights. A string that is not an existing
    path is taken as a hub id of a pretrained folder (:func:`~vidmamba.engine.pretrained.from_pretrained`)."""
    if not Path(ckpt).expanduser().exists():
        from vidmamba.engine.pretrained import from_pretrained

        return from_pretrained(ckpt)
    folder = run_checkpoint(ckpt)
    config = Checkpoint(folder).config
    if config.get("format") == "vidmamba-pretrained":  # config: {"model", "data"} as a training config has them
        from vidmamba.engine.pretrained import from_pretrained

        return from_pretrained(folder)
    config = config["model"]
    model = build_grounding_model(config["model"])
    load_weights(folder, model, use_ema=True)
    return model.eval(), config


def evaluate(ckpt, out_dir, split: str = "val", data: dict | None = None) -> tuple[dict, list[dict]]:
    """Predict ``split`` with a checkpoint, write ``<out_dir>/<split>_preds.jsonl`` and ``<split>_metrics.json``;
    returns (metrics, prediction rows).

    ``data``: a config's data section (e.g. pointing ``split`` at a test file); it overrides the checkpoint's, whose
    feature widths stay in force. Without it the checkpoint's own data section is used."""
    model, config = load_trained(ckpt)
    data = {**config["data"], **(data or {})}
    dataset = build_dataset(data, split)
    loader = DataLoader(dataset, batch_size=TrainerConfig.from_dict(config["train"]).eval_batch, shuffle=False,
                        collate_fn=dataset.collate)
    rows = predict_loader(model, loader, duration_in_clips=duration_in_clips(data))
    task = config.get("task", "qvhighlights")
    gt_rows, gt_path = ground_truth(data, split)
    metrics = evaluate_predictions(task, rows, gt_rows, gt_path=gt_path)
    write_evaluation(out_dir, split, rows, metrics)
    return metrics, rows


def predict_features(ckpt, video_feature_files, query_feature_file, query: str = "") -> dict:
    """Moments and saliency for one video from feature files, prepared exactly as in training.

    ``video_feature_files``: one npz (key ``features``, (T, D_i)) per feature type of the checkpoint's config, in
    its order (UMT layout: the ``_rgb.npy`` and ``_opt.npy`` files). ``query_feature_file``: the query's token
    features, in the dataset's text format (npz key ``last_hidden_state``, TVSum ``token``). Both go through the training readers (normalisation, ``max_text_len``,
    width checks). Returns ``{"query", "windows": [[start_s, end_s, score], ...], "saliency": [...], "clip_length"}``.
    """
    model, config = load_trained(ckpt)
    data = config["data"]
    files = list(video_feature_files) if isinstance(video_feature_files, (list, tuple)) else [video_feature_files]
    video = torch.from_numpy(load_video_files(files, normalize=data.get("normalize_video", True),
                                              dims=data["video_dims"]))
    text_format = "tvsum" if data["dataset"] == UMT else data["dataset"]     # UMT titles: npz key "token", as tvsum
    text = torch.from_numpy(load_text_file(query_feature_file, dataset=text_format,
                                           max_len=data.get("max_text_len"), dim=data["text_dim"]))
    clip_length = _clip_length(data)
    batch = {"video": video[None], "video_mask": torch.ones(1, len(video), dtype=torch.bool),
             "text": text[None], "text_mask": torch.ones(1, len(text), dtype=torch.bool),
             "clip_length": torch.tensor([clip_length]), "duration": torch.tensor([len(video) * clip_length])}
    pred = model.predict(batch)[0]
    return {"query": query, "clip_length": clip_length, "windows": pred["pred_relevant_windows"],
            "saliency": pred["pred_saliency_scores"]}
