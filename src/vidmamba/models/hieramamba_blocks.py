"""HieraMamba's transformer pieces (SnAG ``blocks.py``, ``text_net.py``, ``fusion.py``).

- :class:`ConvSelfAttention` and :class:`EncoderLayer`: SnAG's pre-LN ``TransformerEncoder`` (optional depthwise conv
  on q / k / v), used as the AMP block's local encoder and as the TACoS text transformer;
- text encoders :class:`IdentityTextEncoder` (1x1 conv + attention-pooled background token; Ego4D, MAD) and
  :class:`TransformerTextEncoder` (word vectors -> conv, position table, learnable background token, 5 layers; TACoS);
- :class:`XAttnFusion`: 2 cross-attention decoder layers (the attention output is a per-step ``(scale, shift)`` of the
  AdaLN-normalised or raw video; no self-attention) and a final LayerNorm;
- :class:`LNProjector`: the ACC / SPC projection head (Linear -> LayerNorm -> GELU -> Linear -> L2 normalise).

Channel-last (b, l, d), masks (b, l) bool True = valid; every output is 0 at padded steps.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vidmamba.nn import (LayerScale, MaskedConv1d, MaskedMHA, SinusoidalPositionEncoding, masked_attention, masked_mean,
                         mlp)
from vidmamba.ssm.layers import MaskedDepthwiseConv1d, masked_fill_pads

FUSION_MODES = ("adaln", "affine")


class ConvSelfAttention(MaskedMHA):
    """SnAG's ``ConvAttNLayer`` (stride 1): q, k and v each go through their own depthwise conv k=3 (no bias) and a
    LayerNorm before the projections of :class:`MaskedMHA`; then masked (windowed or global) self-attention.
    forward(x (b, l, d), mask (b, l)) -> (b, l, d), 0 at pads."""

    def __init__(self, dim: int, n_heads: int, window_size: int = 0, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, n_heads, window_size, attn_drop=attn_drop, proj_drop=proj_drop)
        self.convs = nn.ModuleList(MaskedDepthwiseConv1d(dim, 3, bias=False, mode="same") for _ in range(3))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        xt = masked_fill_pads(x, mask, 1).transpose(1, 2)
        q, k, v = (norm(conv(xt, mask).transpose(1, 2)) for conv, norm in zip(self.convs, self.norms))
        out = masked_attention(self._heads(self.q(q)), self._heads(self.k(k)), self._heads(self.v(v)), mask,
                               self.window_size, self.attn_drop, self.training)
        return masked_fill_pads(self.proj_drop(self.proj(out.transpose(1, 2).flatten(2))), mask, 1)


class EncoderLayer(nn.Module):
    """SnAG's pre-LN ``TransformerEncoder`` (stride 1 with ``qkv_conv``, stride 0 without):
    ``x + LayerScale(Attn(LN(x)))`` then ``x + LayerScale(FFN(LN(x)))`` (FFN ``ffn_ratio`` x, GELU); LayerScale init
    ``layer_scale_init`` with drop-path ``drop_path``; ``dropout`` on the attention output and in the FFN.
    Attn = :class:`ConvSelfAttention` (``qkv_conv``; the AMP local encoder) or plain :class:`MaskedMHA` (text).
    forward(x (b, l, d), mask) -> (b, l, d), 0 at pads."""

    def __init__(self, dim: int, n_heads: int, window_size: int = 0, ffn_ratio: int = 4,
                 layer_scale_init: float = 1e-4, qkv_conv: bool = True, dropout: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.ln_attn, self.ln_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = (ConvSelfAttention(dim, n_heads, window_size, proj_drop=dropout) if qkv_conv
                     else MaskedMHA(dim, n_heads, window_size, proj_drop=dropout))
        self.ffn = mlp(dim, dim * ffn_ratio, dim, dropout)  # SnAG FFN
        self.scale_attn = LayerScale(dim, layer_scale_init, drop_path)
        self.scale_ffn = LayerScale(dim, layer_scale_init, drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = masked_fill_pads(x, mask, 1)
        x = x + self.scale_attn(self.attn(self.ln_attn(x), mask))
        return masked_fill_pads(x + self.scale_ffn(self.ffn(self.ln_ffn(x))), mask, 1)


# ---------------------------------------------------------------------------------------------------------------------
# text encoders
# ---------------------------------------------------------------------------------------------------------------------
class AttnPoolToken(nn.Module):
    """SnAG ``AttNPool1D``: prepend a "background" token = output 0 of masked self-attention over
    ``[masked mean; tokens]`` (no residual). forward(x (b, l, d), mask (b, l)) -> ((b, 1 + l, d), (b, 1 + l)); the new
    token is valid iff the first token is."""

    def __init__(self, dim: int, n_heads: int = 4):
        super().__init__()
        self.attn = MaskedMHA(dim, n_heads)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.cat([masked_mean(x, mask).unsqueeze(1), masked_fill_pads(x, mask, 1)], 1)
        m = torch.cat([mask[:, :1], mask], 1)
        token = self.attn(h[:, :1], m[:, :1], context=h, context_mask=m)
        return torch.cat([token, h[:, 1:]], 1), m


class IdentityTextEncoder(nn.Module):
    """Official ``identity`` text net (Ego4D, MAD): MaskedConv1d(in_dim -> dim, k=1) + :class:`AttnPoolToken`.
    forward(text (q, l, in_dim), mask (q, l)) -> ((q, l + 1, dim), (q, l + 1))."""

    def __init__(self, in_dim: int, dim: int, n_heads: int = 4):
        super().__init__()
        self.proj = MaskedConv1d(in_dim, dim, 1)
        self.pool = AttnPoolToken(dim, n_heads)

    def forward(self, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.pool(self.proj(text, mask)[0], mask)


class TransformerTextEncoder(nn.Module):
    """Official ``transformer`` text net (TACoS, GloVe word vectors): MaskedConv1d(in_dim -> dim, k=1) -> ``+ sinusoid
    / sqrt(dim)`` -> a learnable background token (trunc-normal std 0.02) prepended -> ``num_layers`` x
    :class:`EncoderLayer` (no qkv conv, global attention, ``n_heads`` heads, dropout / drop-path ``dropout``).
    forward(text (q, l, in_dim), mask (q, l)) -> ((q, l + 1, dim), (q, l + 1)); the token is always valid."""

    def __init__(self, in_dim: int, dim: int, num_layers: int = 5, n_heads: int = 4, max_len: int = 48,
                 dropout: float = 0.1):
        super().__init__()
        self.proj = MaskedConv1d(in_dim, dim, 1)
        self.pos = SinusoidalPositionEncoding(dim, max_len, scale=dim ** -0.5)
        self.token = nn.Parameter(torch.empty(dim))
        nn.init.trunc_normal_(self.token, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, n_heads, qkv_conv=False, dropout=dropout, drop_path=dropout)
                                    for _ in range(num_layers))

    def forward(self, text: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pos(self.proj(text, mask)[0], mask)
        x = torch.cat([self.token.expand(x.shape[0], 1, -1).to(x.dtype), x], 1)
        mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], 1)
        for layer in self.layers:
            x = layer(x, mask)
        return x, mask


# ---------------------------------------------------------------------------------------------------------------------
# cross-modal fusion
# ---------------------------------------------------------------------------------------------------------------------
class CrossAttnDecoderLayer(nn.Module):
    """SnAG ``TransformerDecoder`` (no self-attention), one layer::

        h            = MHA(q = LN(dwconv3(LN(x))), kv = LN(text))    # out width 2d
        scale, shift = h.chunk(2)
        x            = norm(x) * scale + shift                       # norm: LayerNorm w/o affine (adaln) or identity
        x            = x + LayerScale(FFN(LN(x)))                    # FFN x4 GELU, dropout; drop-path

    There is no residual around the cross-attention (as in the official code).
    forward(x (r, l, d), mask (r, l), text (r, lt, dt), text_mask (r, lt)) -> (r, l, d), 0 at pads."""

    def __init__(self, dim: int, text_dim: int, n_heads: int = 4, mode: str = "adaln", ffn_ratio: int = 4,
                 dropout: float = 0.1, drop_path: float = 0.1, layer_scale_init: float = 1e-4):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode must be one of {FUSION_MODES}, got {mode!r}")
        self.ln_q, self.ln_kv = nn.LayerNorm(dim), nn.LayerNorm(text_dim)
        self.q_conv = MaskedDepthwiseConv1d(dim, 3, bias=False, mode="same")
        self.q_norm = nn.LayerNorm(dim)
        self.xattn = MaskedMHA(dim, n_heads, kv_dim=text_dim, out_dim=2 * dim, proj_drop=dropout)
        self.adaln = nn.LayerNorm(dim, elementwise_affine=False) if mode == "adaln" else nn.Identity()
        self.ln_ffn = nn.LayerNorm(dim)
        self.ffn = mlp(dim, dim * ffn_ratio, dim, dropout)  # SnAG FFN
        self.scale_ffn = LayerScale(dim, layer_scale_init, drop_path)

    def forward(self, x: Tensor, mask: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        x = masked_fill_pads(x, mask, 1)
        q = self.q_norm(self.q_conv(self.ln_q(x).transpose(1, 2), mask).transpose(1, 2))
        scale, shift = self.xattn(q, mask, self.ln_kv(text), text_mask).chunk(2, -1)
        x = masked_fill_pads(self.adaln(x) * scale + shift, mask, 1)
        return masked_fill_pads(x + self.scale_ffn(self.ffn(self.ln_ffn(x))), mask, 1)


class XAttnFusion(nn.Module):
    """Official ``XAttNFusion``: ``num_layers`` :class:`CrossAttnDecoderLayer` then a LayerNorm.

    forward(x (r, l, d), mask (r, l), text (q, lt, dt), text_mask (q, lt), index (q,) long or None) -> (q, l, d):
    with ``index`` the video rows are first gathered per query (``x[index]``; the official ``repeat_interleave``),
    without it ``x`` already has one row per query. 0 at pads."""

    def __init__(self, dim: int, text_dim: int, num_layers: int = 2, n_heads: int = 4, mode: str = "adaln",
                 dropout: float = 0.1, drop_path: float = 0.1):
        super().__init__()
        self.layers = nn.ModuleList(CrossAttnDecoderLayer(dim, text_dim, n_heads, mode, dropout=dropout,
                                                          drop_path=drop_path) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, mask: Tensor, text: Tensor, text_mask: Tensor,
                index: Tensor | None = None) -> Tensor:
        if index is not None:
            x, mask = x[index], mask[index]
        for layer in self.layers:
            x = layer(x, mask, text, text_mask)
        return masked_fill_pads(self.norm(x), mask, 1)


class LNProjector(nn.Module):
    """ACC / SPC projection (official ``LNProjector``, 2 layers): Linear(d, d, no bias) -> LayerNorm -> GELU ->
    Linear(d, out_dim) -> L2 normalise. (..., d) -> (..., out_dim) unit vectors."""

    def __init__(self, dim: int, out_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.net(x), dim=-1)


__all__ = ["AttnPoolToken", "ConvSelfAttention", "CrossAttnDecoderLayer", "EncoderLayer", "FUSION_MODES",
           "IdentityTextEncoder", "LNProjector", "TransformerTextEncoder", "XAttnFusion"]
