"""MLVTG (arXiv 2506.08512): video temporal grounding with a MambaAligner and an optional frozen-LLM refiner.

There is no public code; the paper follows UniVTG for encoders, heads, losses and decoding
(``showlab/UniVTG``). Read top to bottom:

1. input projections (UniVTG: 2 x [LayerNorm -> Dropout -> Linear], ReLU after the first) for video and text;
2. HD branch: attentive pooling of the projected query, cosine saliency of every projected (pre-encoder) clip
   (UniVTG ``univtg.py``: ``vid_mem_proj = src_vid``); optionally (``post_saliency``) plus a conv head on the aligned
   clips (moment_detr / QD-DETR score saliency from the encoder output), so the aligner shapes the HD ranking directly;
3. TL branch: type + sinusoidal position embeddings, ``[Q; V]`` -> aligner (MambaAligner: N x [LayerNorm ->
   BiMambaGated -> DropPath residual]) -> optional :class:`~vidmamba.models.llm_refiner.LLMRefiner` -> dense heads on
   the video part: a foreground logit and sigmoid (left, right) distances around the clip's centre, in units of the
   span unit (below);
4. losses (UniVTG): weighted BCE (or focal) foreground, smooth-L1 + GIoU on spans of foreground clips, saliency
   intra/inter InfoNCE, and (``w_sal_rank``) a pairwise margin ranking loss on graded saliency (TVSum's mean of 20
   annotators; moment_detr's hinge over all ordered clip pairs) and (``w_sal_reg``) a regression of ``saliency`` to the
   per-video standardised graded score; decoding: score = fg prob + saliency, sort, temporal NMS 0.7, at most 10 windows.

The aligner is pluggable (``MLVTGConfig.aligner``): "mamba" (MLVTG), "transformer" and "perclip" (the baselines in
:mod:`vidmamba.models.aligners`). Choices where the paper is silent are listed in :class:`MLVTGConfig`.

Time unit: spans, the TEF columns and clip centres are measured in units of U clips: ``U = train_clips``, the input
length the model is trained on (``span_unit: train_clips``, the default), so a prediction does not depend on how long
the input is; or U = each input's own length T (``span_unit: input``, UniVTG's normalisation by the feature extent).
The two are the same function on a ``train_clips``-long input (QVHighlights: 75 clips); a model without
``train_clips`` uses the input's length. Clip t's centre is
``(t + 0.5) / U``; predictions are converted back to seconds (x U x ``clip_length``) and clamped to ``[0, duration]``.

Long inputs: a video longer than ``train_clips`` is answered in half-overlapping windows of ``train_clips`` clips
(``long_video: window``, the default; ``whole`` reads it in one pass): every window's per-clip candidates, shifted to
the video's time, are pooled and decoded as one input's (score sort, temporal NMS), each clip's saliency is the mean
over the windows that hold it. The scores are comparable across windows when the model was trained on windows that
lack the truth too (``data.negative_queries`` of the ``nlq`` task).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from vidmamba.models.config import ModelConfig
from vidmamba.nn import (ConvHead, DenseGroundingHead, SaliencyHead, foreground_bce_loss, giou_loss, nms_1d,
                         saliency_inter_loss, saliency_intra_loss, sigmoid_focal_loss, sinusoid_encoding,
                         smooth_l1_span_loss)
from vidmamba.models.aligners import ALIGNERS, build_aligner
from vidmamba.nn.losses import saliency_rank_loss
from vidmamba.nn.mask import batch_mask, finite_at_valid, masked_fill_pads

FG_LOSSES = ("bce", "focal")
SCORE_MODES = ("add", "fg")
SPAN_UNITS = ("train_clips", "input")
LONG_VIDEO = ("window", "whole")
QUERY_FUSIONS = ("none", "product")


@dataclass
class MLVTGConfig(ModelConfig):
    """Hyper-parameters of :class:`MLVTG` (defaults: UniVTG's QVHighlights recipe unless noted).

    hidden_dim: 256 here for CPU work; MLVTG / UniVTG use 1024 (set it in the YAML config to reproduce).
    num_layers, d_state, d_conv, expand: aligner depth and BiMambaGated shape (paper: 4 blocks; the SSM sizes are
        not reported, Mamba-1 defaults used).
    dropout: dropout inside the aligner (transformer attention/MLP, per-clip MLP) and on nothing else (UniVTG 0).
    input_dropout: dropout in both input projection layers (UniVTG 0.5).
    drop_path: stochastic depth of the last aligner block, linearly increasing from 0 at the first (UniVTG 0.1).
    use_tef: the model appends the 2 moment_detr temporal-endpoint columns ``[t/U, (t+1)/U]`` (U: the span unit) to
        the video itself (``video_dim`` is then the raw feature width). Leave it False when the dataset already
        appends them.
    train_clips: the input length (clips) the model is trained on: the span unit, and the window of long inputs.
        The tasks set it from the data when absent (the longest training input; the ``nlq`` task's ``max_clips``);
        None (a model built without it, a checkpoint written before it existed): UniVTG's unit and no windows.
    span_unit: "train_clips" (spans / TEF in units of ``train_clips``: independent of the input's length) or "input"
        (UniVTG: units of each input's own length; spans of a long input then scale with it).
    long_video: inputs longer than ``train_clips``: "window" (half-overlapping windows of ``train_clips``, merged)
        or "whole" (one pass). ``window_batch``: windows per forward pass.
    use_txt_pos: add position embeddings to the text too (UniVTG default: video only).
    query_fusion: "none" (MLVTG: the aligner's clips learn the query only through the scan of ``[Q; V]``) or "product"
        (each projected clip v also gets ``Linear(v * s)`` before the aligner, s the HD branch's pooled query: the
        per-channel terms of its saliency match, so every clip enters the scan knowing how it matches the query).
    clip_length: seconds per clip when the batch has no ``clip_length``.
    head_layers / head_kernel: UniVTG's 3-layer Conv1d k=3 heads (the per-clip baseline forces k=1).
    n_heads, mlp_ratio: transformer baseline only.
    fg_loss: "bce" (UniVTG, background weight ``bg_weight``) or "focal" (alpha ``focal_alpha``, gamma ``focal_gamma``).
    w_fg, w_span (smooth-L1), w_giou, w_sal_intra, w_sal_inter, tau: UniVTG's QVHighlights loss weights.
    post_saliency: add a per-clip score from the aligned clips (a ``head_layers``-layer conv head, as the fg head) to
        the HD cosine saliency. Off by default (UniVTG / the MLVTG paper score saliency before the encoder only).
    w_sal_rank, rank_margin, rank_min_gap, rank_max_clips: weight, hinge margin, minimum target gap of a counted pair
        and clip cap per video of :func:`~vidmamba.nn.losses.saliency_rank_loss` on ``saliency`` against the graded
        ``batch["saliency"]`` (0 = off, the default: UniVTG uses only the top-1 positive).
    w_sal_reg: weight of :func:`saliency_regression_loss`, the mean squared error between ``saliency`` (HD cosine, plus
        the post head with ``post_saliency``) and the graded ``batch["saliency"]`` standardised per video (0 = off, the
        default). A dense target for every clip: the one the ridge baseline of ``benchmarks/tvsum.py`` fits.
    score_mode: "add" (fg prob + saliency, UniVTG eval_mode add) or "fg" (fg prob only).
    nms_threshold, max_windows, max_before_nms: decoding (UniVTG 0.7 / 10 / 1000).
    llm_refiner: None (off) or keyword arguments of :class:`~vidmamba.models.llm_refiner.LLMRefiner` other than
        ``hidden_dim`` (``model``: local folder or hub id ``hf://owner/name[@revision]``, ``layer``: index (paper:
        20), ``residual``, ``causal``...).
    """

    video_dim: int = 2818
    text_dim: int = 512
    hidden_dim: int = 256
    num_layers: int = 4
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dropout: float = 0.0
    input_dropout: float = 0.5
    drop_path: float = 0.1
    use_tef: bool = False
    train_clips: int | None = None
    span_unit: str = "train_clips"
    long_video: str = "window"
    window_batch: int = 64
    use_txt_pos: bool = False
    query_fusion: str = "none"
    clip_length: float = 2.0
    head_layers: int = 3
    head_kernel: int = 3
    n_heads: int = 8
    mlp_ratio: float = 4.0
    aligner: str = "mamba"
    fg_loss: str = "bce"
    bg_weight: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    w_fg: float = 10.0
    w_span: float = 10.0
    w_giou: float = 1.0
    w_sal_intra: float = 0.05
    w_sal_inter: float = 0.01
    tau: float = 0.07
    post_saliency: bool = False
    w_sal_rank: float = 0.0
    rank_margin: float = 0.2
    rank_min_gap: float = 0.0
    rank_max_clips: int = 512
    w_sal_reg: float = 0.0
    score_mode: str = "add"
    nms_threshold: float = 0.7
    max_windows: int = 10
    max_before_nms: int = 1000
    llm_refiner: dict[str, Any] | None = field(default=None)

    def __post_init__(self):
        for name, value, allowed in (("aligner", self.aligner, tuple(ALIGNERS)), ("fg_loss", self.fg_loss, FG_LOSSES),
                                     ("score_mode", self.score_mode, SCORE_MODES),
                                     ("span_unit", self.span_unit, SPAN_UNITS),
                                     ("long_video", self.long_video, LONG_VIDEO),
                                     ("query_fusion", self.query_fusion, QUERY_FUSIONS)):
            if value not in allowed:
                raise ValueError(f"MLVTGConfig.{name} must be one of {allowed}, got {value!r}")
        for name in ("video_dim", "text_dim", "hidden_dim", "num_layers", "max_windows", "head_layers",
                     "rank_max_clips", "train_clips", "window_batch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"MLVTGConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_dim % 2:
            raise ValueError(f"MLVTGConfig.hidden_dim must be even (sinusoid position table), got {self.hidden_dim}")
        if self.aligner == "perclip" and self.llm_refiner is not None:
            raise ValueError("the per-clip baseline has no temporal context; it cannot use an LLM refiner")



# ---------------------------------------------------------------------------------------------------------------------
# input projection
# ---------------------------------------------------------------------------------------------------------------------
class InputProjection(nn.Sequential):
    """UniVTG's projector: [LayerNorm -> Dropout -> Linear -> ReLU] -> [LayerNorm -> Dropout -> Linear]."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float):
        super().__init__(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, out_dim), nn.ReLU(),
                         nn.LayerNorm(out_dim), nn.Dropout(dropout), nn.Linear(out_dim, out_dim))


# ---------------------------------------------------------------------------------------------------------------------
# batch helpers
# ---------------------------------------------------------------------------------------------------------------------
def _per_sample(batch: dict, key: str, default, b: int, device) -> Tensor:
    """A per-sample number (list, tensor or scalar in the batch; ``default`` when absent) as a (b,) float tensor."""
    v = batch.get(key, default)
    t = torch.as_tensor(v if not isinstance(v, (list, tuple)) else [float(x) for x in v], dtype=torch.float32,
                        device=device)
    return t.expand(b).clone() if t.dim() == 0 else t.reshape(b)


def span_targets(windows: Tensor, windows_mask: Tensor, unit: Tensor, clip_length: Tensor, lv: int) -> Tensor:
    """Per-clip regression target (b, lv, 2) in units of ``unit`` (b,) clips (``unit * clip_length`` seconds).

    Clip t ([t cl, (t+1) cl] s) regresses the annotated window (b, n, 2 seconds) it overlaps most (0 if none).
    """
    t = torch.arange(lv, device=windows.device, dtype=windows.dtype)
    cl = clip_length[:, None, None]
    st, ed = t[None, :, None] * cl, (t[None, :, None] + 1) * cl                          # (b, lv, 1)
    overlap = (torch.minimum(ed, windows[:, None, :, 1]) - torch.maximum(st, windows[:, None, :, 0])).clamp(min=0)
    overlap = overlap.masked_fill(~windows_mask[:, None, :], -1.0)                        # (b, lv, n)
    if windows.shape[1] == 0:
        return windows.new_zeros(windows.shape[0], lv, 2)
    best = overlap.argmax(-1)                                                             # (b, lv)
    target = torch.gather(windows, 1, best.unsqueeze(-1).expand(-1, -1, 2))
    return target / (unit.to(windows.dtype) * clip_length)[:, None, None]


def saliency_regression_loss(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error between ``scores`` (b, l) and ``targets`` (b, l) standardised over each video's valid clips
    (``mask`` (b, l) bool): zero mean, unit std. Mean over the valid clips of a video, then over the videos whose
    target is not constant (0 with the graph when none)."""
    mask = mask.bool()
    n = mask.sum(1, keepdim=True).clamp(min=1).to(scores.dtype)
    t = targets.to(scores.dtype).masked_fill(~mask, 0)
    mean = t.sum(1, keepdim=True) / n
    std = (((t - mean) ** 2).masked_fill(~mask, 0).sum(1, keepdim=True) / n).sqrt()
    graded = std.squeeze(1) > 1e-6
    z = (t - mean) / std.clamp(min=1e-6)
    per_video = ((scores - z) ** 2).masked_fill(~mask, 0).sum(1) / n.squeeze(1)
    return per_video[graded].mean() if bool(graded.any()) else scores.sum() * 0


# ---------------------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------------------
class MLVTG(nn.Module):
    """MLVTG with a pluggable aligner. ``forward(batch) -> dict``, ``predict(batch) -> list[dict]``.

    Batch keys (``MomentDataset.collate`` format): ``video`` (b, lv, video_dim) and ``video_mask``; ``text``
    (b, lq, text_dim) and ``text_mask``; targets, all optional: ``foreground`` (b, lv) bool with ``windows``
    (b, n, 2 seconds) and ``windows_mask`` (moment losses), ``saliency`` (b, lv) (saliency losses); metadata:
    ``clip_length``, ``duration`` (per-sample lists), ``qid``, ``vid``, ``query`` (copied into predictions).
    """

    batch_format = "lighthouse"  # the batches it takes (models/__init__.py: the formats and their datasets)

    def __init__(self, cfg: MLVTGConfig | None = None, **overrides):
        super().__init__()
        self.cfg = cfg = MLVTGConfig.resolve(cfg, overrides)
        d = cfg.hidden_dim
        self.video_proj = InputProjection(cfg.video_dim + (2 if cfg.use_tef else 0), d, cfg.input_dropout)
        self.text_proj = InputProjection(cfg.text_dim, d, cfg.input_dropout)
        self.saliency_head = SaliencyHead(d)
        self.type_embed = nn.Embedding(2, d)                           # 0 = text, 1 = video (UniVTG)
        self.query_fusion = nn.Linear(d, d) if cfg.query_fusion == "product" else None
        self.aligner = build_aligner(cfg)
        self.refiner = None
        if cfg.llm_refiner is not None:
            from vidmamba.models.llm_refiner import LLMRefiner
            self.refiner = LLMRefiner(hidden_dim=d, **cfg.llm_refiner)
        kernel = 1 if cfg.aligner == "perclip" else cfg.head_kernel
        self.head = DenseGroundingHead(d, num_layers=cfg.head_layers, kernel_size=kernel, offset_act="sigmoid")
        self.post_saliency_head = ConvHead(d, 1, num_layers=cfg.head_layers, kernel_size=kernel) \
            if cfg.post_saliency else None

    # -- encoding -----------------------------------------------------------------------------------------------------
    def _inputs(self, batch: dict):
        video, text = batch["video"], batch["text"]
        if video.dim() != 3 or text.dim() != 3:
            raise ValueError(f"expected video (b, lv, d) and text (b, lq, d), got {tuple(video.shape)} and "
                             f"{tuple(text.shape)}")
        vmask, tmask = batch_mask(batch, "video", video), batch_mask(batch, "text", text)
        for name, x, m, dim in (("video", video, vmask, self.cfg.video_dim), ("text", text, tmask, self.cfg.text_dim)):
            if x.shape[-1] != dim:
                raise ValueError(f"batch['{name}'] has feature dim {x.shape[-1]}, the model expects {dim}")
            if not bool(m.any(1).all()):
                raise ValueError(f"batch['{name}'] has a sample with no valid step (empty {name})")
            if not finite_at_valid(x, m):
                raise ValueError(f"batch['{name}'] has NaN or Inf at valid steps")
        video = masked_fill_pads(video, vmask, 1)
        if self.cfg.use_tef:
            n = self.span_unit(vmask)[:, None].to(video.dtype)
            t = torch.arange(video.shape[1], device=video.device, dtype=video.dtype)[None]
            tef = masked_fill_pads(torch.stack([t / n, (t + 1) / n], dim=-1), vmask, 1)
            video = torch.cat([video, tef], dim=-1)
        return video, vmask, masked_fill_pads(text, tmask, 1), tmask

    def span_unit(self, vmask: Tensor) -> Tensor:
        """(b,) float: clips per unit of span and TEF: ``train_clips``, or each input's length (``span_unit: input``
        or no ``train_clips``)."""
        if self.cfg.span_unit == "input" or self.cfg.train_clips is None:
            return vmask.sum(1).to(torch.float32)
        return torch.full(vmask.shape[:1], float(self.cfg.train_clips), device=vmask.device)

    def _positions(self, x: Tensor, mask: Tensor) -> Tensor:
        """Sinusoidal positions (exact table for the padded length, so padding never changes a valid position)."""
        pe = sinusoid_encoding(x.shape[1], x.shape[2]).to(device=x.device, dtype=x.dtype)
        return x + pe * mask.unsqueeze(-1).to(x.dtype)

    def encode(self, batch: dict) -> dict:
        """Projections, HD branch, TL branch and heads; no losses. Returns a dict of (b, lv, ...) tensors."""
        video, vmask, text, tmask = self._inputs(batch)
        v = masked_fill_pads(self.video_proj(video), vmask, 1)
        del video                                     # the (b, lv, video_dim + 2) input: not held through the aligner
        q = masked_fill_pads(self.text_proj(text), tmask, 1)
        saliency = self.saliency_head(v, vmask, q, tmask)
        sentence = self.saliency_head.pool(q, tmask)                 # the HD branch's pooled query (for the losses)

        v_tl = v if self.query_fusion is None else v + self.query_fusion(v * sentence[:, None])
        v_in = self._positions(v_tl, vmask) + self.type_embed.weight[1]
        q_in = q + self.type_embed.weight[0]
        if self.cfg.use_txt_pos:
            q_in = self._positions(q_in, tmask)
        v_in, q_in = masked_fill_pads(v_in, vmask, 1), masked_fill_pads(q_in, tmask, 1)
        aligned = self.aligner(v_in, vmask, q_in, tmask, refiner=self.refiner)
        logits, offsets = self.head(aligned, vmask)
        if self.post_saliency_head is not None:
            saliency = saliency + self.post_saliency_head(aligned, vmask).squeeze(-1)

        unit = self.span_unit(vmask)
        centre = (torch.arange(vmask.shape[1], device=v.device, dtype=offsets.dtype)[None] + 0.5) \
            / unit[:, None].to(offsets.dtype)
        spans = torch.stack([centre - offsets[..., 0], centre + offsets[..., 1]], dim=-1)
        return {"logits": logits, "offsets": offsets, "spans": masked_fill_pads(spans, vmask, 1),
                "saliency": saliency, "video_feats": v, "sentence": sentence, "video_mask": vmask,
                "num_clips": vmask.sum(1), "unit": unit}

    # -- losses -------------------------------------------------------------------------------------------------------
    def losses(self, out: dict, batch: dict) -> dict:
        """Weighted loss terms for the targets present in ``batch`` (each a scalar); ``loss`` is their sum."""
        cfg, vmask, logits = self.cfg, out["video_mask"], out["logits"]
        terms: dict[str, Tensor] = {}
        if batch.get("foreground") is not None:
            fg = batch["foreground"].to(logits.device).bool() & vmask
            if cfg.fg_loss == "bce":
                terms["loss_fg"] = cfg.w_fg * foreground_bce_loss(logits, fg.float(), vmask, cfg.bg_weight)
            else:
                terms["loss_fg"] = cfg.w_fg * sigmoid_focal_loss(logits, fg.float(), cfg.focal_alpha,
                                                                 cfg.focal_gamma, mask=vmask)
            windows = batch["windows"].to(logits.device, logits.dtype)
            wmask = batch.get("windows_mask")
            wmask = torch.ones(windows.shape[:2], dtype=torch.bool, device=windows.device) if wmask is None \
                else wmask.to(windows.device)
            cl = _per_sample(batch, "clip_length", cfg.clip_length, logits.shape[0], logits.device)
            target = span_targets(windows, wmask, out["unit"], cl, logits.shape[1])
            terms["loss_span"] = cfg.w_span * smooth_l1_span_loss(out["spans"], target, fg)
            terms["loss_giou"] = cfg.w_giou * giou_loss(out["spans"], target, fg)
        if batch.get("saliency") is not None:
            sal = batch["saliency"].to(logits.device, logits.dtype).masked_fill(~vmask, float("-inf"))
            has_pos = sal.max(1).values > 0
            if bool(has_pos.any()):
                rows = has_pos.nonzero().squeeze(1)
                pos_idx = sal[rows].argmax(1)                     # the top-rated clip (ties: the first)
                feats, sent = out["video_feats"][rows], out["sentence"][rows]
                terms["loss_sal_intra"] = cfg.w_sal_intra * saliency_intra_loss(
                    feats, sent, sal[rows], pos_idx, vmask[rows], cfg.tau)
                terms["loss_sal_inter"] = cfg.w_sal_inter * saliency_inter_loss(feats, sent, pos_idx, cfg.tau)
            if cfg.w_sal_rank:
                terms["loss_sal_rank"] = cfg.w_sal_rank * saliency_rank_loss(
                    out["saliency"], sal.masked_fill(~vmask, 0), vmask, cfg.rank_margin, cfg.rank_min_gap,
                    cfg.rank_max_clips)
            if cfg.w_sal_reg:
                terms["loss_sal_reg"] = cfg.w_sal_reg * saliency_regression_loss(out["saliency"], sal, vmask)
        if terms:
            terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms

    def forward(self, batch: dict) -> dict:
        """Model outputs (see :meth:`encode`) plus the weighted loss terms and ``loss`` when targets are present."""
        out = self.encode(batch)
        out.update(self.losses(out, batch))
        return out

    # -- decoding -----------------------------------------------------------------------------------------------------
    def scores(self, out: dict) -> Tensor:
        """Per-clip window score (b, lv): fg probability (+ saliency in "add" mode)."""
        prob = torch.sigmoid(out["logits"])
        return prob + out["saliency"] if self.cfg.score_mode == "add" else prob

    def _clip_candidates(self, video: Tensor, vmask: Tensor, text: Tensor, tmask: Tensor) -> tuple:
        """One forward pass: every valid clip's window (b, lv, 2) in clips of its input, score (b, lv), saliency."""
        out = self.encode({"video": video, "video_mask": vmask, "text": text, "text_mask": tmask})
        return out["spans"] * out["unit"][:, None, None], self.scores(out), out["saliency"]

    def _windowed_candidates(self, video: Tensor, text: Tensor, tmask: Tensor) -> tuple:
        """One long input ``video`` (T, d) with its query ``text`` (L, dq): the candidates of half-overlapping windows
        of ``train_clips`` clips shifted to the input's clips (k, 2), their scores (k,) and each clip's saliency (T,),
        the mean over the windows that hold it."""
        n, w = video.shape[0], self.cfg.train_clips
        starts = list(range(0, n - w, max(1, w // 2))) + [n - w]
        segs, scores = [], []
        sal_sum, count = video.new_zeros(n), video.new_zeros(n)
        for i in range(0, len(starts), self.cfg.window_batch):
            chunk = starts[i:i + self.cfg.window_batch]
            k = len(chunk)
            spans, score, sal = self._clip_candidates(
                torch.stack([video[a:a + w] for a in chunk]), torch.ones(k, w, dtype=torch.bool, device=video.device),
                text.expand(k, *text.shape), tmask.expand(k, *tmask.shape))
            for j, a in enumerate(chunk):
                segs.append(spans[j] + a)
                scores.append(score[j])
                sal_sum[a:a + w] += sal[j]
                count[a:a + w] += 1
        return torch.cat(segs), torch.cat(scores), sal_sum / count

    def candidates(self, batch: dict) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per sample: every candidate window (k, 2) in clips of the sample, its score (k,) and each valid clip's
        saliency (T,). An input longer than ``train_clips`` is read in windows (``long_video: window``)."""
        video, vmask, text, tmask = batch["video"], batch_mask(batch, "video", batch["video"]), batch["text"], \
            batch_mask(batch, "text", batch["text"])
        lengths = vmask.sum(1).tolist()
        long = [self.cfg.long_video == "window" and self.cfg.train_clips is not None and n > self.cfg.train_clips
                for n in lengths]
        rows = [i for i, is_long in enumerate(long) if not is_long]
        result: list = [None] * len(lengths)
        if rows:
            pick = slice(None) if len(rows) == len(lengths) else rows        # all rows: no copy of a long video
            spans, scores, sal = self._clip_candidates(video[pick], vmask[pick], text[pick], tmask[pick])
            for j, i in enumerate(rows):
                result[i] = (spans[j, :lengths[i]], scores[j, :lengths[i]], sal[j, :lengths[i]])
        for i in (i for i, is_long in enumerate(long) if is_long):
            result[i] = self._windowed_candidates(video[i, :lengths[i]], text[i], tmask[i])
        return result

    @torch.no_grad()
    def predict(self, batch: dict) -> list[dict]:
        """Per sample: ``pred_relevant_windows`` [[st, ed, score], ...] in seconds (score-sorted, temporal NMS, at most
        ``max_windows``, clamped to [0, duration]) and ``pred_saliency_scores`` (one per valid clip), plus ``qid``,
        ``vid``, ``query`` when the batch has them. Inputs longer than ``train_clips`` are read in windows
        (:meth:`candidates`). Runs in eval mode and restores the previous mode."""
        was_training = self.training
        self.eval()
        try:
            found = self.candidates(batch)
        finally:
            self.train(was_training)
        cfg = self.cfg
        b = len(found)
        cl = _per_sample(batch, "clip_length", cfg.clip_length, b, "cpu")
        extent = torch.tensor([float(len(sal)) for _, _, sal in found]) * cl
        duration = _per_sample(batch, "duration", extent, b, "cpu") if "duration" in batch else extent
        preds = []
        for i, (spans, s, sal) in enumerate(found):
            segs = (spans.float().cpu() * cl[i]).clamp(min=0.0, max=float(duration[i]))
            s = s.float().cpu()
            top = s.argsort(descending=True, stable=True)[: cfg.max_before_nms]
            kept, kept_scores, _ = nms_1d(segs[top], s[top], "hard", cfg.nms_threshold,
                                           min_score=float("-inf"), max_num=cfg.max_windows)
            pred = {key: batch[key][i] for key in ("qid", "query", "vid") if key in batch}
            pred["pred_relevant_windows"] = [[float(a), float(e), float(c)]
                                             for (a, e), c in zip(kept.tolist(), kept_scores.tolist())]
            pred["pred_saliency_scores"] = [float(x) for x in sal.float().cpu().tolist()]
            preds.append(pred)
        return preds
