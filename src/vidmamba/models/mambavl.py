"""MambaVL ("Mamba Fusion: Learning Actions Through Questioning", arXiv 2409.11513): action recognition /
anticipation from a video token sequence and two masked questions, fused by Mamba-1 mixers sharing one A.

Read top to bottom (official code: ``Dongzhikang/MambaVL@601b789``, ``slowfast/models/video_model_builder.py``):

1. projections: video (b, T, video_dim) -> Linear -> d_model; each question (b, L, text_dim) -> ``txt_proj`` =
   Linear(no bias) -> ReLU -> Linear -> ReLU -> Linear (as the official code);
2. fusion (pluggable, :data:`FUSIONS`): "shared_a" (MambaVL) scans the video with one Mamba-1 mixer and every
   question with another, both reading the one ``A_log`` owned by a :class:`~vidmamba.ssm.SharedALog` of the fusion
   layer (B, C, delta, conv, projections, D are per modality; the text mixer is shared by the two questions); then
   ``x_q = masked_mean(video) + masked_mean(question_q)`` per question. Ablations: "separate_a" (each mixer owns its
   A_log), "transformer" (pre-norm masked transformer blocks over ``[video; question]``, same width and depth),
   "mlp" (a per-token MLP per modality, no token mixing);
3. heads: ``verb = Linear(Dropout(x_verb_question))``, ``noun = Linear(Dropout(x_noun_question))``;
4. loss: ``loss_verb + loss_noun``, each label-smoothing cross-entropy averaged over the labelled samples.

Deliberate differences from the official code (``docs/departures.md`` lists each with the value restoring it):

- Initialisation: ``init="s4d"`` (default) keeps the mamba_ssm construction init (S4D-real ``A_log = log(1..d_state)``,
  dt bias from dt in [1e-3, 1e-1], PyTorch's Linear init). The released code re-initialises the whole model after
  building it (``init="released"``, :func:`released_init`), which sets A ~ -1 for every state and the dt bias to 0.
- The means are masked: padded video / question tokens are excluded (the official code averages over the 40 padded
  RoBERTa positions, so a sample's features depend on its padding). With masks, a padded batch gives exactly the
  outputs of each sample alone.
- The video features come pre-extracted from any backbone, so a Linear projection to ``d_model`` is added (the
  official model scans the backbone's own tokens at the backbone width).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from vidmamba.models.config import ModelConfig
from vidmamba.nn import (TransformerBlock, batch_mask, finite_at_valid, label_smoothing_cross_entropy, masked_mean,
                         sinusoid_encoding)
from vidmamba.ssm import Mamba1, SharedALog
from vidmamba.ssm.layers import masked_fill_pads

FUSIONS = ("shared_a", "separate_a", "transformer", "mlp")
INITS = ("s4d", "released")
QUESTION_KEYS = ("verb_question", "noun_question")  # the question that feeds the verb head, the noun head


@dataclass
class MambaVLConfig(ModelConfig):
    """Hyper-parameters of :class:`MambaVL`.

    video_dim: width of the pre-extracted video features (official: the backbone width, 768 ViT-B / 1024 ViT-L).
    text_dim: width of the frozen question-token embeddings (official: RoBERTa-base, 768).
    d_model: fusion width (official: the backbone width; 256 here for CPU work).
    num_layers: fusion depth. The official model has ONE Mamba call per modality with no norm and no residual; that
        is ``num_layers=1`` (default). With more, the layers are stacked the same way (no norm, no residual), each
        layer with its own shared A — a choice, the paper has no deeper variant. Transformer / MLP fusions use the
        same number of blocks.
    d_state, d_conv, expand: Mamba-1 shape (official: 16, 4 causal, 2; dt_rank = ceil(d_model / 16)).
    fusion: one of :data:`FUSIONS` ("shared_a" = MambaVL).
    num_verbs, num_nouns: head sizes (EK100: 97 / 300).
    dropout: dropout before the heads (official ``MF.HEAD_DROPOUT``: 0.0 in both released configs,
        ``EK_ORVIT_MF_HR_AVION_cosine.yaml`` and ``EK_ORVIT_MF_HR_ANT.yaml``).
    label_smoothing: smoothing of both cross-entropies (official ``MIXUP.LABEL_SMOOTH_VALUE`` = 0.1,
        ``slowfast/config/defaults.py``; neither released config overrides it).
    n_heads, mlp_ratio: transformer fusion only (heads, MLP width ratio). The MLP fusion uses ``expand``.
    init: "s4d" (default: mamba_ssm's init, S4D-real A) or "released" (:func:`released_init`, the released code's
        re-initialisation after building).
    """

    video_dim: int = 1024
    text_dim: int = 768
    d_model: int = 256
    num_layers: int = 1
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    fusion: str = "shared_a"
    num_verbs: int = 97
    num_nouns: int = 300
    dropout: float = 0.0
    label_smoothing: float = 0.1
    n_heads: int = 4
    mlp_ratio: float = 4.0
    init: str = "s4d"

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise ValueError(f"MambaVLConfig.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.init not in INITS:
            raise ValueError(f"MambaVLConfig.init must be one of {INITS}, got {self.init!r}")
        for name in ("video_dim", "text_dim", "d_model", "num_layers", "d_state", "d_conv", "expand", "num_verbs",
                     "num_nouns", "n_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"MambaVLConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"MambaVLConfig.dropout and label_smoothing must be in [0, 1), got {self.dropout} and "
                             f"{self.label_smoothing}")
        if self.fusion == "transformer" and (self.d_model % self.n_heads or self.d_model % 2):
            raise ValueError(f"transformer fusion needs an even d_model divisible by n_heads, got d_model "
                             f"{self.d_model}, n_heads {self.n_heads}")



# ---------------------------------------------------------------------------------------------------------------------
# fusion modules: (video (b, lv, d), video_mask, [(question (b, lq, d), question_mask), ...]) -> [x_q (b, d), ...]
# ---------------------------------------------------------------------------------------------------------------------
class MambaFusion(nn.Module):
    """Per layer: a video Mamba-1 mixer and a text Mamba-1 mixer (shared by all questions), no norm, no residual.

    ``shared_a=True`` (MambaVL): the layer's ``a_log`` (:class:`SharedALog`) is the only A of both mixers, which are
    built with ``own_a_log=False``. ``shared_a=False``: each mixer owns its A_log and ``a_log`` is None.
    """

    def __init__(self, cfg: MambaVLConfig, shared_a: bool = True):
        super().__init__()
        self.shared_a = shared_a

        def mixer() -> Mamba1:
            return Mamba1(cfg.d_model, d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand,
                          own_a_log=not shared_a)

        self.video_layers = nn.ModuleList(mixer() for _ in range(cfg.num_layers))
        self.text_layers = nn.ModuleList(mixer() for _ in range(cfg.num_layers))
        self.a_logs = (nn.ModuleList(SharedALog(cfg.expand * cfg.d_model, cfg.d_state) for _ in range(cfg.num_layers))
                       if shared_a else None)

    def forward(self, video: Tensor, video_mask: Tensor, questions: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        a_logs = [a() for a in self.a_logs] if self.shared_a else [None] * len(self.video_layers)
        for mixer, a_log in zip(self.video_layers, a_logs):
            video = mixer(video, video_mask, A_log=a_log)
        v = masked_mean(video, video_mask)
        out = []
        for q, q_mask in questions:
            for mixer, a_log in zip(self.text_layers, a_logs):
                q = mixer(q, q_mask, A_log=a_log)
            out.append(v + masked_mean(q, q_mask))
        return out


class TransformerFusion(nn.Module):
    """Transformer twin: per question, ``num_layers`` pre-norm masked transformer blocks over ``[video; question]``
    (+ a type embedding and sinusoidal positions within each modality), then the same two masked means.

    (The official transformer baseline is a 6-layer ViT fuser over ``[cls_v; v; cls_t; t]`` with RoBERTa pooler
    features; here it is the equal-width, equal-depth twin of the Mamba fusion.)
    """

    def __init__(self, cfg: MambaVLConfig):
        super().__init__()
        self.type_embed = nn.Embedding(2, cfg.d_model)  # 0 = video, 1 = question
        self.blocks = nn.ModuleList(TransformerBlock(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, 0.0, 0.0)
                                    for _ in range(cfg.num_layers))

    def _embed(self, x: Tensor, kind: int) -> Tensor:
        pe = sinusoid_encoding(x.shape[1], x.shape[2]).to(x)
        return x + pe + self.type_embed.weight[kind]

    def forward(self, video: Tensor, video_mask: Tensor, questions: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        video, lv = self._embed(video, 0), video.shape[1]
        out = []
        for q, q_mask in questions:
            # Padding may sit between the two parts; attention ignores padded keys and positions are per modality,
            # so the result does not depend on the amount of padding.
            x, mask = torch.cat([video, self._embed(q, 1)], 1), torch.cat([video_mask, q_mask], 1)
            for block in self.blocks:
                x = block(x, mask)
            out.append(masked_mean(x[:, :lv], video_mask) + masked_mean(x[:, lv:], q_mask))
        return out


class MLPFusion(nn.Module):
    """No token mixing: ``num_layers`` x [Linear(d, expand d) -> GELU -> Linear(expand d, d)] per token, one stack per
    modality (the text stack shared by the questions), then the same two masked means."""

    def __init__(self, cfg: MambaVLConfig):
        super().__init__()
        d, h = cfg.d_model, cfg.expand * cfg.d_model

        def stack() -> nn.Sequential:
            return nn.Sequential(*(nn.Sequential(nn.Linear(d, h), nn.GELU(), nn.Linear(h, d))
                                   for _ in range(cfg.num_layers)))

        self.video_mlp, self.text_mlp = stack(), stack()

    def forward(self, video: Tensor, video_mask: Tensor, questions: list[tuple[Tensor, Tensor]]) -> list[Tensor]:
        v = masked_mean(self.video_mlp(video), video_mask)
        return [v + masked_mean(self.text_mlp(q), q_mask) for q, q_mask in questions]


def build_fusion(cfg: MambaVLConfig) -> nn.Module:
    """The fusion module named by ``cfg.fusion``."""
    if cfg.fusion in ("shared_a", "separate_a"):
        return MambaFusion(cfg, shared_a=cfg.fusion == "shared_a")
    return TransformerFusion(cfg) if cfg.fusion == "transformer" else MLPFusion(cfg)


@torch.no_grad()
def released_init(model: nn.Module) -> None:
    """The released code's re-initialisation after building (``Dongzhikang/MambaVL@601b789``,
    ``slowfast/models/video_model_builder.py``, classes ``AVION`` / ``AVION_B``: ``self.init_weights()`` then
    ``self.apply(self._init_weights)``), applied to every parameter of ``model``:

    1. xavier-uniform on every parameter with more than one dimension: the shared ``A_log`` (d_inner, d_state) becomes
       ~U(+-sqrt(6 / (d_inner + d_state))), i.e. A = -exp(A_log) ~ -1 for every state; conv weights too;
    2. every Linear: weight trunc-normal (std 0.02, cut at +-2), bias 0 (``dt_proj.bias`` too: no dt offset, dt =
       softplus(dt_proj(x)));
    3. every LayerNorm: weight 1, bias 0.

    1-d parameters outside Linear / LayerNorm (``D`` = 1, conv biases) keep their construction values.
    """
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------------------
class MambaVL(nn.Module):
    """MambaVL with a pluggable fusion. ``forward(batch) -> dict``, ``predict(batch) -> dict``.

    Batch keys: ``video`` (b, lv, video_dim) + ``video_mask``; ``verb_question`` and ``noun_question``
    (b, lq, text_dim) + ``*_mask`` — the embedded token sequences of the question feeding the verb head (it asks
    about the verb, the noun is masked) and the noun head (see :mod:`vidmamba.data.questions`); masks are (b, l) bool,
    True = valid, all-valid when absent. Optional labels ``verb`` / ``noun`` (b,) long; -1 = unlabelled (as
    :class:`~vidmamba.data.ek100.EK100Dataset`), such samples are left out of the loss.
    """

    batch_format = "ek100"  # the batches it takes (models/__init__.py: the formats and their datasets)

    def __init__(self, cfg: MambaVLConfig | None = None, **overrides):
        super().__init__()
        self.cfg = cfg = MambaVLConfig.resolve(cfg, overrides)
        d = cfg.d_model
        self.video_proj = nn.Linear(cfg.video_dim, d)
        self.txt_proj = nn.Sequential(nn.Linear(cfg.text_dim, d, bias=False), nn.ReLU(), nn.Linear(d, d), nn.ReLU(),
                                      nn.Linear(d, d))
        self.fusion = build_fusion(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        self.verb_head = nn.Linear(d, cfg.num_verbs)
        self.noun_head = nn.Linear(d, cfg.num_nouns)
        if cfg.init == "released":
            released_init(self)

    def _sequence(self, batch: dict, key: str, dim: int) -> tuple[Tensor, Tensor]:
        if key not in batch:
            raise KeyError(f"MambaVL batch needs {key!r} (and optionally {key + '_mask'!r})")
        x = batch[key]
        if x.dim() != 3 or x.shape[-1] != dim:
            raise ValueError(f"batch[{key!r}] must be (b, l, {dim}), got {tuple(x.shape)}")
        mask = batch_mask(batch, key, x)
        if not bool(mask.any(1).all()):
            raise ValueError(f"batch[{key!r}] has a sample with no valid token")
        if not finite_at_valid(x, mask):
            raise ValueError(f"batch[{key!r}] has NaN or Inf at valid tokens")
        return masked_fill_pads(x, mask, 1), mask

    def logits(self, batch: dict) -> dict:
        """``{"verb_logits": (b, num_verbs), "noun_logits": (b, num_nouns)}``."""
        video, vmask = self._sequence(batch, "video", self.cfg.video_dim)
        questions = []
        for key in QUESTION_KEYS:
            q, qmask = self._sequence(batch, key, self.cfg.text_dim)
            if q.shape[0] != video.shape[0]:
                raise ValueError(f"batch[{key!r}] has batch size {q.shape[0]}, video has {video.shape[0]}")
            questions.append((masked_fill_pads(self.txt_proj(q), qmask, 1), qmask))
        video = masked_fill_pads(self.video_proj(video), vmask, 1)
        x_verb, x_noun = self.fusion(video, vmask, questions)
        return {"verb_logits": self.verb_head(self.drop(x_verb)), "noun_logits": self.noun_head(self.drop(x_noun))}

    def losses(self, out: dict, batch: dict) -> dict:
        """Label-smoothing CE per head over samples with label >= 0; ``loss = loss_verb + loss_noun``."""
        losses = {}
        for name in ("verb", "noun"):
            logits = out[f"{name}_logits"]
            target = torch.as_tensor(batch[name], device=logits.device).long().reshape(-1)
            if target.shape[0] != logits.shape[0]:
                raise ValueError(f"batch[{name!r}] has {target.shape[0]} labels for {logits.shape[0]} samples")
            if bool((target >= logits.shape[-1]).any()):
                raise ValueError(f"batch[{name!r}] has a class id >= {logits.shape[-1]}")
            valid = target >= 0
            losses[f"loss_{name}"] = label_smoothing_cross_entropy(logits, target.clamp(min=0),
                                                                   self.cfg.label_smoothing, mask=valid)
        losses["loss"] = losses["loss_verb"] + losses["loss_noun"]
        return losses

    def forward(self, batch: dict) -> dict:
        """Logits, plus ``loss`` / ``loss_verb`` / ``loss_noun`` (scalars) when the batch has ``verb`` and ``noun``."""
        out = self.logits(batch)
        if "verb" in batch and "noun" in batch:
            out.update(self.losses(out, batch))
        return out

    @torch.no_grad()
    def predict(self, batch: dict, probs: bool = True) -> dict:
        """``{"verb": (b, num_verbs), "noun": (b, num_nouns)}``: softmax probabilities (``probs``) or logits.
        Runs with the module's current train/eval mode (call ``.eval()`` first to disable dropout)."""
        out = self.logits(batch)
        verb, noun = out["verb_logits"], out["noun_logits"]
        if probs:
            verb, noun = verb.softmax(-1), noun.softmax(-1)
        return {"verb": verb, "noun": noun}


__all__ = ["FUSIONS", "INITS", "QUESTION_KEYS", "MambaVLConfig", "MambaVL", "MambaFusion", "TransformerFusion",
           "MLPFusion", "build_fusion", "released_init"]
