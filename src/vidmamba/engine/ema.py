"""Exponential moving average of the trainable weights."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .checkpoint import describe_mismatch


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after every optimizer step.

    Tracks the trainable floating-point parameters only (frozen ones never change; buffers such as norm statistics
    are taken from the live model). Tied parameters are tracked once. The shadow is kept in float32.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {name: p.detach().float().clone() for name, p in self._tracked(model)}

    @staticmethod
    def _tracked(model: nn.Module):
        return [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.is_floating_point()]

    def _pairs(self, model: nn.Module):
        params = dict(self._tracked(model))
        problem = describe_mismatch(_shapes(self.shadow), _shapes(params))
        if problem:
            raise KeyError(f"EMA does not match the model: {problem}")
        return [(self.shadow[n], params[n]) for n in self.shadow]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        pairs = self._pairs(model)
        shadows = [s for s, _ in pairs]
        torch._foreach_lerp_(shadows, [p.detach().float() for _, p in pairs], 1.0 - self.decay)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's tracked parameters with the averages."""
        for shadow, param in self._pairs(model):
            param.copy_(shadow)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Temporarily swap the averaged weights into ``model`` (e.g. for evaluation); restored on exit."""
        pairs = self._pairs(model)
        backup = [p.detach().clone() for _, p in pairs]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for (_, param), saved in zip(pairs, backup):
                    param.copy_(saved)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        shadow = state["shadow"]
        problem = describe_mismatch(_shapes(self.shadow), _shapes(shadow))
        if problem:
            raise KeyError(f"EMA state does not match the model: {problem}")
        for name, value in shadow.items():
            self.shadow[name].copy_(value)
        self.decay = float(state.get("decay", self.decay))
        self.num_updates = int(state.get("num_updates", 0))


def _shapes(tensors: dict) -> dict:
    return {name: tuple(t.shape) for name, t in tensors.items()}
