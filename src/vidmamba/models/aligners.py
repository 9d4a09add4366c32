"""MLVTG's aligners: ``forward(video (b, lv, d), video_mask, text (b, lq, d), text_mask, refiner=None)`` -> aligned
video (b, lv, d), zero at pads. Each is built from an :class:`~vidmamba.models.mlvtg.MLVTGConfig` ``cfg``.

- :class:`MambaAligner` ("mlvtg"): the MambaAligner, N x [LayerNorm -> BiMambaGated -> DropPath residual] over the
  packed ``[Q; V]`` sequence.
- :class:`TransformerAligner` ("mlvtg-transformer"): the BiMambaGated mixer replaced by pre-norm masked multi-head
  self-attention + MLP blocks, same width and depth, over the same packed sequence; the twin for side-by-side speed /
  memory / accuracy ratios.
- :class:`PerClipAligner` ("mlvtg-perclip"): no temporal context at all. Each clip sees only itself and the
  attention-pooled query (an MLP on ``[clip, query, clip * query]``); the model then uses kernel-1 heads, so no clip
  can influence another's outputs. It measures how much a task needs temporal context.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from vidmamba.nn import DropPath, TransformerBlock, WeightedPool, masked_fill_pads, mlp
from vidmamba.ssm import BiMambaGated


# ---------------------------------------------------------------------------------------------------------------------
def pack_joint(text: Tensor, text_mask: Tensor, video: Tensor, video_mask: Tensor):
    """``[Q; V]`` with each sample's valid text then valid video contiguous at the front and all pads at the end.

    Returns ``(z (b, lq + lv, d), z_mask (b, lq + lv), perm (b, lq + lv))``; :func:`unpack_joint` inverts it. Packing
    makes a padded sample see exactly the sequence it would see alone (no text pads between its query and video).
    """
    x = torch.cat([text, video], dim=1)
    m = torch.cat([text_mask, video_mask], dim=1)
    perm = torch.argsort((~m).to(torch.int8), dim=1, stable=True)       # valid first, original order kept
    z = torch.gather(x, 1, perm.unsqueeze(-1).expand_as(x))
    return z, torch.gather(m, 1, perm), perm


def unpack_joint(z: Tensor, perm: Tensor, text_len: int) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`pack_joint`: (b, lq + lv, d) -> (text part (b, lq, d), video part (b, lv, d))."""
    out = torch.empty_like(z).scatter_(1, perm.unsqueeze(-1).expand_as(z), z)
    return out[:, :text_len], out[:, text_len:]


class JointAligner(nn.Module):
    """Runs ``cfg.num_layers`` blocks (each ``block(z, mask) -> z``) over the packed ``[Q; V]`` sequence, then a final
    LayerNorm and the optional refiner, and returns the video part. ``make_block(drop_path_rate)`` builds one block;
    the rates increase linearly from 0 to ``cfg.drop_path``."""

    def __init__(self, cfg, make_block):
        super().__init__()
        self.blocks = nn.ModuleList(make_block(p) for p in drop_path_rates(cfg.drop_path, cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.hidden_dim)

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor,
                refiner: nn.Module | None = None) -> Tensor:
        z, z_mask, perm = pack_joint(text, text_mask, video, video_mask)
        for block in self.blocks:
            z = block(z, z_mask)
        z = masked_fill_pads(self.norm(z), z_mask, 1)
        if refiner is not None:
            z = refiner(z, z_mask)
        return unpack_joint(z, perm, text.shape[1])[1]


def drop_path_rates(p: float, n: int) -> list[float]:
    """Linearly increasing stochastic-depth rates, 0 for the first of ``n`` blocks and ``p`` for the last."""
    return [p * i / max(n - 1, 1) for i in range(n)]


class MambaBlock(nn.Module):
    """``x + DropPath(BiMambaGated(LayerNorm(x), mask))``, zero at pads."""

    def __init__(self, dim: int, d_state: int, d_conv: int, expand: int, drop_path: float):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mixer = BiMambaGated(dim, d_state=d_state, d_conv=d_conv, expand=expand)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return masked_fill_pads(x + self.drop_path(self.mixer(self.norm(x), mask)), mask, 1)


class MambaAligner(JointAligner):
    """MLVTG's MambaAligner: ``num_layers`` gated bidirectional Mamba blocks over ``[Q; V]``."""

    def __init__(self, cfg):
        super().__init__(cfg, lambda p: MambaBlock(cfg.hidden_dim, cfg.d_state, cfg.d_conv, cfg.expand, p))


class TransformerAligner(JointAligner):
    """``num_layers`` pre-norm transformer blocks over the packed ``[Q; V]`` sequence (global masked attention)."""

    def __init__(self, cfg):
        super().__init__(cfg, lambda p: TransformerBlock(cfg.hidden_dim, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, p))


class PerClipAligner(nn.Module):
    """Context-free aligner: ``clip_t + MLP(LN([clip_t, s, clip_t * s]))`` with ``s`` the attention-pooled query.

    No operation mixes clips, so output t depends only on clip t and the query. (The query pooling is its own
    WeightedPool, separate from the HD branch's.) Refiners are rejected: an LLM layer would mix clips.
    """

    def __init__(self, cfg):
        super().__init__()
        d = cfg.hidden_dim
        self.pool = WeightedPool(d)
        self.norm = nn.LayerNorm(3 * d)
        self.mlp = mlp(3 * d, int(d * cfg.mlp_ratio), d, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, video: Tensor, video_mask: Tensor, text: Tensor, text_mask: Tensor,
                refiner: nn.Module | None = None) -> Tensor:
        if refiner is not None:
            raise ValueError("PerClipAligner takes no refiner (it would give clips temporal context)")
        s = self.pool(text, text_mask).unsqueeze(1).expand_as(video)
        x = video + self.mlp(self.norm(torch.cat([video, s, video * s], dim=-1)))
        return masked_fill_pads(self.out_norm(x), video_mask, 1)


ALIGNERS = {"mamba": MambaAligner, "transformer": TransformerAligner, "perclip": PerClipAligner}


def build_aligner(cfg) -> nn.Module:
    """The aligner named by ``cfg.aligner``."""
    return ALIGNERS[cfg.aligner](cfg)
