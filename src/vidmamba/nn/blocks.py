"""Generic blocks shared by several models: the two-layer MLP and the pre-norm transformer encoder block."""
from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from vidmamba.nn.attention import MaskedMHA
from vidmamba.nn.drop import DropPath
from vidmamba.ssm.layers import masked_fill_pads


def mlp(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    """Linear(dim, hidden) -> GELU -> Dropout -> Linear(hidden, out) -> Dropout (SnAG's ``FFN`` with
    ``hidden = ratio * dim``; the transformer twins' MLP). (b, l, dim) -> (b, l, out)."""
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out),
                         nn.Dropout(dropout))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: ``x + DropPath(MHA(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``; masked, 0 at pads.
    forward(x (b, l, d), mask (b, l)) -> (b, l, d)."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MaskedMHA(dim, n_heads, attn_drop=dropout, proj_drop=dropout)
        self.mlp = mlp(dim, int(dim * mlp_ratio), dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return masked_fill_pads(x, mask, 1)


__all__ = ["TransformerBlock", "mlp"]
