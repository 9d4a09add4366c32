"""Stochastic depth."""
from __future__ import annotations

from torch import Tensor, nn


def drop_path(x: Tensor, p: float = 0.0, training: bool = False) -> Tensor:
    """Zero whole samples of a residual branch with probability ``p`` and rescale survivors by 1/(1-p).

    x (b, ...) -> same shape; identity when ``p == 0`` or not training.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    noise = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * noise / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (per-sample stochastic depth, active in training only)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
