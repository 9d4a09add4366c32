"""Trainer options as a dataclass, buildable from a plain dict (e.g. a YAML section) with strict key checking."""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass

SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("none", "bf16")


@dataclass
class TrainerConfig:
    """Everything the trainer needs besides the model, the data and the evaluation function.

    ``batch_size`` is per rank: the global batch is ``batch_size * world_size``. Warmup is given either in epochs
    (``warmup_epochs``, may be fractional) or in optimizer steps (``warmup_steps``), not both. ``grad_clip <= 0`` turns
    clipping off. Evaluation runs every ``eval_every`` epochs and after the final epoch; ``metric`` names the key of
    the evaluation dict used to pick the ``best`` checkpoint. ``length_pool_batches > 0`` groups samples of similar
    length into batches (:class:`~vidmamba.engine.sampler.LengthGroupedSampler`; the training set needs
    ``sample_lengths()``).
    """

    epochs: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-4
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0  # cosine: final lr = lr * min_lr_ratio
    lr_drop_epochs: tuple = ()  # step: multiply the lr by lr_gamma at each of these epochs (after warmup counts)
    lr_gamma: float = 0.1
    grad_clip: float = 0.0
    ema: bool = False
    ema_decay: float = 0.999
    eval_every: int = 1
    metric: str = "loss"
    higher_is_better: bool = False
    batch_size: int = 32
    eval_batch_size: int = 0  # 0: same as batch_size
    drop_last: bool = True
    length_pool_batches: int = 0  # > 0: batches of similar-length samples, sorted in pools of this many batches
    num_workers: int = 0
    seed: int = 0
    amp: str = "none"
    device: str = "auto"  # "auto" (cuda:LOCAL_RANK when available, else cpu), "cpu", "cuda", "cuda:1", ...
    out_dir: str = "runs/default"
    progress: bool = True  # tqdm bar (only on rank 0 and only when stderr is a terminal)
    tensorboard: bool = True  # only when torch.utils.tensorboard is importable
    ddp_find_unused_parameters: bool = False
    dist_timeout_s: float = 3600.0

    def __post_init__(self):
        _coerce_fields(self)
        self._validate()

    def _validate(self):
        def bad(name, why):
            raise ValueError(f"trainer option {name!r}: {why} (got {getattr(self, name)!r})")

        for name in ("epochs", "eval_every", "batch_size"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("warmup_steps", "num_workers", "eval_batch_size", "length_pool_batches"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        for name in ("lr", "weight_decay", "warmup_epochs", "min_lr_ratio", "lr_gamma", "eps", "dist_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                bad(name, "must be a finite number >= 0")
        if not math.isfinite(self.grad_clip):
            bad("grad_clip", "must be finite (use 0 to turn clipping off)")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"must be one of {SCHEDULES}")
        if self.amp not in AMP_MODES:
            bad("amp", f"must be one of {AMP_MODES}")
        if self.warmup_epochs > 0 and self.warmup_steps > 0:
            bad("warmup_steps", "give warmup_epochs or warmup_steps, not both")
        if not 0.0 < self.ema_decay < 1.0:
            bad("ema_decay", "must be in (0, 1)")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            bad("betas", "must be two numbers in [0, 1)")
        if any(e < 0 for e in self.lr_drop_epochs) or list(self.lr_drop_epochs) != sorted(self.lr_drop_epochs):
            bad("lr_drop_epochs", "must be increasing epochs >= 0")
        if not self.metric:
            bad("metric", "must name a key of the evaluation results")

    @classmethod
    def from_dict(cls, options: dict | None) -> "TrainerConfig":
        """Build from a dict; an unknown key raises ``ValueError`` naming it (and the closest known option)."""
        options = dict(options or {})
        known = [f.name for f in dataclasses.fields(cls)]
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown trainer option {key!r}{hint} (known options: {', '.join(known)})")
        return cls(**options)

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size


def check_data_keys(data: dict, known, required=()) -> None:
    """A ``data`` config section with a key outside ``known`` or without one of ``required`` is a ``ValueError``
    naming the keys."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown data config keys {unknown}; known: {sorted(known)}")
    for key in required:
        if key not in data:
            raise ValueError(f"data config is missing {key!r}")


def set_from_data(model: dict, **found) -> None:
    """Fill ``model`` config values read off the data (feature widths, class counts); a value the config already
    sets differently is a ``ValueError`` naming both."""
    for key, value in found.items():
        if model.setdefault(key, value) != value:
            raise ValueError(f"model.{key} = {model[key]} does not match the data ({key} = {value})")


def _coerce_fields(cfg) -> None:
    """Coerce values as a YAML/JSON source would give them (ints for floats, "1e-4" strings, lists for tuples)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value, kind = getattr(cfg, f.name), hints[f.name]
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise TypeError
            elif kind is int:
                if isinstance(value, bool) or not isinstance(value, int):
                    if isinstance(value, float) and value.is_integer():
                        value = int(value)
                    else:
                        raise TypeError
            elif kind is float:
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif kind is tuple:
                if isinstance(value, (str, bytes)):
                    raise TypeError
                value = tuple(float(v) if f.name == "betas" else int(v) for v in value)
            elif kind is str:
                if not isinstance(value, str):
                    raise TypeError
        except (TypeError, ValueError):
            raise TypeError(
                f"trainer option {f.name!r} must be of type {kind.__name__}, got {value!r} ({type(value).__name__})"
            ) from None
        setattr(cfg, f.name, value)


__all__ = ["TrainerConfig", "SCHEDULES", "AMP_MODES"]
