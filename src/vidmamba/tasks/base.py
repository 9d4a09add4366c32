"""The one train / evaluate skeleton every task shares, and the loading of trained checkpoints.

A :class:`Task` is a recipe for one metric protocol (a config's ``task``). A family of tasks (grounding, long-video
grounding, action) implements six steps; the skeleton here strings them together:

* ``data_options(data) -> data``: the config's data section, checked, with generated benchmarks resolved to files;
* ``build_dataset(data, split, train=False)``: the split's dataset (with a ``collate``);
* ``read_widths(config, train_set)``: fill the data's feature widths from the training set (read once, then every
  later file is checked against them) and the model's matching options;
* ``build_model(config) -> nn.Module``: :func:`vidmamba.models.create_model` (+ the family's batch adapter);
* ``predict(model, loader, data, device) -> predictions`` and ``scorer(data, split, dataset) -> score(predictions)``
  (the metric protocol: a dict with a flat ``brief``); ``output_rows(predictions)``: the prediction file's rows.

Training checkpoints store the experiment config (task, model, data, train) under ``"experiment"`` in their
``config.json``; :func:`load_trained` rebuilds a model from a run folder, a checkpoint folder or a pretrained folder
(:mod:`vidmamba.tasks.pretrained`), :func:`predict_features` answers from feature files and
:func:`export_pretrained` turns a run into a pretrained folder, both through the one-video inference that every task
finding moments declares (:class:`MomentTask`). :data:`TASKS` is the one registry of tasks.
"""
from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from vidmamba.engine.checkpoint import Checkpoint, CheckpointError, check_replaceable, load_weights, run_checkpoint
from vidmamba.engine.config import TrainerConfig
from vidmamba.engine.trainer import Trainer
from vidmamba.errors import ConfigError, InputError
from vidmamba.models import model_config
from vidmamba.tasks.data_config import DataSection
from vidmamba.tasks.pretrained import FORMAT, PretrainedError, from_pretrained, is_hub_id, save_pretrained
from vidmamba.utils import atomic_write_text, no_such_folder

EXPERIMENT_KEY = "experiment"
DEFAULT_TASK = "qvhighlights"


class TaskMismatchError(InputError):
    """A checkpoint used for something its task cannot do (e.g. an action model asked for moments)."""


class Task:
    """One metric protocol's recipe; see the module docstring for the steps a family implements."""

    name: str = ""
    family: str = ""                   # "grounding" | "nlq" | "action": what a checkpoint of this task can do
    selection_metric: str = ""         # the checkpoint-selection metric (a percentage, higher is better)
    input_keys: tuple[str, ...] = ()   # data keys fixed by training (widths, encoders): evaluation keeps them
    data_config: type[DataSection] = DataSection  # the data section's keys, types and defaults
    exportable: bool = False           # its checkpoints become pretrained folders (MomentTask.pretrained_data)

    def __init__(self, name: str, selection_metric: str):
        self.name, self.selection_metric = name, selection_metric

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ the steps a family implements
    def data_options(self, data: dict) -> dict:
        raise NotImplementedError

    def build_dataset(self, data: dict, split: str, *, train: bool = False):
        raise NotImplementedError

    def read_widths(self, config: dict, train_set) -> None:
        raise NotImplementedError

    def build_model(self, config: dict) -> nn.Module:
        raise NotImplementedError

    def predict(self, model: nn.Module, loader, data: dict, device="cpu") -> Any:
        raise NotImplementedError

    def scorer(self, data: dict, split: str, dataset) -> Callable[[Any], dict]:
        raise NotImplementedError

    def output_rows(self, predictions) -> list[dict]:
        return predictions

    def has_split(self, data: dict, split: str) -> bool:
        return split in data

    def check_data(self, dataset) -> None:
        """Read what the dataset's constructor did not check yet (a family whose items are cheap to read reads them
        all): a data error then comes before the first step or any write."""

    # ------------------------------------------------------------------ the shared skeleton
    def check_config(self, config: dict) -> dict:
        """A copy of ``config`` with every section checked before any file is read or written: the model's name,
        keys and types (:func:`~vidmamba.models.model_config`), the data section (:attr:`data_config`, completed
        with its defaults) and the trainer options. A mistake is a :class:`~vidmamba.errors.ConfigError` naming
        ``section.key``."""
        config = copy.deepcopy(config)
        for section in ("model", "data", "train"):
            if not isinstance(config.setdefault(section, {}), dict):
                raise ConfigError(f"{section}: expected a mapping of keys to values, got {config[section]!r}")
        if "name" not in config["model"]:
            raise ConfigError("model.name is missing (a model of vidmamba.models.create_model, e.g. mlvtg)")
        model_config(**config["model"])
        config["data"] = self.data_config.complete(config["data"])
        TrainerConfig.from_dict(config["train"])
        config["task"] = self.name
        return config

    def prepare(self, config: dict) -> tuple[dict, Any]:
        """(a copy of ``config`` checked, its data resolved and every feature width fixed, the training set)."""
        config = self.check_config(config)
        config["data"] = self.data_options(config["data"])
        train_set = self.build_dataset(config["data"], "train", train=True)
        self.read_widths(config, train_set)
        return config, train_set

    def evaluate_fn(self, data: dict, split: str, dataset):
        """``evaluate_fn(model, loader) -> brief metrics`` for the trainer (ground truth read once)."""
        score = self.scorer(data, split, dataset)

        def evaluate_fn(model, loader):
            metrics = score(self.predict(model, loader, data, next(model.parameters()).device))
            return {k: float(v) for k, v in metrics.get("brief", {}).items() if v is not None}

        return evaluate_fn

    def train(self, config: dict, resume=None) -> dict:
        """Train the model of ``config``; returns the trainer's summary. Bad data fails before any checkpoint."""
        config, train_set = self.prepare(config)
        data = config["data"]
        val_set = self.build_dataset(data, "val") if self.has_split(data, "val") else None
        for dataset in (train_set, val_set):
            if dataset is not None:
                self.check_data(dataset)
        trainer_opts = dict(config.get("train", {}))
        if "metric" not in trainer_opts and val_set is not None:
            trainer_opts.update(metric=self.selection_metric, higher_is_better=True)
        torch.manual_seed(int(trainer_opts.get("seed", 0)))
        model = self.build_model(config)
        evaluate_fn = self.evaluate_fn(data, "val", val_set) if val_set is not None else None
        with Trainer(model, trainer_opts, train_set, val_set, collate_fn=train_set.collate, evaluate_fn=evaluate_fn,
                     resume=resume, experiment={**config, "train": trainer_opts}) as trainer:
            return trainer.fit()

    def load_trained(self, ckpt) -> tuple[nn.Module, dict]:
        """(model in eval mode with its (EMA) weights, experiment config) of a run / checkpoint folder of this task's
        family; a checkpoint of another family is a :class:`TaskMismatchError` naming both."""
        model, config, task = load_trained(ckpt)
        if task.family != self.family:
            raise TaskMismatchError(f"{ckpt}: the checkpoint was trained for task {task.name!r} "
                                    f"({config['model'].get('name')}), which cannot be scored with task "
                                    f"{self.name!r}; use a config of task {task.name!r}")
        return model, config

    def evaluate(self, ckpt, out_dir, split: str = "val", data: dict | None = None) -> tuple[dict, list[dict]]:
        """Predict ``split`` with a checkpoint, write ``<out_dir>/<split>_preds.jsonl`` and ``<split>_metrics.json``;
        returns (metrics, prediction rows).

        ``data``: a config's data section (e.g. pointing ``split`` at a test file); it overrides the checkpoint's,
        whose :attr:`input_keys` (feature widths, encoders) stay in force."""
        model, config = self.load_trained(ckpt)
        trained = config["data"]
        data = self.data_options({**trained, **(data or {}), **{k: trained[k] for k in self.input_keys
                                                                 if k in trained}})
        dataset = self.build_dataset(data, split)
        loader = DataLoader(dataset, batch_size=TrainerConfig.from_dict(config["train"]).eval_batch, shuffle=False,
                            collate_fn=dataset.collate)
        predictions = self.predict(model, loader, data)
        metrics = self.scorer(data, split, dataset)(predictions)
        rows = self.output_rows(predictions)
        write_evaluation(out_dir, split, rows, metrics)
        return metrics, rows


class MomentTask(Task, ABC):
    """A task whose checkpoints find moments of one video for text queries (the grounding and nlq families). Its
    one-video inference is declared here, one signature per step, and is all that predict (feature files or a raw
    video), serve and export use: :meth:`conventions` and :meth:`prepare_inputs` (a raw video's features, as the
    training readers prepare them), :meth:`read_feature_files` (feature files, the same way), :meth:`predict_clips`
    (the answer) and :meth:`pretrained_data` (what a pretrained folder stores, for :attr:`exportable` tasks)."""

    @abstractmethod
    def conventions(self, config: dict) -> tuple[float, bool]:
        """(seconds per input clip a raw video is cut into, whether query tokens are L2-normalised) for the
        checkpoint of experiment / pretrained ``config``."""

    @abstractmethod
    def prepare_inputs(self, config: dict, video: np.ndarray,
                       texts: list[np.ndarray]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """A raw video's clip features (T, D) and its queries' token features [(L_i, Dq)] prepared as the training
        readers prepare them: (video (T', D), [text (L_i', Dq)]) tensors."""

    @abstractmethod
    def read_feature_files(self, config: dict, video_files: list, query_file, *, fps: float | None = None,
                           duration: float | None = None) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
        """(video (T, D), [text (L, Dq)], timing) from feature files, through the training readers. ``fps``: frame
        rate of the video the features came from, ``duration``: its seconds (when the features alone do not tell).
        ``timing``: ``duration`` (s), ``fps`` (for :meth:`predict_clips`; None when clips are fixed seconds) and
        ``clip_length`` (seconds per saliency entry of the answer)."""

    @abstractmethod
    def predict_clips(self, model: nn.Module, config: dict, video: torch.Tensor, texts: list[torch.Tensor],
                      duration: float, fps: float | None = None) -> list[dict]:
        """Moments of one video for several queries in one batch: ``video`` (T, D) and ``texts`` [(L_i, Dq)]
        prepared as in training, ``duration`` seconds, ``fps`` of the frames the clips came from (None: the
        checkpoint's conventions). Per query ``{"windows": [[start_s, end_s, score], ...] (score-sorted),
        "saliency": [T]}``."""

    def pretrained_data(self, experiment: dict) -> dict:
        """The inference conventions (``data`` of :mod:`vidmamba.tasks.pretrained`) of a trained experiment config;
        only :attr:`exportable` tasks have them."""
        raise PretrainedError(f"checkpoints of task {self.name!r} are not exported as pretrained folders")


TASKS: dict[str, Task] = {}  # the one registry, name -> task: every list of task names is built from it


def register(*tasks: Task) -> None:
    """Add ``tasks`` to :data:`TASKS` (each family's module registers its tasks when imported)."""
    for task in tasks:
        TASKS[task.name] = task


def get_task(name: str) -> Task:
    """The registered task ``name``; unknown names are a ``ConfigError`` listing the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_of(config: dict) -> Task:
    """The task of an experiment config (its ``task``, default "qvhighlights")."""
    return get_task(config.get("task", DEFAULT_TASK))


def experiment_of(ckpt: Checkpoint) -> dict:
    """The experiment config a training checkpoint stores (``{"task", "model", "data", "train"}``)."""
    config = ckpt.config
    # checkpoints written before the "experiment" key stored the same dict under "model"
    experiment = config.get(EXPERIMENT_KEY, config.get("model"))
    if not isinstance(experiment, dict) or not {"model", "data"} <= experiment.keys():
        raise CheckpointError(f"{ckpt.path / 'config.json'}: not a checkpoint of `vidmamba train` (no experiment "
                              "config with model and data sections)")
    return experiment


def load_trained(ckpt) -> tuple[nn.Module, dict, Task]:
    """(model in eval mode, its config, its task) from a run folder (its ``best``), a checkpoint folder, a pretrained
    folder (:mod:`vidmamba.tasks.pretrained`) or a hub id of one (``hf://owner/name[@revision]``). Anything else is
    a local path; one that does not exist is a :class:`~vidmamba.errors.MissingFileError` naming it."""
    if is_hub_id(ckpt):
        model, config = from_pretrained(ckpt)
        return model, config, task_of(config)
    path = Path(ckpt).expanduser()
    if not path.exists():
        raise no_such_folder("checkpoint", ckpt)
    checkpoint = Checkpoint(run_checkpoint(path))
    if checkpoint.config.get("format") == FORMAT:
        model, config = from_pretrained(checkpoint)
        return model, config, task_of(config)
    config = experiment_of(checkpoint)
    task = task_of(config)
    config = {**config, "data": task.data_config.complete(config["data"])}  # defaults of older checkpoints
    model = task.build_model(config)
    load_weights(checkpoint, model, use_ema=True)
    return model.eval(), config, task


def load_moment_model(ckpt) -> tuple[nn.Module, dict, MomentTask]:
    """:func:`load_trained` for a checkpoint that finds moments (its task is a :class:`MomentTask`: the grounding
    and nlq tasks); an action checkpoint is a :class:`TaskMismatchError` naming it."""
    model, config, task = load_trained(ckpt)
    if not isinstance(task, MomentTask):
        raise TaskMismatchError(f"{ckpt}: a checkpoint of task {task.name!r} ({config['model'].get('name')}) does not "
                                "find moments; score its data with vidmamba evaluate CONFIG --ckpt")
    return model, config, task


def predict_features(ckpt, video_files, query_file, query: str = "", *, fps: float | None = None,
                     duration: float | None = None) -> dict:
    """Moments and saliency for one video and one query from feature files, prepared exactly as in training (the
    checkpoint's task reads them: :meth:`MomentTask.read_feature_files`; ``fps`` / ``duration`` of the video, which
    nlq checkpoints need). Returns ``{"query", "windows": [[start_s, end_s, score], ...], "saliency": [...],
    "clip_length", "duration"}``."""
    model, config, task = load_moment_model(ckpt)
    files = list(video_files) if isinstance(video_files, (list, tuple)) else [video_files]
    video, texts, timing = task.read_feature_files(config, files, query_file, fps=fps, duration=duration)
    answer = task.predict_clips(model, config, video, texts, timing["duration"], timing["fps"])[0]
    return {"query": query, **answer, "clip_length": timing["clip_length"], "duration": timing["duration"]}


def export_pretrained(run, out_dir, force: bool = False) -> Path:
    """Convert a trained run (its ``best`` checkpoint) or a checkpoint folder of an :attr:`~Task.exportable` task
    into a pretrained folder (its data conventions: :meth:`MomentTask.pretrained_data`). An existing ``out_dir`` is
    replaced only when it is a pretrained folder vidmamba wrote (``force``: also a folder of other files that holds
    no run), checked before anything is loaded."""
    check_replaceable(out_dir, FORMAT, force, force_hint="--force")
    folder = run_checkpoint(run)
    model, experiment, task = load_trained(folder)
    if not task.exportable:
        names = ", ".join(name for name, t in TASKS.items() if t.exportable)
        raise PretrainedError(f"{folder}: a checkpoint of task {task.name!r}; pretrained folders hold models of the "
                              f"tasks {names} (use the run folder itself with predict / serve)")
    return save_pretrained(model, out_dir, {"model": experiment["model"], "data": task.pretrained_data(experiment)},
                           task=task.name, force=force)


def write_evaluation(out_dir, split: str, rows: list[dict], metrics: dict) -> None:
    """``<out_dir>/<split>_preds.jsonl`` (one row per line) and ``<split>_metrics.json``, each written atomically;
    ``out_dir`` must be a folder (created when missing)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"evaluation output {out_dir} is a file; --out takes a folder in this mode")
    atomic_write_text(out_dir / f"{split}_preds.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out_dir / f"{split}_metrics.json", json.dumps(metrics, indent=4))


__all__ = ["DEFAULT_TASK", "EXPERIMENT_KEY", "TASKS", "MomentTask", "Task", "TaskMismatchError", "experiment_of",
           "export_pretrained", "get_task", "load_moment_model", "load_trained", "predict_features", "register",
           "task_of", "write_evaluation"]
