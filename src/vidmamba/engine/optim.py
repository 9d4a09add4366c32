"""AdamW with no-weight-decay groups, a per-step warmup + (cosine | step | constant) schedule, gradient clipping."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def _is_norm(module: nn.Module) -> bool:
    # Torch's norms and any custom one named like them (RMSNorm, LayerNorm2d, ...).
    return isinstance(module, nn.modules.batchnorm._NormBase) or "norm" in type(module).__name__.lower()


def no_weight_decay(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """An explicit mark ``param._no_weight_decay`` (True or False) decides; unmarked: True for biases, norm weights,
    embeddings and 0/1-d tensors. (HieraMamba marks Hydra's 1-d ``A_log`` and ``D`` False: its official optimiser
    decays them.)"""
    mark = getattr(param, "_no_weight_decay", None)
    if mark is not None:
        return bool(mark)
    return param.ndim <= 1 or name == "bias" or _is_norm(module) or isinstance(module, _EMBEDDING_TYPES)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Split the trainable parameters into a decayed and a non-decayed AdamW group.

    A parameter shared by several modules (tied weights) is listed once and is not decayed if any owner says so.
    Mark a parameter ``p._no_weight_decay = True`` (Mamba's ``A_log`` and ``D``, positional embeddings stored as bare
    parameters) to exclude it explicitly, ``False`` to decay it whatever its shape.
    """
    exempt, order = set(), {}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            order.setdefault(id(param), param)
            if no_weight_decay(name, param, module):
                exempt.add(id(param))
    decay = [p for i, p in order.items() if i not in exempt]
    no_decay = [p for i, p in order.items() if i in exempt]
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999), eps=1e-8):
    """AdamW over ``param_groups``. ``foreach=True`` on every device (PyTorch picks it only for CUDA): one fused call
    per group instead of ~8 small ops per parameter, which at the demo's scale is several ms of a ~0.1 s CPU step."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, foreach=True)


@dataclass(frozen=True)
class LRSchedule:
    """Learning-rate factor as a function of the optimizer step ``s`` (0-based: the factor used BY step s).

    Warmup (``s < warmup_steps``): ``(s + 1) / warmup_steps``, so the first step already moves and step
    ``warmup_steps - 1`` uses the full rate. After it, with ``t = s - warmup_steps`` and
    ``T = total_steps - warmup_steps``:
      - cosine: ``m + (1 - m) * (1 + cos(pi * min(t / T, 1))) / 2`` with ``m = min_lr_ratio``;
      - step: ``gamma ** (number of milestones <= s)`` (milestones in steps);
      - constant: 1.
    """

    total_steps: int
    warmup_steps: int = 0
    kind: str = "cosine"
    min_lr_ratio: float = 0.0
    milestones: tuple = ()
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        if self.kind == "step":
            return self.gamma ** sum(step >= m for m in self.milestones)
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min((step - self.warmup_steps) / span, 1.0)
            return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        raise ValueError(f"unknown lr schedule {self.kind!r}")


class WarmupScheduler:
    """Sets ``lr = initial_lr * schedule(step)`` on every param group; call ``step()`` after each optimizer step.

    Its state is only the step counter (the schedule itself comes from the config), so a resumed run may change the
    number of epochs. The base rates live in the optimizer's groups (``initial_lr``) and travel with its state.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule):
        self.optimizer, self.schedule, self.last_step = optimizer, schedule, 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._apply()

    def _apply(self):
        factor = self.schedule(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor

    def step(self):
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict):
        self.last_step = int(state["last_step"])
        self._apply()


def clip_gradients(parameters, max_norm: float) -> torch.Tensor:
    """Clip the global L2 norm of the gradients to ``max_norm`` (no clipping when ``max_norm <= 0``).

    Returns the total norm before clipping (a tensor; non-finite when any gradient is NaN/Inf).
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
