"""Model-agnostic training loop.

The contract (kept small on purpose):

* ``model`` is an ``nn.Module`` whose ``forward(batch)`` returns a dict with a scalar tensor ``"loss"`` (the MEAN over
  the samples of the batch) and optionally other scalars (tensors with one element or python numbers), which are
  averaged per epoch and logged. Non-scalar entries (predictions) are ignored by the trainer.
* ``train_data`` / ``val_data`` are map-style datasets; the trainer builds the loaders (``collate_fn`` turns a list of
  samples into the batch ``forward`` receives; tensors nested in dicts/lists/tuples are moved to the device).
* ``evaluate_fn(model, loader) -> dict[str, float]`` computes the task's metrics. It runs on rank 0 only, over the
  whole validation set, with ``model`` unwrapped (the EMA weights swapped in when EMA is on), in eval mode, under
  ``torch.no_grad()`` and the training autocast; the result is broadcast so every rank agrees. Without it the
  trainer averages the scalar outputs of ``forward`` over the validation batches. ``config.metric`` names the key
  that selects the ``best`` checkpoint, ``config.higher_is_better`` its direction.

Distributed (``torchrun``): with ``WORLD_SIZE > 1`` the model is wrapped in DistributedDataParallel and each rank
reads its shard through a ``DistributedSampler``; ``config.batch_size`` is per rank, the global batch is
``batch_size * world_size``. DDP averages gradients over ranks, so with a per-rank mean loss the update equals the
single-process update on the global batch as long as all ranks have equally many samples per step; the sampler
guarantees that (``drop_last=True`` drops the ragged tail; with ``drop_last=False`` it pads by repeating samples).
Checkpoints and logs are written by rank 0 only; RNG states of all ranks are gathered into the checkpoint. For
multi-node runs ``out_dir`` must be on a filesystem every rank can read (resume reads it on all ranks).

Exact resume: data order is a function of ``(seed, epoch)`` only (``set_epoch`` on the sampler, loader generator
re-seeded every epoch), and the checkpoint holds the optimizer, scheduler, EMA, counters and all RNG states, so a run
stopped after epoch k and resumed matches the uninterrupted run bit for bit on CPU (on GPU up to the
non-determinism of the kernels used).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from . import distributed as D
from .checkpoint import (EMA_FILE, Checkpoint, CheckpointError, RunLock, backup_path, check_replaceable,
                         save_checkpoint)
from .config import TrainerConfig
from .ema import EMA
from .logger import MetricsLog
from .optim import LRSchedule, WarmupScheduler, build_optimizer, clip_gradients
from .rng import get_rng_state, seed_everything, set_rng_state
from .sampler import LengthGroupedSampler

EvaluateFn = Callable[[nn.Module, DataLoader], Mapping[str, float]]
Callback = Callable[["Trainer", dict], None]

# Options that may differ on resume without a warning (they do not change the training trajectory).
_RESUME_FREE_OPTIONS = {"out_dir", "progress", "tensorboard", "device", "num_workers", "eval_every",
                        "eval_batch_size", "dist_timeout_s"}


def to_device(batch, device: torch.device):
    """Move every tensor nested in dicts / lists / tuples (or objects with ``.to``) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


def scalar_outputs(out: Mapping) -> dict[str, float]:
    """The scalar entries of a ``forward`` output as floats (one device sync for all of them)."""
    names, tensors, values = [], [], {}
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            names.append(key)
            tensors.append(value.detach().float().reshape(()))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values[key] = float(value)
    if tensors:
        values.update(zip(names, torch.stack(tensors).tolist()))
    return values


def mean_forward_outputs(model: nn.Module, loader: DataLoader) -> dict[str, float]:
    """Default ``evaluate_fn``: the scalar outputs of ``forward`` averaged over batches."""
    device = next(model.parameters()).device
    sums, batches = {}, 0
    for batch in loader:
        for key, value in scalar_outputs(model(to_device(batch, device))).items():
            sums[key] = sums.get(key, 0.0) + value
        batches += 1
    return {key: value / max(batches, 1) for key, value in sums.items()}


def _as_config(config) -> TrainerConfig:
    if isinstance(config, TrainerConfig):
        return config
    if config is None or isinstance(config, Mapping):
        return TrainerConfig.from_dict(config)
    if dataclasses.is_dataclass(config):
        return TrainerConfig.from_dict(dataclasses.asdict(config))
    raise TypeError(f"trainer config must be a TrainerConfig, a dict or a dataclass, got {type(config).__name__}")


class Trainer:
    """Train ``model`` on ``train_data``, evaluate on ``val_data``, keep ``best`` and ``last`` checkpoints.

    ``resume``: ``True`` continues from ``<out_dir>/last`` when it exists (and starts fresh otherwise); a path
    continues from that checkpoint folder (or from ``<path>/last`` when ``path`` is a run folder) and must exist.
    ``callbacks`` are called as ``callback(trainer, record)`` at the end of every epoch, after the checkpoints are
    written; an exception raised there stops the run (the checkpoints of that epoch are kept).
    ``experiment`` (JSON-able: the experiment config that built the model and data) is stored in every checkpoint's
    ``config.json`` under ``"experiment"``.
    """

    def __init__(self, model: nn.Module, config, train_data, val_data=None, *, collate_fn=None,
                 evaluate_fn: EvaluateFn | None = None, resume=None, callbacks: Sequence[Callback] = (),
                 experiment: dict | None = None):
        self.config = cfg = _as_config(config)
        self.device = D.resolve_device(cfg.device)
        self.dist = D.init_distributed(self.device, cfg.dist_timeout_s)
        seed_everything(cfg.seed + self.dist.rank)
        self.model = model.to(self.device)
        self.collate_fn, self.callbacks, self.experiment = collate_fn, list(callbacks), experiment
        self.evaluate_fn = evaluate_fn if evaluate_fn is not None else mean_forward_outputs
        self.out_dir = Path(cfg.out_dir)
        self.global_batch_size = cfg.batch_size * self.dist.world_size

        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if isinstance(data, DataLoader) or (data is not None and not hasattr(data, "__len__")):
                raise TypeError(f"{name} must be a map-style dataset (with __len__ and __getitem__); the trainer "
                                f"builds the loaders itself, got {type(data).__name__}")
        self.train_sampler = self._train_sampler(train_data)
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(train_data, batch_size=cfg.batch_size, sampler=self.train_sampler,
                                       num_workers=cfg.num_workers, collate_fn=collate_fn, drop_last=cfg.drop_last,
                                       generator=self.loader_generator, pin_memory=self.device.type == "cuda")
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise ValueError(f"the training set ({len(train_data)} samples) gives no full batch: batch_size "
                             f"{cfg.batch_size} x world size {self.dist.world_size} with drop_last={cfg.drop_last}")
        self.val_loader = None
        if val_data is not None and self.dist.is_main:
            self.val_loader = DataLoader(val_data, batch_size=cfg.eval_batch, shuffle=False,
                                         num_workers=cfg.num_workers, collate_fn=collate_fn,
                                         pin_memory=self.device.type == "cuda")
        self.has_val = val_data is not None

        self.optimizer = build_optimizer(self.model, cfg.lr, cfg.weight_decay, cfg.betas, cfg.eps)
        warmup = cfg.warmup_steps or round(cfg.warmup_epochs * self.steps_per_epoch)
        self.schedule = LRSchedule(
            total_steps=cfg.epochs * self.steps_per_epoch, warmup_steps=warmup, kind=cfg.schedule,
            min_lr_ratio=cfg.min_lr_ratio, milestones=tuple(e * self.steps_per_epoch for e in cfg.lr_drop_epochs),
            gamma=cfg.lr_gamma)
        self.scheduler = WarmupScheduler(self.optimizer, self.schedule)
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema else None
        self.amp_dtype = self._amp_dtype()

        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self.last_train: dict[str, float] = {}
        self.last_eval: dict[str, float] = {}
        self.log, self.lock = None, None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(self.out_dir)  # one writer per run folder, until close() (or the process ends)
        try:
            self._open_run(resume)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        self.train_model = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.ddp_find_unused_parameters)

    def _open_run(self, resume) -> None:
        """Check the run folder and open its log (rank 0), then resume or start fresh."""
        if self.dist.is_main:
            for name in ("best", "last"):  # refuse folders of the user's files there now, not after an epoch
                check_replaceable(self.out_dir / name, force_hint=None)
            self.log = MetricsLog(self.out_dir / "metrics.jsonl",
                                  self.out_dir / "tensorboard" if self.config.tensorboard else None)
        if resume:
            self._resume(resume)
        elif self.log is not None and (self.out_dir / "last").exists():
            warnings.warn(f"{self.out_dir} already holds a run; starting fresh (pass resume=True to continue it) "
                          "overwrites its log and checkpoints", stacklevel=3)
        if self.log is not None:  # forget what was logged after the step this run starts from (0: a fresh log)
            self.log.truncate_after(self.step)

    # ------------------------------------------------------------------ setup helpers
    def _train_sampler(self, train_data):
        cfg = self.config
        if not cfg.length_pool_batches:
            return DistributedSampler(train_data, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                      shuffle=True, seed=cfg.seed, drop_last=cfg.drop_last)
        if not hasattr(train_data, "sample_lengths"):
            raise TypeError(f"trainer option 'length_pool_batches' needs a training set with sample_lengths() "
                            f"(one length per sample); {type(train_data).__name__} has none (set it to 0)")
        return LengthGroupedSampler(train_data.sample_lengths(), cfg.batch_size, pool_batches=cfg.length_pool_batches,
                                    num_replicas=self.dist.world_size, rank=self.dist.rank, seed=cfg.seed,
                                    drop_last=cfg.drop_last)

    def _amp_dtype(self):
        if self.config.amp != "bf16":
            return None
        if self.device.type == "cuda":
            available = torch.cuda.is_bf16_supported()
        else:
            available = torch.amp.is_autocast_available(self.device.type)
        if not available:
            warnings.warn(f"bf16 autocast is not available on {self.device}; training in float32", stacklevel=3)
            return None
        return torch.bfloat16

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _checkpoint_config(self) -> dict:
        return {"trainer": self.config.to_dict(), "experiment": self.experiment}

    # ------------------------------------------------------------------ checkpoints
    def save(self, name: str) -> None:
        """Write ``<out_dir>/<name>`` (collective: every rank must call it; rank 0 writes)."""
        rng_states = D.all_gather_object(get_rng_state(), self.dist)
        if not self.dist.is_main:
            return
        state = {
            "epoch": self.epoch, "step": self.step, "best_metric": self.best_metric, "best_epoch": self.best_epoch,
            "last_train": self.last_train, "last_eval": self.last_eval, "world_size": self.dist.world_size,
            "steps_per_epoch": self.steps_per_epoch, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_states,
            "loader": {"sampler_seed": self.config.seed, "sampler_epoch": self.epoch,
                       "generator": self.loader_generator.get_state()},
        }
        info = {"epoch": self.epoch, "step": self.step, "metric": self.config.metric, "best_metric": self.best_metric,
                "eval": self.last_eval}
        save_checkpoint(self.out_dir / name, self.model, config=self._checkpoint_config(), training_state=state,
                        ema_state=self.ema.state_dict() if self.ema else None, info=info)

    def _resume(self, resume) -> None:
        folder = self.out_dir / "last" if resume is True else Path(resume)
        if resume is True and not folder.exists() and not backup_path(folder).exists():
            return  # nothing to resume from: a fresh run
        if not (folder / "meta.json").exists() and ((folder / "last").exists() or backup_path(folder / "last").exists()):
            folder = folder / "last"
        ckpt = Checkpoint(folder)
        state = ckpt.training_state()
        ckpt.load_model(self.model)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"optimizer state in {ckpt.path / 'trainer_state.pt'} does not match the model's "
                                  f"parameter groups: {exc}") from exc
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            if ckpt.has(EMA_FILE):
                try:
                    self.ema.load_state_dict(ckpt.ema_state())
                except KeyError as exc:
                    raise CheckpointError(f"{ckpt.path / EMA_FILE}: {exc.args[0]}") from exc
            else:
                warnings.warn(f"{ckpt.path} has no EMA weights; the EMA restarts from the current weights",
                              stacklevel=3)
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.last_train, self.last_eval = dict(state["last_train"]), dict(state["last_eval"])
        self.loader_generator.set_state(state["loader"]["generator"])
        self._warn_config_changes(ckpt, state)
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            set_rng_state(rng[self.dist.rank])
        else:
            warnings.warn(f"checkpoint was written by {len(rng)} ranks, this run has {self.dist.world_size}; RNG "
                          "states are re-seeded, so the continuation is not bit-exact", stacklevel=3)
            seed_everything(self.config.seed + self.dist.rank + 7919 * self.epoch)

    def _warn_config_changes(self, ckpt: Checkpoint, state: dict) -> None:
        saved = ckpt.config.get("trainer", {})
        now = self.config.to_dict()
        changed = sorted(k for k in now if k in saved and saved[k] != now[k] and k not in _RESUME_FREE_OPTIONS)
        if changed:
            warnings.warn(f"resuming from {ckpt.path} with changed trainer options {changed}; the continuation "
                          "differs from the original run", stacklevel=4)
        if state["steps_per_epoch"] != self.steps_per_epoch:
            warnings.warn(f"steps per epoch changed from {state['steps_per_epoch']} to {self.steps_per_epoch} "
                          f"(dataset, batch size or world size changed)", stacklevel=4)

    # ------------------------------------------------------------------ training
    def _compute_loss(self, batch):
        out = self.train_model(batch)
        if not isinstance(out, Mapping) or "loss" not in out:
            raise TypeError(f"{type(self.model).__name__}.forward(batch) must return a dict with a 'loss' entry, "
                            f"got {type(out).__name__}" + (f" with keys {sorted(out)}" if isinstance(out, Mapping) else ""))
        loss = out["loss"]
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"'loss' must be a scalar tensor, got {type(loss).__name__} "
                            f"of shape {tuple(getattr(loss, 'shape', ()))}")
        return loss.reshape(()), out

    def train_one_epoch(self) -> dict[str, float]:
        cfg = self.config
        self.train_model.train()
        self.train_sampler.set_epoch(self.epoch)
        seed = np.random.SeedSequence([cfg.seed, self.epoch, self.dist.rank]).generate_state(1)[0]
        self.loader_generator.manual_seed(int(seed))
        sums, batches = {}, 0
        show = cfg.progress and self.dist.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not show,
                   leave=False, dynamic_ncols=True)
        try:
            for batch in self.train_loader:
                batch = to_device(batch, self.device)
                with self.autocast():
                    loss, out = self._compute_loss(batch)
                if not self.dist.enabled and not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at epoch {self.epoch + 1}, "
                                             f"step {self.step + 1}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = clip_gradients(self.model.parameters(), cfg.grad_clip)
                if not torch.isfinite(grad_norm):  # identical on all ranks (gradients are all-reduced)
                    raise FloatingPointError(f"non-finite gradient norm at epoch {self.epoch + 1}, step "
                                             f"{self.step + 1} (loss {loss.item()})")
                self.optimizer.step()
                self.scheduler.step()
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.model)
                scalars = scalar_outputs({**out, "grad_norm": grad_norm})
                for key, value in scalars.items():
                    sums[key] = sums.get(key, 0.0) + value
                batches += 1
                bar.update(1)
                bar.set_postfix(loss=f"{scalars['loss']:.4g}", lr=f"{self.scheduler.get_last_lr()[0]:.3g}")
        finally:
            bar.close()
        totals = D.all_reduce_sums({**sums, "__batches": float(batches)}, self.dist, self.device)
        count = max(totals.pop("__batches"), 1.0)
        self.epoch += 1
        return {key: value / count for key, value in totals.items()}

    def evaluate(self) -> dict[str, float]:
        """Run ``evaluate_fn`` on rank 0 and share the result (collective: every rank must call it)."""
        result = None
        if self.dist.is_main:
            try:
                result = ("ok", self._evaluate_local())
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                if not self.dist.enabled:
                    raise
                result = ("error", f"{type(exc).__name__}: {exc}")
        status, payload = D.broadcast_object(result, self.dist)
        if status == "error":
            raise RuntimeError(f"evaluation failed on rank 0: {payload}")
        return payload

    def _evaluate_local(self) -> dict[str, float]:
        if self.val_loader is None:
            raise ValueError("no val_data was given to the Trainer, so there is nothing to evaluate")
        model, was_training = self.model, self.model.training
        model.eval()
        swap = self.ema.applied(model) if self.ema is not None else contextlib.nullcontext()
        # evaluation draws from torch's generator (the val loader's base seed, evaluate_fn's own sampling): forked,
        # so how often val is scored never changes the training that follows (and ranks stay in step under DDP)
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with swap, torch.random.fork_rng(devices=cuda), torch.no_grad(), self.autocast():
                metrics = self.evaluate_fn(model, self.val_loader)
        finally:
            model.train(was_training)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"evaluate_fn must return a dict of floats, got {type(metrics).__name__}")
        metrics = {str(k): float(v) for k, v in metrics.items()}
        if self.config.metric not in metrics:
            raise KeyError(f"selection metric {self.config.metric!r} not among the evaluation results "
                           f"{sorted(metrics)} (set the trainer option 'metric')")
        return metrics

    def _is_improvement(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best_metric is None:
            return True
        return value > self.best_metric if self.config.higher_is_better else value < self.best_metric

    def fit(self, max_epochs: int | None = None) -> dict:
        """Train until ``config.epochs`` (or for at most ``max_epochs`` more epochs in this call); returns a summary.

        Summary: ``epoch``, ``step``, ``train`` (last epoch's averaged outputs), ``eval`` (last evaluation),
        ``best_metric``, ``best_epoch``.
        """
        cfg = self.config
        stop = cfg.epochs if max_epochs is None else min(cfg.epochs, self.epoch + max_epochs)
        try:
            while self.epoch < stop:
                started = time.perf_counter()
                self.last_train = self.train_one_epoch()
                record = {"epoch": self.epoch, "step": self.step, "train": self.last_train, "eval": None}
                self._log({"split": "train", "epoch": self.epoch, "step": self.step,
                           "lr": self.scheduler.get_last_lr()[0], "global_batch_size": self.global_batch_size,
                           **self.last_train, "time_s": time.perf_counter() - started})
                improved = False
                if self.has_val and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                    self.last_eval = record["eval"] = self.evaluate()
                    improved = self._is_improvement(self.last_eval[cfg.metric])
                    if improved:
                        self.best_metric, self.best_epoch = self.last_eval[cfg.metric], self.epoch
                    self._log({"split": "val", "epoch": self.epoch, "step": self.step, **self.last_eval,
                               "best_metric": self.best_metric, "is_best": improved})
                if improved:
                    self.save("best")
                self.save("last")
                for callback in self.callbacks:
                    callback(self, record)
        finally:
            if self.log is not None and self.log.writer is not None:
                self.log.writer.flush()
        return self.summary()

    def summary(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "train": dict(self.last_train), "eval": dict(self.last_eval),
                "best_metric": self.best_metric, "best_epoch": self.best_epoch}

    def _log(self, record: dict) -> None:
        if self.log is not None:
            self.log.write(record)

    def close(self) -> None:
        """Close the log, release the run folder's lock and leave the process group if this trainer created it."""
        if self.log is not None:
            self.log.close()
        if self.lock is not None:
            self.lock.release()
        if self.train_model is not self.model:
            # Free the DDP reducer while its process group is alive: destroying it afterwards can hang at exit.
            self.train_model = self.model
            gc.collect()
        D.cleanup(self.dist)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
