"""Learnable scales: per-channel LayerScale (with optional drop-path) and a scalar Scale per FPN level."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from vidmamba.nn.drop import drop_path


class LayerScale(nn.Module):
    """``drop_path(x * gamma)`` with a per-channel gamma (dim,) initialised to ``init_value`` (HieraMamba: 1e-4, with
    drop-path 0.1 in LayerScale2). x (..., dim) channel-last."""

    def __init__(self, dim: int, init_value: float = 1e-4, drop_path: float = 0.0):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_value)))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x * self.gamma, self.drop_path, self.training)


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level in HieraMamba's regression head), init ``init_value``."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale
