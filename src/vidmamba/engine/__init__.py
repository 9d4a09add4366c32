"""Training engine: a model-agnostic trainer (AdamW, warmup + schedule, EMA, bf16 autocast, grad clipping, DDP via
torchrun, atomic checkpoints, exact resume). See ``trainer.py`` for the contract a task must meet."""
from .checkpoint import Checkpoint, CheckpointError, load_weights, save_checkpoint
from .config import TrainerConfig
from .distributed import DistContext, init_distributed
from .ema import EMA
from .optim import LRSchedule, WarmupScheduler, build_optimizer, clip_gradients, param_groups
from .rng import get_rng_state, seed_everything, set_rng_state
from .trainer import Trainer, mean_forward_outputs, to_device

__all__ = [
    "Checkpoint", "CheckpointError", "DistContext", "EMA", "LRSchedule", "Trainer", "TrainerConfig",
    "WarmupScheduler", "build_optimizer", "clip_gradients", "get_rng_state", "init_distributed", "load_weights",
    "mean_forward_outputs", "param_groups", "save_checkpoint", "seed_everything", "set_rng_state", "to_device",
]
