"""Config sections as dataclasses, built from plain dicts (YAML sections) with strict keys and types.

:class:`Section` is the shared behaviour: ``from_dict`` names an unknown key with the closest known one and coerces
every value as a YAML source gives it (ints for floats, lists for tuples), or names ``section.key`` and the expected
type. :class:`TrainerConfig` is the ``train:`` section; the model configs and the tasks' data sections use the same.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass

from vidmamba.errors import ConfigError, ConfigTypeError


class Section:
    """Mixin for ``@dataclass`` config sections; ``section`` names it in messages (``train.lr``)."""

    section = "options"

    @classmethod
    def from_dict(cls, options: dict | None, section: str | None = None):
        """Build from a dict: an unknown key or a value of the wrong type is a :class:`ConfigTypeError` naming
        ``section.key`` (and the closest known key, or the expected type)."""
        return cls(**check_options(cls, options, section or cls.section))

    def reject(self, name: str, why: str):
        """Raise the :class:`ConfigError` of a value out of its range: ``section.name: why (got value)``."""
        raise ConfigError(f"{self.section}.{name}: {why} (got {getattr(self, name)!r})")

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def check_options(cls, options: dict | None, section: str) -> dict:
    """``options`` for the dataclass ``cls`` with every value coerced to its field's type; an unknown key or a value
    of the wrong type is a :class:`ConfigTypeError` naming ``section.key``."""
    options = dict(options or {})
    if not isinstance(options, dict):
        raise ConfigTypeError(f"{section}: expected a mapping of keys to values, got {type(options).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigTypeError(f"{section}.{key}: unknown key{hint} (known keys: {', '.join(known)})")
    hints = typing.get_type_hints(cls)
    return {key: coerce(value, hints[key], f"{section}.{key}") for key, value in options.items()}


def coerce(value, kind, name: str):
    """``value`` as the type hint ``kind`` (bool, int, float, str, tuple / list / dict, ``X | None``, unions; other
    hints are not checked), coerced as a YAML source needs; else a :class:`ConfigTypeError` naming ``name``."""
    try:
        return _coerce(value, kind)
    except (TypeError, ValueError):
        raise ConfigTypeError(f"{name}: expected {type_name(kind)}, got {value!r} ({type(value).__name__})") from None


def _coerce(value, kind):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except (TypeError, ValueError):
                pass
        raise TypeError
    if kind is str and isinstance(value, os.PathLike):
        return os.fspath(value)  # file and folder keys given as paths by a program
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise TypeError
        return value
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError
        return float(value)  # "1e-4" (YAML 1.1 reads it as a string) -> 0.0001
    base = origin or kind
    if base in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        item = args[0] if args and args[0] is not Ellipsis else None
        return base(_coerce(v, item) if item is not None else v for v in value)
    if base is dict and not isinstance(value, dict):
        raise TypeError
    return value


def type_name(kind) -> str:
    """A type hint in words: ``int | None`` -> "int or null", ``tuple[float, ...]`` -> "a list of float"."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in args)
    if (origin or kind) in (tuple, list):
        item = args[0] if args and args[0] is not Ellipsis else None
        return f"a list of {type_name(item)}" if item is not None else "a list"
    if (origin or kind) is dict:
        return "a mapping"
    return getattr(kind, "__name__", str(kind))

SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("none", "bf16")


@dataclass
class TrainerConfig(Section):
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
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0  # cosine: final lr = lr * min_lr_ratio
    lr_drop_epochs: tuple[int, ...] = ()  # step: multiply the lr by lr_gamma at each of these epochs (after warmup counts)
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

    section = "train"

    def __post_init__(self):
        for key, value in check_options(type(self), dataclasses.asdict(self), self.section).items():
            setattr(self, key, value)
        self._validate()

    def _validate(self):
        bad = self.reject
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

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or self.batch_size


def require(options: dict, keys, section: str) -> None:
    """Each of ``keys`` must be set (not None) in ``options``; else a :class:`ConfigError` naming ``section.key``."""
    for key in keys:
        if options.get(key) is None:
            raise ConfigError(f"{section}.{key} is missing (required)")


def set_from_data(model: dict, **found) -> None:
    """Fill ``model`` config values read off the data (feature widths, class counts); a value the config already
    sets differently is a :class:`ConfigError` naming both."""
    for key, value in found.items():
        if model.setdefault(key, value) != value:
            raise ConfigError(f"model.{key} = {model[key]} does not match the data ({key} = {value})")


__all__ = ["AMP_MODES", "SCHEDULES", "Section", "TrainerConfig", "check_options", "coerce", "require", "set_from_data",
           "type_name"]
