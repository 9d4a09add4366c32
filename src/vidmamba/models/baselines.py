"""Baseline aligners for :class:`vidmamba.models.mlvtg.MLVTG` (same projections, heads, losses and decoding).

- :class:`TransformerAligner` ("mlvtg-transformer"): the MambaAligner's BiMambaGated mixer replaced by pre-norm masked
  multi-head self-attention + MLP blocks, same width and depth, over the same packed ``[Q; V]`` sequence; the twin
  for side-by-side speed / memory / accuracy ratios.
- :class:`PerClipAligner` ("mlvtg-perclip"): no temporal context at all. Each clip sees only itself and the
  attention-pooled query (an MLP on ``[clip, query, clip * query]``); the model then uses kernel-1 heads, so no clip
  can influence another's outputs. It measures how much a task needs temporal context.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vidmamba.models.mlvtg import JointAligner, MLVTGConfig
from vidmamba.nn import DropPath, MaskedMHA, WeightedPool
from vidmamba.ssm.layers import masked_fill_pads


def _mlp(dim: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out),
                         nn.Dropout(dropout))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: ``x + DropPath(MHA(LN(x)))``, then ``x + DropPath(MLP(LN(x)))``; masked, 0 at pads."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float, dropout: float, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MaskedMHA(dim, n_heads, attn_drop=dropout, proj_drop=dropout)
        self.mlp = _mlp(dim, int(dim * mlp_ratio), dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), mask))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return masked_fill_pads(x, mask, 1)


class TransformerAligner(JointAligner):
    """``num_layers`` pre-norm transformer blocks over the packed ``[Q; V]`` sequence (global masked attention)."""

    def __init__(self, cfg: MLVTGConfig):
        super().__init__(cfg, lambda p: TransformerBlock(cfg.hidden_dim, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, p))


class PerClipAligner(nn.Module):
    """Context-free aligner: ``clip_t + MLP(LN([clip_t, s, clip_t * s]))`` with ``s`` the attention-pooled query.

    No operation mixes clips, so output t depends only on clip t and the query. (The query pooling is its own
    WeightedPool, separate from the HD branch's.) Refiners are rejected: an LLM layer would mix clips.
    """

    def __init__(self, cfg: MLVTGConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.pool = WeightedPool(d)
        self.norm = nn.LayerNorm(3 * d)
        self.mlp = _mlp(3 * d, int(d * cfg.mlp_ratio), d, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor,
                refiner: nn.Module | None = None) -> Tensor:
        if refiner is not None:
            raise ValueError("PerClipAligner takes no refiner (it would give clips temporal context)")
        s = self.pool(text, text_mask).unsqueeze(1).expand_as(video)
        x = video + self.mlp(self.norm(torch.cat([video, s, video * s], dim=-1)))
        return masked_fill_pads(self.out_norm(x), video_mask, 1)
