"""HieraMamba (arXiv 2510.23043): hierarchical Mamba video grounding (official code: ``jbistanbul/hieramamba``).

Read top to bottom (the transformer pieces, text encoders and fusion are in :mod:`.hieramamba_blocks`; point targets
and decoding in :mod:`vidmamba.nn.points`; ACC / SPC in :mod:`vidmamba.nn.detection_losses`):

1. anchor helpers: :func:`interleave_anchors` (mean-pooled anchor per window of ``s`` clips, inserted before the
   clips it summarises) and :func:`split_anchors` (its inverse on a block's output);
2. the AMP block :class:`AMPBlock` (``AnchorMambaPoolingBlockGated``): global mixer (Hydra, or masked global attention
   for the transformer twin) -> sigmoid gate -> local (windowed) transformer encoder -> sigmoid gate -> FFN;
3. :class:`HieraMambaBackbone`: embedding convs, sinusoidal PE, a stack of stride-2 AMP blocks giving the pyramid;
4. :class:`HieraMamba` (config :class:`HieraMambaConfig`, presets ``MODEL_PRESETS``): text encoder -> (early fusion:
   1x1 projection -> fusion ->) backbone -> fusion on every level -> shared cls / reg heads; losses (focal, IoU/DIoU,
   ACC, SPC, EMA normaliser) accounted as the official trainer (or per query); decoding by Gaussian soft-NMS + voting,
   in grid units.

Tensors are channel-last (b, l, d); masks are (b, l) bool, True = valid, right-padded (a valid prefix per sample).

Deliberate differences from the official code (each keeps a padded batch equal to every sample run alone):
- masks are built per sample: the official interleaved mask is sized by a sum over the whole batch (``anchor_mamba.py``);
- an anchor is the mean of the *valid* clips of its window (official ``avg_pool1d`` divides a half-empty last window by
  ``s``, i.e. averages in a zero);
- Hydra and the local attention get the padding mask (official Hydra scans over padding);
- the position table is interpolated per sample (``align_corners=True`` as official), to the sample's own length when
  it exceeds ``max_seq_len`` (official: to the padded batch length), and its channels are interleaved sin/cos
  (official: all sines then all cosines, a fixed channel permutation);
- ACC's negative gap is a fraction of the sample's own anchor count (official: of the padded batch length).
Every departure, with the value that restores the official behaviour where one exists: ``docs/departures.md``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from vidmamba.models.config import ModelConfig
from vidmamba.models.hieramamba_blocks import (FUSION_MODES, ConvSelfAttention, EncoderLayer, IdentityTextEncoder,
                                               LNProjector, TransformerTextEncoder, XAttnFusion)
from vidmamba.nn import (DenseGroundingHead, LayerScale, MaskedConv1d, MaskedMHA, SinusoidalPositionEncoding,
                         ctr_diou_loss, ctr_iou_loss, sigmoid_focal_loss)
from vidmamba.nn.detection_losses import LossNormalizer, anchor_contrastive_loss, segment_prototype_loss
from vidmamba.nn.points import assign_points, decode_points, level_slices, pyramid_points, regression_ranges, span_mask
from vidmamba.nn.mask import check_mask, lengths_to_mask
from vidmamba.ssm import Hydra
from vidmamba.ssm.layers import RMSNorm, masked_fill_pads

MIXERS = ("hydra", "attention")


# ---------------------------------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class HieraMambaBackboneConfig(ModelConfig):
    """Hyper-parameters of :class:`HieraMambaBackbone`; defaults are the official Ego4D-NLQ ones (``opts/ego4d*.yaml``).

    in_dim: input width. With early fusion (Ego4D, MAD, MAD-v2) the backbone runs on the fused, already projected video,
        so the official code builds it with ``in_dim = embd_dim``; TACoS (late fusion) feeds raw C3D (4096).
    embd_dim: width D of every level.
    num_embd_convs: masked conv -> LayerNorm -> ReLU embedding layers after the 1x1 ``embd_fc`` (official ``arch[0]``).
    num_blocks: AMP blocks = pyramid levels (official ``arch[2]``).
    stride: input stride of the embedding (1, or 2 for MAD: first conv k5 s2).
    max_seq_len: length of the position table, in clips after ``stride``; longer samples use it interpolated.
    use_abs_pe: add ``sinusoid / sqrt(D)`` at valid positions.
    anchor_stride: clips per anchor window (``s``; 2 in every released config).
    d_state, d_conv, expand, headdim, chunk_size: Hydra shape (official 64, 7, 2, 64). The SSD chunk is a tiling choice
        that changes only rounding (official 256, a GPU kernel tile); 64 is the fastest measured on CPU
        (``benchmarks/profile_inference.py``).
    mixer: "hydra" (HieraMamba) or "attention" (transformer twin: Hydra replaced by masked global self-attention of
        the same width with ``mixer_heads`` heads, default ``expand * D / headdim`` like Hydra's head count).
    local_window, local_window_blocks: window of the local encoder's attention in blocks ``< local_window_blocks``;
        later blocks use global attention (official ``local_window_size if idx < 5 else 0``).
    local_heads, local_ffn_ratio: the local transformer encoder (2 heads, FFN x4).
    hydra_weight_decay: Hydra's ``A_log`` and ``D`` take weight decay, as the official optimiser
        (``libs/modeling/optim.py``: ``elif pn in ['A_log', 'D']: decay.add(fpn)``); False: mamba_ssm's convention
        (no decay on them).
    dropout: AMP FFN dropout (official block default 0.1; not read from the config there).
    drop_path: drop-path of the block's three LayerScale residuals (LayerScale2, init ``layer_scale_init``).
    rms_eps: the block's RMSNorms (1e-6).
    """

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
    chunk_size: int = 64
    mixer: str = "hydra"
    mixer_heads: int | None = None
    local_window: int = 5
    local_window_blocks: int = 5
    local_heads: int = 2
    local_ffn_ratio: int = 4
    hydra_weight_decay: bool = True
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
    """Anchor Mamba Pooling block, gated (official ``AnchorMambaPoolingBlockGated``, ``anchor_mamba.py``), stride ``s``.

    forward(x (b, l, d), mask (b, l)) -> (anchors (b, ceil(l/s), d), anchor_mask, clips (b, l, d), mask):

        x_c   = interleave_anchors(x)                          # [a0, x0, x1, a1, ...], anchors = window means
        g     = x_c + LayerScale2(mixer(RMSNorm(x_c)))         # Hydra (or global attention for the twin)
        f1    = gate1(x_c, g)                                  # sigmoid gate instead of a plain residual
        l     = f1 + LayerScale2(EncoderLayer(RMSNorm(f1)))    # window-``window_size`` attention (0 = global)
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
        self.local = EncoderLayer(d, cfg.local_heads, window_size, cfg.local_ffn_ratio, cfg.layer_scale_init)
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
    """HieraMamba video backbone (official ``HieraMambaBackbone``, ``video_net.py``).

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
        # official video_net.py: F.interpolate(pe, size=t, mode='linear', align_corners=True) past max_seq_len
        self.pos = (SinusoidalPositionEncoding(d, cfg.max_seq_len, scale=d ** -0.5, align_corners=True)
                    if cfg.use_abs_pe else None)
        self.blocks = nn.ModuleList(AMPBlock(cfg, cfg.window_size(i)) for i in range(cfg.num_blocks))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, Hydra):
                for param in (module.A_log, module.D):
                    param._no_weight_decay = not cfg.hydra_weight_decay

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


# ---------------------------------------------------------------------------------------------------------------------
# the full model
# ---------------------------------------------------------------------------------------------------------------------
TEXT_ENCODERS = ("identity", "transformer")
REG_LOSSES = {"iou": ctr_iou_loss, "diou": ctr_diou_loss}
LOSS_NORMALIZATIONS = ("official", "per_query")


@dataclass
class HieraMambaConfig(HieraMambaBackboneConfig):
    """Hyper-parameters of :class:`HieraMamba`: every :class:`HieraMambaBackboneConfig` field (same names, same
    meaning) plus the fields below. Defaults are the official Ego4D-NLQ ones; :meth:`preset` gives "ego4d", "mad",
    "madv2", "tacos" (official ``opts/*.yaml``), e.g. ``create_model("hieramamba", preset="tacos", video_dim=..., ...)``.

    video_dim, text_dim: input feature widths (Ego4D EgoVLP 256 / 768; MAD CLIP 512 / 512; TACoS C3D 4096 / GloVe 300).
    in_dim: derived, leave unset: ``embd_dim`` with early fusion (the backbone runs on the projected, fused video),
        else ``video_dim``.
    text_encoder: "identity" (1x1 conv + attention-pooled background token; Ego4D, MAD) or "transformer" (TACoS:
        word vectors -> conv, sinusoids, learnable background token, ``text_layers`` encoder layers of
        ``text_heads`` heads, dropout ``text_dropout``).
    text_embd_dim: text width after the encoder (768 Ego4D, 512 MAD, 128 TACoS); the fusion's key/value width.
    max_text_len: tokens kept per query (24 Ego4D, 75 MAD, 48 TACoS); longer queries are truncated with a warning.
    early_fusion: True (Ego4D, MAD): 1x1 projection -> fusion -> backbone on per-query video -> fusion again (same
        weights) on every level. False (TACoS): backbone on the raw video, fusion per level.
    fusion_mode: "adaln" (LayerNorm without affine, then text-conditioned scale/shift; Ego4D, MAD) or "affine"
        (scale/shift of the raw features; TACoS). fusion_layers, fusion_heads: 2 decoder layers of 4 heads.
    fusion_dropout, fusion_drop_path: FFN / projection dropout and LayerScale drop-path of the fusion (0.1, 0.1).
    head_layers, head_kernel: cls / reg conv heads (3 layers, k 3, LayerNorm), shared by all levels, a learnable
        Scale per level on the regression; offsets ReLU'd, in units of the level stride.
    regression_range, regression_sigma: point ranges (0, 4), (2, 8), (4, 16), ..., the last one's max raised to
        ``max_seq_len + 1`` (see ``nn.points``). With one level, (0, regression_range) only, as the official
        ``PtGenerator``: longer events get no positive point (training warns); raise regression_range.
    center_radius: centre sampling radius in level strides (1.5).
    focal_alpha, focal_gamma, label_smoothing: sigmoid focal loss (0.5, 2, targets ``0.8 y + 0.1``).
    reg_loss: "iou" (Ego4D) or "diou" (MAD, TACoS), on centre offsets; w_reg its weight (1).
    loss_normalization: how the terms are combined (below): "official" (default) or "per_query".
    loss_norm_init, loss_norm_momentum: the normaliser, an EMA (0.9) of the number of positive points; its initial
        value (official: 10 Ego4D, 250 MAD / MAD-v2, 100 TACoS, per batch; with "per_query" the EMA counts per query,
        so divide by the queries per batch: Ego4D 10/2, MAD 250/16, TACoS 100/16).
    w_acc, acc_neg_ratio, acc_gap_ratio: ACC weight (0 disables it and its projector), negatives per positive,
        negative gap as a fraction of the sample's anchors (Ego4D 100, 8, 0.2; TACoS 10, 4, 0.3; MAD off).
    w_spc, spc_neg_ratio: SPC weight (0 disables) and negatives per positive (Ego4D 10, 1; TACoS 1, 1; MAD off).
    contrast_tau, proj_dim: InfoNCE temperature (0.07) and projector width (256) of ACC and SPC.
    train_projectors: the ACC / SPC projectors learn (default). False: they stay at their random initialisation, as
        in the official trainer, whose optimiser is built before the loss modules create them (``libs/worker.py``:
        ``TrainerOriginal.__init__`` builds it, ``TrainerAuxiliary.__init__`` then adds the projectors).
    pre_nms_thresh, pre_nms_topk, seg_len_thresh: decoding filters (0.001; 2000, MAD 200; 0.1 grid units).
    nms_sigma, voting_thresh, min_score, max_num_segs: Gaussian soft-NMS (0.9), voting IoU (0.95), score floor
        (0.001), detections per query (5; MAD 50).

    Loss accounting, ``loss = cls + w_reg reg + w_acc ACC + w_spc SPC``, with ``N`` the normaliser (an EMA of the
    positive points per batch; a training forward uses the value from before its own update, as the official
    trainer, ``libs/worker.py`` ``TrainerAuxiliary``):

    - "official": cls = focal loss summed over every valid point of every query / N; reg = summed over the positive
      points / N; ACC = per level the mean over all valid anchors of the batch's backbone rows, summed over levels,
      / N (late fusion: times the mean number of queries per video, as ``ds_contrastive_loss *=
      text_size.float().mean()``); SPC = per level the mean over the (query) rows that have positives and negatives,
      summed over levels, / N. ACC / SPC are thus averages while cls / reg are sums over the batch.
    - "per_query" (this project's earlier accounting): every term per query, N an EMA of positives *per query*, and
      ``loss`` the mean over queries of ``(cls + w_reg reg + w_acc ACC + w_spc SPC) / N``, so a padded batch gives the
      mean of its videos' losses. Compared with "official" this multiplies the weight of SPC by the queries per
      batch and that of ACC by the backbone rows per batch (queries with early fusion, videos with late fusion):
      Ego4D (1 video x 2 queries) 2 and 2; TACoS (4 videos x 4 queries) 16 for SPC and 4 for ACC. With "per_query"
      divide w_spc / w_acc by those factors for the official balance. An SPC (query, level) pair without positives
      or negatives counts 0 there.
    """

    in_dim: int | None = None
    video_dim: int = 256
    text_dim: int = 768
    text_encoder: str = "identity"
    text_embd_dim: int = 768
    text_layers: int = 5
    text_heads: int = 4
    text_dropout: float = 0.1
    max_text_len: int = 24
    early_fusion: bool = True
    fusion_mode: str = "adaln"
    fusion_layers: int = 2
    fusion_heads: int = 4
    fusion_dropout: float = 0.1
    fusion_drop_path: float = 0.1
    head_layers: int = 3
    head_kernel: int = 3
    regression_range: float = 4.0
    regression_sigma: float = 0.5
    center_radius: float = 1.5
    focal_alpha: float = 0.5
    focal_gamma: float = 2.0
    label_smoothing: float = 0.2
    reg_loss: str = "iou"
    w_reg: float = 1.0
    loss_normalization: str = "official"
    loss_norm_init: float = 10.0
    loss_norm_momentum: float = 0.9
    w_acc: float = 100.0
    acc_neg_ratio: float = 8.0
    acc_gap_ratio: float = 0.2
    w_spc: float = 10.0
    spc_neg_ratio: float = 1.0
    contrast_tau: float = 0.07
    proj_dim: int = 256
    train_projectors: bool = True
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    seg_len_thresh: float = 0.1
    nms_sigma: float = 0.9
    voting_thresh: float = 0.95
    min_score: float = 0.001
    max_num_segs: int = 5

    def __post_init__(self):
        derived = self.embd_dim if self.early_fusion else self.video_dim
        if self.in_dim is not None and self.in_dim != derived:
            raise ValueError(f"HieraMambaConfig.in_dim is derived ({derived}: embd_dim with early fusion, else "
                             f"video_dim); got {self.in_dim}. Leave it unset.")
        self.in_dim = derived
        super().__post_init__()
        if self.anchor_stride != 2:
            raise ValueError(f"HieraMamba's point pyramid needs anchor_stride 2, got {self.anchor_stride}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"HieraMambaConfig.text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}")
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f"HieraMambaConfig.fusion_mode must be one of {FUSION_MODES}, got {self.fusion_mode!r}")
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(f"HieraMambaConfig.loss_normalization must be one of {LOSS_NORMALIZATIONS}, got "
                             f"{self.loss_normalization!r}")
        if self.reg_loss not in REG_LOSSES:
            raise ValueError(f"HieraMambaConfig.reg_loss must be one of {sorted(REG_LOSSES)}, got {self.reg_loss!r}")
        for name in ("video_dim", "text_dim", "text_embd_dim", "max_text_len", "max_num_segs", "pre_nms_topk"):
            if getattr(self, name) < 1:
                raise ValueError(f"HieraMambaConfig.{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """The fields without the derived ``in_dim`` (so ``from_dict(to_dict() | overrides)`` re-derives it)."""
        out = super().to_dict()
        out.pop("in_dim")
        return out

    def backbone_config(self) -> HieraMambaBackboneConfig:
        """The backbone's fields of this config."""
        return HieraMambaBackboneConfig(**{f.name: getattr(self, f.name) for f in fields(HieraMambaBackboneConfig)})

    @classmethod
    def preset(cls, name: str, **overrides) -> "HieraMambaConfig":  # type: ignore[override]
        """The released per-dataset model ("ego4d", "mad", "madv2", "tacos") with ``overrides``."""
        if name not in MODEL_PRESETS:
            raise KeyError(f"unknown HieraMamba preset {name!r}; known: {sorted(MODEL_PRESETS)}")
        return cls.from_dict({**MODEL_PRESETS[name], **overrides})


def _backbone_preset(name: str) -> dict:
    """A backbone preset without its ``in_dim`` (derived in :class:`HieraMambaConfig`)."""
    return {k: v for k, v in BACKBONE_PRESETS[name].items() if k != "in_dim"}


_MAD = {"video_dim": 512, "text_dim": 512, "text_embd_dim": 512, "max_text_len": 75, "reg_loss": "diou",
        "loss_norm_init": 250.0, "w_acc": 0.0, "w_spc": 0.0, "pre_nms_topk": 200, "max_num_segs": 50}
MODEL_PRESETS: dict[str, dict] = {
    "ego4d": {},
    "mad": {**_backbone_preset("mad"), **_MAD},
    "madv2": {**_backbone_preset("madv2"), **_MAD, "video_dim": 768, "text_dim": 768, "text_embd_dim": 768},
    "tacos": {**_backbone_preset("tacos"), "video_dim": 4096, "text_dim": 300, "text_encoder": "transformer",
              "text_embd_dim": 128, "max_text_len": 48, "early_fusion": False, "fusion_mode": "affine",
              "reg_loss": "diou", "loss_norm_init": 100.0, "w_acc": 10.0, "acc_neg_ratio": 4.0,
              "acc_gap_ratio": 0.3, "w_spc": 1.0},
}


def build_text_encoder(cfg: HieraMambaConfig) -> nn.Module:
    """The query's text net, ``forward(text (q, l, text_dim), mask (q, l)) -> ((q, l + 1, text_embd_dim), mask)``."""
    if cfg.text_encoder == "identity":
        return IdentityTextEncoder(cfg.text_dim, cfg.text_embd_dim, cfg.text_heads)
    return TransformerTextEncoder(cfg.text_dim, cfg.text_embd_dim, cfg.text_layers, cfg.text_heads, cfg.max_text_len,
                                  cfg.text_dropout)


def build_fusion(cfg: HieraMambaConfig) -> XAttnFusion:
    """The query-to-video fusion (``embd_dim`` clips attend to ``text_embd_dim`` tokens)."""
    return XAttnFusion(cfg.embd_dim, cfg.text_embd_dim, cfg.fusion_layers, cfg.fusion_heads, cfg.fusion_mode,
                       cfg.fusion_dropout, cfg.fusion_drop_path)


class EncodedBatch(NamedTuple):
    """What :meth:`HieraMamba.encode` returns. ``logits[i]`` (q, l_i), ``offsets[i]`` (q, l_i, 2) and ``masks[i]``
    (q, l_i) per level and query; ``backbone`` the backbone pyramid with ``rows`` (q,) its row for each query (the
    query itself with early fusion, the query's video without)."""
    logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    backbone: BackboneOutput
    rows: Tensor


def grid_timing(batch: dict) -> tuple[list[float], list[float], list[float]]:
    """Per video of a SnAG batch: (seconds per grid step, seconds of grid point 0, duration) from the optional batch
    lists ``clip_length`` / ``clip_offset`` / ``duration`` (defaults 1 / 0 / no end: grid units)."""
    n_videos = batch["video"].shape[0]

    def per_video(key, default):
        values = batch.get(key)
        return [float(v) for v in values] if values is not None else [default] * n_videos

    return per_video("clip_length", 1.0), per_video("clip_offset", 0.0), per_video("duration", float("inf"))


class HieraMamba(nn.Module):
    """HieraMamba video grounding model (official ``HieraMamba``, ``libs/modeling``), per-sample masks throughout.

    Batch (``vidmamba.data.snag.SnagDataset.collate``): ``video`` (B, T, video_dim), ``video_mask`` (B, T) bool,
    ``text`` (Q, L, text_dim), ``text_mask`` (Q, L), ``query_index`` (Q,) video of each query, ``segments_grid``
    (Q, 2) ground truth in level-0 grid units (clips after ``stride``: the dataset's ``vid_stride`` must equal
    ``stride``), optional ``text_ids`` (names in messages), optional ``negative`` (Q,) bool: queries whose truth
    lies outside the video window (``data.negative_queries``), trained as all-background (their segments are
    ignored).

    - ``model(batch)`` -> ``{"loss", "loss_cls", "loss_reg", "loss_acc", "loss_spc"}`` scalars (see
      :class:`HieraMambaConfig` for the accounting); in training mode it also updates the loss normaliser.
    - ``model.predict(batch)`` -> one dict per query (batch order), the grounding contract of
      :mod:`vidmamba.models`: ``pred_relevant_windows`` ``[[start, end, score], ...]`` score descending (empty when
      nothing survives) and ``pred_saliency_scores`` (the finest level's foreground probability per grid step).
      Times: grid point g is at ``g * clip_length + clip_offset`` seconds, clamped to ``[0, duration]``, with the
      optional per-video batch lists ``clip_length`` / ``clip_offset`` / ``duration`` (default 1 / 0 / no clamp:
      grid units); :meth:`detect` gives the raw (K, 3) grid detections.
    """

    batch_format = "snag"  # the batches it takes (models/__init__.py: the formats and their datasets)

    def __init__(self, cfg: HieraMambaConfig | None = None, **overrides):
        super().__init__()
        cfg = HieraMambaConfig.resolve(cfg, overrides)
        self.cfg = cfg
        d = cfg.embd_dim
        self.text_net = build_text_encoder(cfg)
        self.vid_proj = MaskedConv1d(cfg.video_dim, d, 1) if cfg.early_fusion else None
        self.backbone = HieraMambaBackbone(cfg.backbone_config())
        self.fusion = build_fusion(cfg)
        self.head = DenseGroundingHead(d, num_layers=cfg.head_layers, kernel_size=cfg.head_kernel, with_ln=True,
                                       num_levels=cfg.num_blocks, offset_act="relu", use_scale=True)
        for m in self.head.modules():
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                nn.init.zeros_(m.bias)
        self.acc_proj = LNProjector(d, cfg.proj_dim) if cfg.w_acc > 0 else None
        self.spc_proj = LNProjector(d, cfg.proj_dim) if cfg.w_spc > 0 else None
        for proj in (self.acc_proj, self.spc_proj):
            if proj is not None:
                proj.requires_grad_(cfg.train_projectors)
        self.loss_norm = LossNormalizer(cfg.loss_norm_init, cfg.loss_norm_momentum)
        self.ranges = regression_ranges(cfg.num_blocks, cfg.regression_range, cfg.regression_sigma, cfg.max_seq_len)

    # -- inputs --------------------------------------------------------------------------------------------------
    def _inputs(self, batch: dict) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Validated ``(video, video_mask, text, text_mask, query_index)``; over-long queries truncated (warning)."""
        cfg = self.cfg
        for key in ("video", "video_mask", "text", "text_mask", "query_index"):
            if key not in batch:
                raise KeyError(f"HieraMamba batch has no {key!r} (expected the SnagDataset.collate keys)")
        video, vmask, text, tmask, qidx = (batch[k] for k in ("video", "video_mask", "text", "text_mask",
                                                                "query_index"))
        if video.dim() != 3 or video.shape[-1] != cfg.video_dim:
            raise ValueError(f"batch 'video' must be (B, T, {cfg.video_dim}), got {tuple(video.shape)}")
        if text.dim() != 3 or text.shape[-1] != cfg.text_dim:
            raise ValueError(f"batch 'text' must be (Q, L, {cfg.text_dim}), got {tuple(text.shape)}")
        check_mask(vmask, video.shape[:2], "video_mask")
        check_mask(tmask, text.shape[:2], "text_mask")
        names = batch.get("vid") or [str(i) for i in range(video.shape[0])]
        text_ids = batch.get("text_ids") or [f"query {i}" for i in range(text.shape[0])]
        empty_videos = (~vmask.any(1)).nonzero().flatten().tolist()
        if empty_videos:
            raise ValueError(f"video(s) {[names[i] for i in empty_videos]} have no valid clip (zero-length video)")
        empty_texts = (~tmask.any(1)).nonzero().flatten().tolist()
        if empty_texts:
            raise ValueError(f"query/queries {[text_ids[i] for i in empty_texts]} have no valid token (empty query)")
        if qidx.shape != (text.shape[0],) or (qidx.numel() and (qidx.min() < 0 or qidx.max() >= video.shape[0])):
            raise ValueError(f"query_index must be (Q,) = ({text.shape[0]},) with values in [0, {video.shape[0]}), "
                             f"got {qidx.tolist()}")
        if text.shape[1] > cfg.max_text_len:
            long = tmask[:, cfg.max_text_len:].any(1).nonzero().flatten().tolist()
            if long:
                warnings.warn(f"queries {[text_ids[i] for i in long]} have more than max_text_len = "
                              f"{cfg.max_text_len} tokens; truncated", stacklevel=3)
            text, tmask = text[:, :cfg.max_text_len], tmask[:, :cfg.max_text_len]
        return video, vmask, text, tmask, qidx.to(video.device)

    def encode(self, batch: dict) -> EncodedBatch:
        """Text encoder, (early fusion,) backbone, fusion per level, heads: see :class:`EncodedBatch`."""
        video, vmask, text, tmask, qidx = self._inputs(batch)
        text, tmask = self.text_net(text, tmask)
        if self.cfg.early_fusion:
            v, _ = self.vid_proj(video, vmask)
            out = self.backbone.encode(self.fusion(v, vmask, text, tmask, qidx), vmask[qidx])
            rows, index = torch.arange(len(qidx), device=qidx.device), None
        else:
            out = self.backbone.encode(video, vmask)
            rows, index = qidx, qidx
        feats = [self.fusion(f, m, text, tmask, index) for f, m in zip(out.feats, out.masks)]
        masks = [m[rows] for m in out.masks]
        logits, offsets = self.head(feats, masks)
        return EncodedBatch(logits, offsets, masks, out, rows)

    def points(self, enc: EncodedBatch) -> Tensor:
        """(P, 4) points ``(coord, r_min, r_max, stride)`` of all levels of ``enc``, concatenated."""
        return pyramid_points([m.shape[1] for m in enc.masks], self.ranges, device=enc.masks[0].device)

    # -- losses --------------------------------------------------------------------------------------------------
    def _targets(self, batch: dict, num_queries: int) -> tuple[Tensor, Tensor]:
        """(segments (Q, 2) grid units, negative (Q,) bool); a negative query's segment is replaced by (0, 1)."""
        if batch.get("segments_grid") is None:
            raise KeyError("HieraMamba loss needs batch['segments_grid'] (Q, 2) ground truth in grid units")
        segs = batch["segments_grid"]
        if segs.shape != (num_queries, 2):
            raise ValueError(f"segments_grid must be ({num_queries}, 2), got {tuple(segs.shape)}")
        negative = batch.get("negative")
        negative = (torch.zeros(num_queries, dtype=torch.bool) if negative is None else negative).to(segs.device)
        if negative.shape != (num_queries,) or negative.dtype != torch.bool:
            raise ValueError(f"negative must be a ({num_queries},) bool tensor, got {tuple(negative.shape)} "
                             f"{negative.dtype}")
        segs = torch.where(negative[:, None], torch.tensor([0.0, 1.0], device=segs.device, dtype=segs.dtype), segs)
        bad = (~torch.isfinite(segs).all(1) | (segs[:, 1] <= segs[:, 0])).nonzero().flatten().tolist()
        if bad:
            text_ids = batch.get("text_ids") or [f"query {i}" for i in range(num_queries)]
            raise ValueError("zero-length or invalid ground-truth segment(s) (grid units, need start < end): "
                             + ", ".join(f"{text_ids[i]} {segs[i].tolist()}" for i in bad))
        return segs.float(), negative

    def _acc(self, out: BackboneOutput) -> list[tuple[Tensor, Tensor]]:
        """ACC per level: (loss (R,) the mean over each backbone row's valid anchors, count (R,) of those anchors)."""
        levels = []
        for anchors, amask, clips, cmask in zip(out.anchors, out.anchor_masks, out.feats, out.masks):
            loss = anchor_contrastive_loss(self.acc_proj(anchors), self.acc_proj(clips), amask, cmask,
                                           self.cfg.contrast_tau, self.cfg.acc_neg_ratio, self.cfg.acc_gap_ratio)
            levels.append((loss, amask.sum(1)))      # every valid anchor has a valid child (its window's clips)
        return levels

    def _spc(self, enc: EncodedBatch, points: Tensor, labels: Tensor, segs: Tensor) -> list[tuple[Tensor, Tensor]]:
        """SPC per level: (loss (Q,), counted (Q,) bool: the query has positives and drawn negatives there)."""
        spans = span_mask(points, segs)
        levels = []
        for sl, feats, mask in zip(level_slices([m.shape[1] for m in enc.masks]), enc.backbone.feats, enc.masks):
            pos = labels[:, sl]
            levels.append(segment_prototype_loss(self.spc_proj(feats[enc.rows]), pos, mask & ~spans[:, sl] & ~pos,
                                                 self.cfg.contrast_tau, self.cfg.spc_neg_ratio))
        return levels

    def losses(self, enc: EncodedBatch, batch: dict) -> dict[str, Tensor]:
        """The loss dict of :class:`HieraMamba` from an encoded batch (accounting: :class:`HieraMambaConfig`)."""
        cfg = self.cfg
        q = enc.rows.shape[0]
        segs, negative = (t.to(enc.logits[0].device) for t in self._targets(batch, q))
        points = self.points(enc)
        logits, offsets, valid = (torch.cat(x, 1) for x in (enc.logits, enc.offsets, enc.masks))
        labels, target_off = assign_points(points, segs, cfg.center_radius)
        labels &= valid & ~negative[:, None]
        if self.training and (~negative & ~labels.any(1)).any():
            lo, hi = self.ranges[-1]
            warnings.warn("a training query has no positive point, so it trains as background only: its segment is "
                          f"shorter than a grid step or its reach (the larger point-to-boundary distance, grid units) "
                          f"is past the last level's regression range [{lo:g}, {hi:g}) (one level: raise "
                          "regression_range)", stacklevel=3)
        cls = sigmoid_focal_loss(logits, labels.float(), cfg.focal_alpha, cfg.focal_gamma, cfg.label_smoothing,
                                 mask=valid, reduction="none").sum(1)
        qi, pi = labels.nonzero(as_tuple=True)
        per_point = REG_LOSSES[cfg.reg_loss](offsets[qi, pi], target_off[qi, pi], reduction="none")
        reg = torch.zeros(q, dtype=per_point.dtype, device=per_point.device).index_add(0, qi, per_point)
        acc = self._acc(enc.backbone) if self.acc_proj is not None else []
        spc = self._spc(enc, points, labels, segs) if self.spc_proj is not None else []
        per_query = cfg.loss_normalization == "per_query"
        norm = self.loss_norm().clone()                  # the official trainer updates it after the step
        if self.training:
            self.loss_norm.update(labels.sum().item() / (q if per_query else 1))
        zero = cls.new_zeros(())
        if per_query:
            acc_q = sum((loss[enc.rows] for loss, _ in acc), cls.new_zeros(q))
            spc_q = sum((loss for loss, _ in spc), cls.new_zeros(q))
            terms = (cls.mean(), reg.mean(), acc_q.mean(), spc_q.mean())
        else:
            acc_total = sum(((loss * n).sum() / n.sum().clamp(min=1) for loss, n in acc), zero)
            if not cfg.early_fusion:                     # backbone rows are videos: times the mean queries per video
                acc_total = acc_total * q / enc.backbone.feats[0].shape[0]
            spc_total = sum(((loss * c).sum() / c.sum().clamp(min=1) for loss, c in spc), zero)
            terms = (cls.sum(), reg.sum(), acc_total, spc_total)
        parts = {name: t / norm for name, t in zip(("loss_cls", "loss_reg", "loss_acc", "loss_spc"), terms)}
        loss = (parts["loss_cls"] + cfg.w_reg * parts["loss_reg"] + cfg.w_acc * parts["loss_acc"]
                + cfg.w_spc * parts["loss_spc"])
        return {"loss": loss, **parts}

    def forward(self, batch: dict) -> dict[str, Tensor]:
        return self.losses(self.encode(batch), batch)

    # -- inference -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: dict) -> list[dict]:
        """Moments and per-grid-step saliency per query, in seconds when the batch gives the timing (see the class
        docstring). Call ``model.eval()`` first."""
        enc = self.encode(batch)
        qidx = batch["query_index"].tolist()
        length, offset, duration = grid_timing(batch)
        saliency = (torch.sigmoid(enc.logits[0].float()) * enc.masks[0]).cpu()
        rows = []
        for q, (det, v) in enumerate(zip(self._decode(enc), qidx)):
            det = det.detach().double().cpu()
            times = (det[:, :2] * length[v] + offset[v]).clamp(0.0, duration[v])
            rows.append({"pred_relevant_windows": [[s, e, c] for (s, e), c in zip(times.tolist(), det[:, 2].tolist())],
                         "pred_saliency_scores": saliency[q, :int(enc.masks[0][q].sum())].tolist()})
        return rows

    @torch.no_grad()
    def detect(self, batch: dict) -> list[Tensor]:
        """Decoded detections per query (call ``model.eval()`` first): list of (K, 3) ``[start, end, score]`` in
        grid units, score descending."""
        return self._decode(self.encode(batch))

    def _decode(self, enc: EncodedBatch) -> list[Tensor]:
        cfg = self.cfg
        points = self.points(enc)
        scores = torch.sigmoid(torch.cat(enc.logits, 1)) * torch.cat(enc.masks, 1)
        offsets = torch.cat(enc.offsets, 1)
        return [decode_points(points, s, o, pre_nms_thresh=cfg.pre_nms_thresh, pre_nms_topk=cfg.pre_nms_topk,
                              seg_len_thresh=cfg.seg_len_thresh, sigma=cfg.nms_sigma,
                              voting_thresh=cfg.voting_thresh, min_score=cfg.min_score, max_num=cfg.max_num_segs)
                for s, o in zip(scores.float(), offsets.float())]


__all__ = ["AMPBlock", "BACKBONE_PRESETS", "BackboneOutput", "ConvSelfAttention", "EncodedBatch", "HieraMamba",
           "HieraMambaBackbone", "HieraMambaBackboneConfig", "HieraMambaConfig", "MIXERS", "MODEL_PRESETS",
           "SigmoidGate", "build_fusion", "build_mixer", "build_text_encoder", "interleave_anchors", "split_anchors",
           "valid_lengths"]
