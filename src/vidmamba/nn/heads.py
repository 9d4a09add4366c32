"""Masked 1-D convolution and dense per-clip heads (UniVTG / MLVTG and HieraMamba style), channel-last."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmamba.nn.mask import check_mask
from vidmamba.nn.pooling import WeightedPool
from vidmamba.nn.scale import Scale
from vidmamba.ssm.layers import masked_fill_pads

OFFSET_ACTS = ("relu", "sigmoid", "none")


class MaskedConv1d(nn.Module):
    """Conv1d over time on x (b, l, c_in) with "same" padding (odd kernel) and a padding mask.

    The input is zeroed at pads before the conv (so pads never leak into valid outputs: a right-padded sample gives
    what it gives alone) and the output is zeroed at pads. With stride s the output keeps every s-th step and the
    mask ``mask[:, ::s]``. forward(x, mask) -> (y (b, ceil(l/s), c_out), out_mask or None).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, stride: int = 1, bias: bool = True):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.stride = stride
        self.conv = nn.Conv1d(in_dim, out_dim, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)

    def forward(self, x: Tensor, mask: Tensor | None = None):
        check_mask(mask, x.shape[:2])
        y = self.conv(masked_fill_pads(x, mask, 1).transpose(1, 2)).transpose(1, 2)
        out_mask = None if mask is None else mask[:, :: self.stride]
        return masked_fill_pads(y, out_mask, 1), out_mask


class ConvHead(nn.Module):
    """``num_layers`` masked convs: (num_layers - 1) x [conv k -> (LayerNorm) -> ReLU] -> conv k -> out_dim.

    UniVTG: 3 layers, k 3, no norm. HieraMamba: 3 layers, k 3, ``with_ln=True`` (hidden convs then have no bias).
    forward(x (b, l, in_dim), mask (b, l)) -> (b, l, out_dim), zero at pads.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None, num_layers: int = 3,
                 kernel_size: int = 3, with_ln: bool = False):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        hidden_dim = hidden_dim or in_dim
        dims = [in_dim] + [hidden_dim] * (num_layers - 1)
        self.hidden = nn.ModuleList(MaskedConv1d(a, hidden_dim, kernel_size, bias=not with_ln) for a in dims[:-1])
        self.norms = nn.ModuleList(nn.LayerNorm(hidden_dim) if with_ln else nn.Identity() for _ in dims[:-1])
        self.out = MaskedConv1d(dims[-1], out_dim, kernel_size)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        for conv, norm in zip(self.hidden, self.norms):
            x = masked_fill_pads(F.relu(norm(conv(x, mask)[0])), mask, 1)
        return self.out(x, mask)[0]


class DenseGroundingHead(nn.Module):
    """Per-position foreground logit and ``(left, right)`` boundary distances, shared across FPN levels.

    - UniVTG / MLVTG: ``num_levels=1, offset_act="sigmoid"`` (distances in [0, 1] of the normalised video length;
      ``st = t - left``, ``ed = t + right`` around the clip's normalised timestamp).
    - HieraMamba: ``with_ln=True, use_scale=True, offset_act="relu"``, one learnable :class:`Scale` per level,
      distances in units of the level stride (see :func:`vidmamba.nn.segments.offsets_to_segments`).

    ``prior_prob`` > 0 sets the cls bias to ``-log((1 - p) / p)``. forward(x, mask) takes one level (b, l, dim) with
    (b, l) mask, or lists of levels; returns ``(logits (b, l), offsets (b, l, 2))`` or two lists, zero at pads.
    """

    def __init__(self, dim: int, hidden_dim: int | None = None, num_layers: int = 3, kernel_size: int = 3,
                 with_ln: bool = False, num_levels: int = 1, offset_act: str = "relu", use_scale: bool = False,
                 prior_prob: float = 0.0):
        super().__init__()
        if offset_act not in OFFSET_ACTS:
            raise ValueError(f"offset_act must be one of {OFFSET_ACTS}, got {offset_act!r}")
        self.cls = ConvHead(dim, 1, hidden_dim, num_layers, kernel_size, with_ln)
        self.reg = ConvHead(dim, 2, hidden_dim, num_layers, kernel_size, with_ln)
        self.scales = nn.ModuleList(Scale() for _ in range(num_levels)) if use_scale else None
        self.num_levels, self.offset_act = num_levels, offset_act
        if prior_prob > 0:
            nn.init.constant_(self.cls.out.conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward_level(self, x: Tensor, mask: Tensor | None = None, level: int = 0):
        """One level: x (b, l, dim), mask (b, l) -> (logits (b, l), offsets (b, l, 2))."""
        logits = self.cls(x, mask).squeeze(-1)
        off = self.reg(x, mask)
        if self.scales is not None:
            off = self.scales[level](off)
        if self.offset_act == "relu":
            off = F.relu(off)
        elif self.offset_act == "sigmoid":
            off = masked_fill_pads(torch.sigmoid(off), mask, 1)
        return logits, off

    def forward(self, x: Tensor | Sequence[Tensor], mask: Tensor | Sequence[Tensor] | None = None):
        if isinstance(x, Tensor):
            return self.forward_level(x, mask)
        masks = [None] * len(x) if mask is None else mask
        if len(x) > self.num_levels or len(masks) != len(x):
            raise ValueError(f"got {len(x)} levels and {len(masks)} masks for a head built for {self.num_levels}")
        outs = [self.forward_level(f, m, i) for i, (f, m) in enumerate(zip(x, masks))]
        return [o[0] for o in outs], [o[1] for o in outs]


class SaliencyHead(nn.Module):
    """UniVTG / MLVTG highlight branch: pool the query with :class:`WeightedPool`, score each clip by cosine similarity.

    forward(video (b, l, d), video_mask (b, l), query (b, lq, d), query_mask (b, lq)) -> (b, l) in [-1, 1], 0 at pads.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.pool = WeightedPool(dim)

    def forward(self, video: Tensor, video_mask: Tensor | None, query: Tensor,
                query_mask: Tensor | None = None) -> Tensor:
        sentence = self.pool(query, query_mask)
        sal = F.cosine_similarity(video, sentence.unsqueeze(1), dim=-1, eps=1e-8)
        return masked_fill_pads(sal, video_mask, 1)
