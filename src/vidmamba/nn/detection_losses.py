"""HieraMamba's contrastive losses (ACC, SPC) and its loss normaliser (official ``libs/worker.py``, ``libs/modeling/loss.py``).

Inputs are unit vectors (already projected and L2-normalised) and per-sample bool masks. Both losses sample their
negatives at random (``torch.rand`` with an optional generator); when every candidate fits in the sample budget the
result is deterministic. Per-sample results let a padded batch give exactly what each sample gives alone.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmamba.nn.losses import multi_positive_info_nce, random_subset


def sample_without_replacement(count: Tensor, k: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random k-subset of ``range(count)`` per row (Floyd's algorithm, vectorised over rows).

    count (r,) long >= 0, k (r,) long (clamped to [0, count]) -> (r, max k) long, each row's picks first, -1 after.
    O(r k^2) time, no (r, count) intermediate."""
    k = torch.minimum(k.clamp(min=0), count)
    width = int(k.max()) if k.numel() else 0
    picks = torch.full((k.shape[0], width), -1, dtype=torch.long, device=k.device)
    for s in range(width):
        active = s < k
        j = count - k + s                                       # Floyd: draw t in [0, j]; on a repeat take j itself
        t = (torch.rand(k.shape, generator=generator, device=k.device) * (j + 1).clamp(min=1)).long()
        t = torch.minimum(t, j.clamp(min=0))
        repeat = (picks[:, :s] == t[:, None]).any(-1)
        picks[:, s] = torch.where(active, torch.where(repeat, j, t), picks[:, s])
    return picks


def anchor_contrastive_loss(z_anchor: Tensor, z_clip: Tensor, anchor_mask: Tensor, clip_mask: Tensor,
                            tau: float = 0.07, neg_ratio: float = 8.0, gap_ratio: float = 0.2,
                            generator: torch.Generator | None = None) -> Tensor:
    """ACC ("anchor-conditioned contrastive", official ``contrastive_subsample_negative_mp``, radius 0), per sample.

    z_anchor (b, n, d) unit anchors of one AMP block; z_clip (b, l, d) unit clip outputs of the same block
    (``l <= 2n``); anchor_mask (b, n), clip_mask (b, l), right-padded. Anchor i's positives are its children, clips
    2i and 2i+1 (when valid); its negatives are ``ceil(neg_ratio * #pos)`` anchors of the same sample at index
    distance ``> gap = max(1, int(gap_ratio * n_valid))``, drawn uniformly without replacement (all candidates when
    fewer). Per anchor::

        -log( sum_pos e^{s/tau} / (sum_pos e^{s/tau} + sum_neg e^{s/tau}) )

    Returns (b,): the mean over the sample's valid anchors that have a positive (0 when none). ``n_valid`` is the
    sample's own anchor count (official: the padded batch length). Cost O(b n k d), k = negatives per anchor: no
    (n, n) similarity matrix, so long videos fit.
    """
    b, n, d = z_anchor.shape
    pad = 2 * n - z_clip.shape[1]
    if pad < 0:
        raise ValueError(f"{z_clip.shape[1]} clips cannot be the children of {n} anchors (stride 2)")
    children = F.pad(z_clip, (0, 0, 0, pad)).view(b, n, 2, d)
    pos = F.pad(clip_mask, (0, pad), value=False).view(b, n, 2) & anchor_mask[..., None]
    pos_sim = (z_anchor.unsqueeze(2) * children).sum(-1)                          # (b, n, 2)
    # candidates of anchor i: [0, lo) and (hi, n_valid) with the band [lo, hi] = [i - gap, i + gap] cut to the sample
    n_valid = anchor_mask.sum(1, keepdim=True)                                     # (b, 1)
    gap = (gap_ratio * n_valid).floor().long().clamp(min=1)
    i = torch.arange(n, device=z_anchor.device)[None]
    lo = (i - gap).clamp(min=0)
    band = torch.minimum(i + gap, n_valid - 1) - lo + 1
    count = torch.where(anchor_mask, n_valid - band, torch.zeros_like(band))      # (b, n)
    k = torch.ceil(neg_ratio * pos.sum(-1).float()).clamp(min=1).long()
    rank = sample_without_replacement(count.flatten(), k.flatten(), generator)
    rank = rank.view(b, n, rank.shape[1])
    neg = rank >= 0
    idx = torch.where(rank < lo[..., None], rank, rank + band[..., None]).clamp(0, n - 1)
    negatives = torch.gather(z_anchor, 1, idx.flatten(1)[..., None].expand(-1, -1, d)).view(b, n, idx.shape[2], d)
    neg_sim = (z_anchor.unsqueeze(2) * negatives).sum(-1)                          # (b, n, k)
    sim = torch.cat([pos_sim, neg_sim], -1)
    pos_mask = torch.cat([pos, torch.zeros_like(neg)], -1)
    neg_mask = torch.cat([torch.zeros_like(pos), neg], -1)
    rows = anchor_mask & pos.any(-1)
    loss = multi_positive_info_nce(sim.flatten(0, 1), pos_mask.flatten(0, 1), neg_mask.flatten(0, 1), tau,
                                   rows.flatten(), reduction="none").view(b, n)
    return loss.sum(1) / rows.sum(1).clamp(min=1).to(loss.dtype)


def segment_prototype_loss(z: Tensor, pos: Tensor, neg_candidates: Tensor, tau: float = 0.07,
                           neg_ratio: float = 1.0, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """SPC ("segment-pooled contrastive", official ``point_gt_contr_pooled``), one row per (query, level).

    z (r, l, d) unit point features; pos (r, l) bool positive points (the classification positives);
    neg_candidates (r, l) bool (valid points neither positive nor inside the ground-truth span). The prototype is
    ``normalize(mean(z[pos]))``; ``int(#pos * neg_ratio)`` negatives are drawn from the candidates; per row::

        -(logsumexp(proto . z[pos] / tau) - logsumexp(proto . z[pos ∪ neg] / tau))

    Returns (loss (r,), counted (r,) bool): rows without a positive or a drawn negative give 0 and are not counted.
    """
    k = (pos.sum(-1).float() * neg_ratio).floor().long()
    neg = random_subset(neg_candidates & ~pos, k, generator)
    counted = pos.any(-1) & neg.any(-1)
    proto = F.normalize((z * pos.unsqueeze(-1).to(z.dtype)).sum(1), dim=-1)          # (r, d)
    sim = (z @ proto.unsqueeze(-1)).squeeze(-1)                                       # (r, l)
    return multi_positive_info_nce(sim, pos, neg, tau, counted, reduction="none"), counted


class LossNormalizer(nn.Module):
    """EMA of the number of positive points (official ``loss_norm``): ``v <- m v + (1 - m) max(count, 1)`` on every
    training :meth:`update`; the losses are divided by ``v``. Kept in a buffer so checkpoints carry it."""

    def __init__(self, init: float, momentum: float = 0.9):
        super().__init__()
        if init <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"need init > 0 and momentum in [0, 1), got {init}, {momentum}")
        self.momentum = momentum
        self.register_buffer("value", torch.tensor(float(init)))

    @torch.no_grad()
    def update(self, count: float) -> None:
        self.value.mul_(self.momentum).add_((1 - self.momentum) * max(float(count), 1.0))

    def forward(self) -> Tensor:
        return self.value


__all__ = ["LossNormalizer", "anchor_contrastive_loss", "sample_without_replacement", "segment_prototype_loss"]
