"""Sinusoidal absolute position encodings."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmamba.nn.mask import check_mask


def sinusoid_encoding(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """Transformer sinusoids (length, dim), dim even: ``pe[t, 2i] = sin(t w_i)``, ``pe[t, 2i+1] = cos(t w_i)``,
    ``w_i = base^(-2i / dim)``."""
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(base) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.float()


class SinusoidalPositionEncoding(nn.Module):
    """Adds a fixed sinusoid table (times ``scale``) at valid positions (HieraMamba ``use_abs_pe``: scale 1/sqrt(dim)).

    Sequences longer than ``max_len`` use the table linearly interpolated to their length, as HieraMamba does at eval
    (``align_corners`` as ``F.interpolate``; HieraMamba's official backbone uses True).
    forward(x (b, l, dim), mask (b, l) or None) -> (b, l, dim).
    """

    def __init__(self, dim: int, max_len: int = 4096, scale: float = 1.0, align_corners: bool = False):
        super().__init__()
        self.align_corners = align_corners
        self.register_buffer("pe", sinusoid_encoding(max_len, dim) * scale, persistent=False)

    def encoding(self, length: int) -> Tensor:
        """The (length, dim) table for a sequence of ``length`` steps (interpolated past ``max_len``)."""
        if length <= self.pe.shape[0]:
            return self.pe[:length]
        table = self.pe.t().unsqueeze(0)  # (1, dim, max_len)
        return F.interpolate(table, size=length, mode="linear", align_corners=self.align_corners)[0].t()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_mask(mask, x.shape[:2])
        pe = self.encoding(x.shape[1]).to(x.dtype)
        return x + (pe if mask is None else pe * mask.unsqueeze(-1).to(x.dtype))
