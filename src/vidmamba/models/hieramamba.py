"""HieraMamba (arXiv 2510.23043): hierarchical Mamba video grounding (``reference/models.md`` §1).

This module holds the video backbone (§1.2-1.3); the text encoders, cross-modal fusion, heads, losses and the full
model are to be added below it, in that order. Read top to bottom:

1. anchor helpers: :func:`interleave_anchors` (mean-pooled anchor per window of ``s`` clips, inserted before the
   clips it summarises) and :func:`split_anchors` (its inverse on a block's output);
2. the AMP block :class:`AMPBlock` (``AnchorMambaPoolingBlockGated``): global mixer (Hydra, or masked global attention
   for the transformer twin) -> sigmoid gate -> local (windowed) transformer encoder -> sigmoid gate -> FFN;
3. :class:`HieraMambaBackbone`: embedding convs, sinusoidal PE, a stack of stride-2 AMP blocks giving the pyramid.

Tensors are channel-last (b, l, d); masks are (b, l) bool, True = valid, right-padded (a valid prefix per sample).

Deliberate differences from the official code (each keeps a padded batch equal to every sample run alone):
- masks are built per sample: the official interleaved mask is sized by a sum over the whole batch (models.md §1.3);
- an anchor is the mean of the *valid* clips of its window (official ``avg_pool1d`` divides a half-empty last window by
  ``s``, i.e. averages in a zero);
- Hydra and the local attention get the padding mask (official Hydra scans over padding);
- the position table is interpolated per sample, to the sample's own length when it exceeds ``max_seq_len`` (official:
  to the padded batch length), and its channels are interleaved sin/cos (official: all sines then all cosines, a
  fixed channel permutation).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vidmamba.models.config import ModelConfig
from vidmamba.nn import LayerScale, MaskedConv1d, MaskedMHA, SinusoidalPositionEncoding, masked_attention
from vidmamba.nn.mask import check_mask, lengths_to_mask
from vidmamba.ssm import Hydra
from vidmamba.ssm.layers import MaskedDepthwiseConv1d, RMSNorm, masked_fill_pads

MIXERS = ("hydra", "attention")


# ---------------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class HieraMambaBackboneConfig(ModelConfig):
    """Hyper-parameters of :class:`HieraMambaBackbone`; defaults are the official Ego4D-NLQ ones (models.md §1.10).

    in_dim: input width. With early fusion (Ego4D, MAD, MAD-v2) the backbone runs on the fused, already projected video,
        so the official code builds it with ``in_dim = embd_dim``; TACoS (late fusion) feeds raw C3D (4096).
    embd_dim: width D of every level.
    num_embd_convs: masked conv -> LayerNorm -> ReLU embedding layers after the 1x1 ``embd_fc`` (official ``arch[0]``).
    num_blocks: AMP blocks = pyramid levels (official ``arch[2]``).
    stride: input stride of the embedding (1, or 2 for MAD: first conv k5 s2).
    max_seq_len: length of the position table, in clips after ``stride``; longer samples use it interpolated.
    use_abs_pe: add ``sinusoid / sqrt(D)`` at valid positions.
    anchor_stride: clips per anchor window (``s``; 2 in every released config).
    d_state, d_conv, expand, headdim, chunk_size: Hydra shape (official 64, 7, 2, 64; chunk 256).
    mixer: "hydra" (HieraMamba) or "attention" (transformer twin: Hydra replaced by masked global self-attention of
        the same width with ``mixer_heads`` heads, default ``expand * D / headdim`` like Hydra's head count).
    local_window, local_window_blocks: window of the local encoder's attention in blocks ``< local_window_blocks``;
        later blocks use global attention (official ``local_window_size if idx < 5 else 0``).
    local_heads, local_ffn_ratio: the local transformer encoder (2 heads, FFN x4).
    dropout: AMP FFN dropout (official block default 0.1; not read from the config there).
    drop_path: drop-path of the block's three LayerScale residuals (LayerScale2, init ``layer_scale_init``).
    rms_eps: the block's RMSNorms (1e-6).
    """

    display_name = "HieraMamba backbone"

    in_dim: int = 384
    embd_dim: int = 384
    num_embd_convs: int = 2
    num_blocks: int = 8
    stride: int = 1
    max_seq_len: int = 2304
    use_abs_pe: bool = True
    anchor_stride: int = 2
    d_state: int = 64
    d_conv: int = 7
    expand: int = 2
    headdim: int = 64
    chunk_size: int = 256
    mixer: str = "hydra"
    mixer_heads: int | None = None
    local_window: int = 5
    local_window_blocks: int = 5
    local_heads: int = 2
    local_ffn_ratio: int = 4
    dropout: float = 0.1
    drop_path: float = 0.1
    layer_scale_init: float = 1e-4
    rms_eps: float = 1e-6

    def __post_init__(self):
        if self.mixer not in MIXERS:
            raise ValueError(f"HieraMambaBackboneConfig.mixer must be one of {MIXERS}, got {self.mixer!r}")
        if self.stride not in (1, 2):
            raise ValueError(f"HieraMambaBackboneConfig.stride must be 1 or 2, got {self.stride}")
        if self.stride == 2 and self.num_embd_convs < 1:
            raise ValueError("stride 2 needs at least one embedding conv (the first conv strides)")
        for name in ("in_dim", "embd_dim", "num_blocks", "max_seq_len", "anchor_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"HieraMambaBackboneConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.embd_dim % 2:
            raise ValueError(f"embd_dim must be even (sinusoid table), got {self.embd_dim}")
        if self.local_window < 0 or (self.local_window and self.local_window % 2 == 0):
            raise ValueError(f"local_window must be 0 (global) or odd, got {self.local_window}")

    @property
    def heads(self) -> int:
        """Heads of the twin's global attention."""
        return self.mixer_heads or max(1, self.expand * self.embd_dim // self.headdim)

    def window_size(self, block: int) -> int:
        """Local-attention window of block ``block`` (0 = global)."""
        return self.local_window if block < self.local_window_blocks else 0

    @classmethod
    def preset(cls, name: str, **overrides) -> "HieraMambaBackboneConfig":
        """The released per-dataset backbone ("ego4d", "tacos", "mad", "madv2"), with ``overrides``."""
        if name not in BACKBONE_PRESETS:
            raise KeyError(f"unknown HieraMamba preset {name!r}; known: {sorted(BACKBONE_PRESETS)}")
        return replace(cls(), **{**BACKBONE_PRESETS[name], **overrides})



BACKBONE_PRESETS: dict[str, dict] = {
    "ego4d": {},
    "tacos": {"in_dim": 4096, "embd_dim": 256},
    "mad": {"in_dim": 512, "embd_dim": 512, "num_blocks": 9, "stride": 2, "max_seq_len": 4096},
    "madv2": {"in_dim": 768, "embd_dim": 768, "num_blocks": 9, "stride": 2, "max_seq_len": 4096,
              "use_abs_pe": False},
}


# ---------------------------------------------------------------------------------------------------------------------
# anchors: pool + interleave, split
# ---------------------------------------------------------------------------------------------------------------------
def valid_lengths(mask: Tensor) -> Tensor:
    """(b,) valid lengths of a right-padded mask (b, l); raises if some sample's valid steps are not a prefix."""
    lengths = mask.sum(1)
    if not torch.equal(mask, lengths_to_mask(lengths, mask.shape[1])):
        raise ValueError("masks must be right-padded (each sample's valid steps a prefix)")
    return lengths


def interleave_anchors(x: Tensor, mask: Tensor, stride: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """Insert one anchor before every window of ``stride`` clips: ``[a0, x0, x1, a1, x2, x3, ...]``.

    x (b, l, d), mask (b, l) -> (x_c (b, n*(stride+1), d), mask_c (b, n*(stride+1)), anchor_mask (b, n)) with
    ``n = ceil(l / stride)``. Anchor ``a_i`` is the mean of the valid clips of window i (0 where it has none) and is
    valid iff one of them is; clip positions keep their own validity. Pads of ``x`` may hold anything (NaN too); x_c
    is 0 at every invalid position. A right-padded mask gives a right-padded ``mask_c`` (``T + ceil(T/stride)``
    valid steps for T valid clips), so a padded batch interleaves as each sample alone.
    """
    b, l, d = x.shape
    n = -(-l // stride)
    pad = n * stride - l
    windows = F.pad(masked_fill_pads(x, mask, 1), (0, 0, 0, pad)).view(b, n, stride, d)
    wmask = F.pad(mask, (0, pad), value=False).view(b, n, stride)
    count = wmask.sum(-1, keepdim=True).clamp(min=1).to(x.dtype)
    anchors = windows.sum(2) / count                                                    # (b, n, d)
    anchor_mask = wmask.any(-1)
    x_c = torch.cat([anchors.unsqueeze(2), windows], 2).flatten(1, 2)
    mask_c = torch.cat([anchor_mask.unsqueeze(2), wmask], 2).flatten(1, 2)
    return x_c, mask_c, anchor_mask


def split_anchors(y: Tensor, length: int, stride: int = 2) -> tuple[Tensor, Tensor]:
    """Inverse layout of :func:`interleave_anchors`.

    y (b, n*(stride+1), d) -> (anchors (b, n, d), clips (b, length, d))."""
    groups = y.unflatten(1, (-1, stride + 1))
    return groups[:, :, 0], groups[:, :, 1:].flatten(1, 2)[:, :length]


# ---------------------------------------------------------------------------------------------------------------------
# AMP block
# ---------------------------------------------------------------------------------------------------------------------
class ConvSelfAttention(MaskedMHA):
    """SnAG's ``ConvAttNLayer`` (stride 1): q, k and v each go through their own depthwise conv k=3 (no bias) and a
    LayerNorm before the projections of :class:`MaskedMHA`; then masked (windowed or global) self-attention.
    forward(x (b, l, d), mask (b, l)) -> (b, l, d), 0 at pads."""

    def __init__(self, dim: int, n_heads: int, window_size: int = 0):
        super().__init__(dim, n_heads, window_size)
        self.convs = nn.ModuleList(MaskedDepthwiseConv1d(dim, 3, bias=False, mode="same") for _ in range(3))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(3))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        xt = masked_fill_pads(x, mask, 1).transpose(1, 2)
        q, k, v = (norm(conv(xt, mask).transpose(1, 2)) for conv, norm in zip(self.convs, self.norms))
        out = masked_attention(self._heads(self.q(q)), self._heads(self.k(k)), self._heads(self.v(v)), mask,
                               self.window_size, self.attn_drop, self.training)
        return masked_fill_pads(self.proj_drop(self.proj(out.transpose(1, 2).flatten(2))), mask, 1)


class LocalEncoder(nn.Module):
    """SnAG's pre-LN ``TransformerEncoder`` (stride 1), the AMP block's local encoder:
    ``x + LayerScale(ConvSelfAttention(LN(x)))`` then ``x + LayerScale(FFN(LN(x)))`` (FFN: ``ffn_ratio`` x, GELU),
    LayerScale init 1e-4 without drop-path. forward(x (b, l, d), mask) -> (b, l, d), 0 at pads."""

    def __init__(self, dim: int, n_heads: int, window_size: int, ffn_ratio: int = 4, layer_scale_init: float = 1e-4):
        super().__init__()
        self.ln_attn, self.ln_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = ConvSelfAttention(dim, n_heads, window_size)
        self.ffn = nn.Sequential(nn.Linear(dim, dim * ffn_ratio), nn.GELU(), nn.Linear(dim * ffn_ratio, dim))
        self.scale_attn = LayerScale(dim, layer_scale_init)
        self.scale_ffn = LayerScale(dim, layer_scale_init)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = masked_fill_pads(x, mask, 1)
        x = x + self.scale_attn(self.attn(self.ln_attn(x), mask))
        return masked_fill_pads(x + self.scale_ffn(self.ffn(self.ln_ffn(x))), mask, 1)


class SigmoidGate(nn.Module):
    """``s = sigmoid(Linear(2d -> d)([a; b]))``, returns ``s * b + (1 - s) * a`` (the AMP block's gated residual)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        s = torch.sigmoid(self.proj(torch.cat([a, b], -1)))
        return s * b + (1 - s) * a


def build_mixer(cfg: HieraMambaBackboneConfig) -> nn.Module:
    """The block's global sequence mixer, ``forward(x (b, l, d), mask (b, l))``: Hydra, or the twin's attention."""
    if cfg.mixer == "hydra":
        return Hydra(cfg.embd_dim, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, headdim=cfg.headdim,
                     chunk_size=cfg.chunk_size)
    return MaskedMHA(cfg.embd_dim, cfg.heads)


class AMPBlock(nn.Module):
    """Anchor Mamba Pooling block, gated (official ``AnchorMambaPoolingBlockGated``, models.md §1.3), stride ``s``.

    forward(x (b, l, d), mask (b, l)) -> (anchors (b, ceil(l/s), d), anchor_mask, clips (b, l, d), mask):

        x_c   = interleave_anchors(x)                          # [a0, x0, x1, a1, ...], anchors = window means
        g     = x_c + LayerScale2(mixer(RMSNorm(x_c)))         # Hydra (or global attention for the twin)
        f1    = gate1(x_c, g)                                  # sigmoid gate instead of a plain residual
        l     = f1 + LayerScale2(LocalEncoder(RMSNorm(f1)))    # window-``window_size`` attention (0 = global)
        fused = gate2(f1, l)
        out   = fused + LayerScale2(FFN(RMSNorm(fused)))       # FFN: Linear(d, d) -> GELU -> Dropout
        anchors, clips = split_anchors(out)

    Every stage is zeroed at padded positions, and the mixer and the attention get the interleaved per-sample mask.
    """

    def __init__(self, cfg: HieraMambaBackboneConfig, window_size: int):
        super().__init__()
        d = cfg.embd_dim
        self.stride, self.window_size = cfg.anchor_stride, window_size
        self.norm_global, self.norm_local, self.norm_ffn = (RMSNorm(d, eps=cfg.rms_eps) for _ in range(3))
        self.mixer = build_mixer(cfg)
        self.local = LocalEncoder(d, cfg.local_heads, window_size, cfg.local_ffn_ratio, cfg.layer_scale_init)
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(cfg.dropout))
        self.scale_global, self.scale_local, self.scale_ffn = (
            LayerScale(d, cfg.layer_scale_init, cfg.drop_path) for _ in range(3))
        self.gate_global, self.gate_local = SigmoidGate(d), SigmoidGate(d)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        x_c, m, anchor_mask = interleave_anchors(x, mask, self.stride)
        g = masked_fill_pads(x_c + self.scale_global(self.mixer(self.norm_global(x_c), m)), m, 1)
        f1 = self.gate_global(x_c, g)
        loc = masked_fill_pads(f1 + self.scale_local(self.local(self.norm_local(f1), m)), m, 1)
        fused = self.gate_local(f1, loc)
        out = masked_fill_pads(fused + self.scale_ffn(self.ffn(self.norm_ffn(fused))), m, 1)
        anchors, clips = split_anchors(out, x.shape[1], self.stride)
        return anchors, anchor_mask, clips, mask


# ---------------------------------------------------------------------------------------------------------------------
# video backbone
# ---------------------------------------------------------------------------------------------------------------------
class BackboneOutput(NamedTuple):
    """The pyramid: ``feats[i]`` (b, l_i, d) = clip outputs of block i, ``masks[i]`` (b, l_i); ``anchors[i]``
    (b, l_{i+1}, d) = block i's anchor outputs (input of block i+1; used by the ACC loss), ``anchor_masks[i]``."""
    feats: list[Tensor]
    masks: list[Tensor]
    anchors: list[Tensor]
    anchor_masks: list[Tensor]


class HieraMambaBackbone(nn.Module):
    """HieraMamba video backbone (official ``HieraMambaBackbone``, models.md §1.2).

    ``embd_fc`` (masked 1x1 conv in_dim -> D) -> ``num_embd_convs`` x [masked conv (no bias) -> LayerNorm -> ReLU]
    (the first k5 s2 when ``stride == 2``, else k3) -> ``+ sinusoid / sqrt(D)`` at valid positions -> ``num_blocks``
    AMP blocks of stride 2; block 0 takes the embedded clips, block i > 0 the anchors of block i - 1. Level i has
    ``ceil(T / 2^i)`` valid steps for a sample of T (embedded) clips. Linear / Conv1d biases start at 0.

    forward(x (b, T, in_dim), mask (b, T) or None) -> (feats, masks); :meth:`encode` also returns the anchors.
    """

    def __init__(self, cfg: HieraMambaBackboneConfig | None = None, **overrides):
        super().__init__()
        cfg = replace(cfg or HieraMambaBackboneConfig(), **overrides)
        self.cfg = cfg
        d = cfg.embd_dim
        self.embd_fc = MaskedConv1d(cfg.in_dim, d, 1)
        self.embd_convs = nn.ModuleList(
            MaskedConv1d(d, d, 5, 2, bias=False) if (i == 0 and cfg.stride == 2) else MaskedConv1d(d, d, 3, bias=False)
            for i in range(cfg.num_embd_convs))
        self.embd_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(cfg.num_embd_convs))
        self.pos = SinusoidalPositionEncoding(d, cfg.max_seq_len, scale=d ** -0.5) if cfg.use_abs_pe else None
        self.blocks = nn.ModuleList(AMPBlock(cfg, cfg.window_size(i)) for i in range(cfg.num_blocks))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def position_encoding(self, x: Tensor, lengths: Tensor) -> Tensor:
        """Add the position table at each sample's valid steps, interpolated to its own length past max_seq_len."""
        pe = torch.zeros_like(x)
        for n in lengths.unique().tolist():
            if n:
                pe[lengths == n, :n] = self.pos.encoding(n).to(x.dtype)
        return x + pe

    def embed(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (b, T, in_dim), mask (b, T) -> (b, T', D), (b, T') with T' = ceil(T / stride); 0 at pads."""
        x, mask = self.embd_fc(x, mask)
        for conv, norm in zip(self.embd_convs, self.embd_norms):
            x, mask = conv(x, mask)
            x = masked_fill_pads(F.relu(norm(x)), mask, 1)
        if self.pos is not None:
            x = self.position_encoding(x, mask.sum(1))
        return x, mask

    def encode(self, x: Tensor, mask: Tensor | None = None) -> BackboneOutput:
        """The full pyramid with anchors (see :class:`BackboneOutput`)."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        check_mask(mask, x.shape[:2])
        valid_lengths(mask)
        x, mask = self.embed(x, mask)
        out = BackboneOutput([], [], [], [])
        for block in self.blocks:
            x, anchor_mask, clips, clip_mask = block(x, mask)
            out.feats.append(clips)
            out.masks.append(clip_mask)
            out.anchors.append(x)
            out.anchor_masks.append(anchor_mask)
            mask = anchor_mask
        return out

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """x (b, T, in_dim), mask (b, T) -> ([(b, l_i, D)] * num_blocks, [(b, l_i)] * num_blocks)."""
        out = self.encode(x, mask)
        return out.feats, out.masks

    @property
    def num_levels(self) -> int:
        return len(self.blocks)

    def total_stride(self) -> int:
        """Input clips per step of the coarsest level."""
        return self.cfg.stride * self.cfg.anchor_stride ** (self.num_levels - 1)


__all__ = ["AMPBlock", "BACKBONE_PRESETS", "BackboneOutput", "ConvSelfAttention", "HieraMambaBackbone",
           "HieraMambaBackboneConfig", "LocalEncoder", "MIXERS", "SigmoidGate", "build_mixer", "interleave_anchors",
           "split_anchors", "valid_lengths"]
