"""HieraMamba losses: ACC and SPC against slow loop references, the loss normaliser, focal / DIoU by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from vidmamba.nn import ctr_diou_loss, ctr_iou_loss, lengths_to_mask, sigmoid_focal_loss
from vidmamba.nn.detection_losses import (
    LossNormalizer,
    anchor_contrastive_loss,
    sample_without_replacement,
    segment_prototype_loss,
)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def _acc_ref(za, zc, n_anchor, n_clip, tau, gap_ratio):
    """One sample, every candidate negative used: the formula of the official ``libs/modeling/loss.py`` as loops."""
    gap = max(1, int(gap_ratio * n_anchor))
    losses = []
    for i in range(n_anchor):
        pos = [float(za[i] @ zc[c]) for c in (2 * i, 2 * i + 1) if c < n_clip]
        if not pos:
            continue
        neg = [float(za[i] @ za[j]) for j in range(n_anchor) if abs(i - j) > gap]
        p = sum(math.exp(s / tau) for s in pos)
        n = sum(math.exp(s / tau) for s in neg)
        losses.append(-math.log(p / (p + n)))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("gap_ratio", [0.2, 0.5])
def test_acc_matches_loop_reference_per_sample(gap_ratio):
    clips = [11, 6, 1]                   # valid clips per sample; anchors = ceil(clips / 2)
    anchors = [math.ceil(c / 2) for c in clips]
    za, zc = _unit(3, 6, 8, seed=1), _unit(3, 11, 8, seed=2)
    got = anchor_contrastive_loss(za, zc, lengths_to_mask(torch.tensor(anchors), 6),
                                  lengths_to_mask(torch.tensor(clips), 11), tau=0.1, neg_ratio=100.0,
                                  gap_ratio=gap_ratio)
    for b in range(3):
        ref = _acc_ref(za[b], zc[b], anchors[b], clips[b], 0.1, gap_ratio)
        assert math.isclose(float(got[b]), ref, rel_tol=1e-9, abs_tol=1e-12)
    assert float(got[2]) == 0.0  # a single anchor has no negative: -log(p / p) = 0


def test_sample_without_replacement_is_a_uniform_subset():
    g = torch.Generator().manual_seed(0)
    count, k = torch.tensor([10, 3, 0, 5]), torch.tensor([4, 7, 2, 0])
    picks = sample_without_replacement(count, k, g)
    assert picks.shape == (4, 4)
    for row, c, want in zip(picks.tolist(), count.tolist(), [4, 3, 0, 0]):
        chosen = [x for x in row if x >= 0]
        assert len(chosen) == want == len(set(chosen)) and all(0 <= x < c for x in chosen)
        assert row[want:] == [-1] * (4 - want)
    # uniform: 20000 draws of 3 out of 6 -> each element is picked with probability 1/2
    freq = torch.bincount(sample_without_replacement(torch.full((20000,), 6), torch.full((20000,), 3), g).flatten(),
                          minlength=6).float() / 20000
    assert torch.allclose(freq, torch.full((6,), 0.5), atol=0.02), freq
    # and every 3-subset equally often (20 subsets, 1/20 each)
    rows = sample_without_replacement(torch.full((20000,), 6), torch.full((20000,), 3), g).sort(-1).values
    codes = (rows * torch.tensor([36, 6, 1])).sum(-1)
    counts = torch.unique(codes, return_counts=True)[1].float() / 20000
    assert counts.numel() == 20 and torch.allclose(counts, torch.full((20,), 0.05), atol=0.01)


def test_acc_single_anchor_samples_have_no_negatives():
    za, zc = _unit(2, 1, 4, seed=8), _unit(2, 2, 4, seed=9)
    got = anchor_contrastive_loss(za, zc, torch.ones(2, 1, dtype=torch.bool), torch.ones(2, 2, dtype=torch.bool))
    assert got.tolist() == [0.0, 0.0]


def test_acc_samples_the_requested_number_of_negatives():
    """neg_ratio 0.5 with 2 positives -> 1 negative per anchor: each row's loss is then one of the losses with a single
    candidate negative."""
    za, zc = _unit(1, 8, 4, seed=3), _unit(1, 16, 4, seed=4)
    ones_a, ones_c = torch.ones(1, 8, dtype=torch.bool), torch.ones(1, 16, dtype=torch.bool)
    got = float(anchor_contrastive_loss(za, zc, ones_a, ones_c, tau=0.1, neg_ratio=0.5, gap_ratio=0.25,
                                        generator=torch.Generator().manual_seed(0))[0])
    full = float(anchor_contrastive_loss(za, zc, ones_a, ones_c, tau=0.1, neg_ratio=100.0, gap_ratio=0.25)[0])
    assert 0 < got < full  # fewer negatives -> smaller loss per row


def _spc_ref(z, pos, neg, tau):
    pos_i = [i for i in range(len(pos)) if pos[i]]
    neg_i = [i for i in range(len(neg)) if neg[i] and not pos[i]]
    if not pos_i or not neg_i:
        return 0.0
    proto = F.normalize(z[pos_i].mean(0), dim=0)
    sp = [float(proto @ z[i]) / tau for i in pos_i]
    sa = sp + [float(proto @ z[i]) / tau for i in neg_i]
    return -(math.log(sum(math.exp(s) for s in sp)) - math.log(sum(math.exp(s) for s in sa)))


def test_spc_matches_loop_reference():
    g = torch.Generator().manual_seed(5)
    z = _unit(5, 12, 6, seed=6)
    pos = torch.rand(5, 12, generator=g) < 0.3
    neg = torch.rand(5, 12, generator=g) < 0.5
    pos[3] = False                       # no positive -> not counted
    neg[4] = pos[4]                      # no candidate negative -> not counted
    loss, counted = segment_prototype_loss(z, pos, neg, tau=0.07, neg_ratio=100.0)
    for r in range(5):
        ref = _spc_ref(z[r], pos[r].tolist(), neg[r].tolist(), 0.07)
        assert math.isclose(float(loss[r]), ref, rel_tol=1e-9, abs_tol=1e-12)
    assert counted.tolist() == [bool(pos[r].any() and (neg[r] & ~pos[r]).any()) for r in range(5)]
    assert not counted[3] and not counted[4]


def test_spc_negative_budget_is_floor_of_ratio_times_positives():
    z = _unit(1, 10, 4, seed=7)
    pos = torch.zeros(1, 10, dtype=torch.bool)
    pos[0, :3] = True
    neg = ~pos
    _, counted = segment_prototype_loss(z, pos, neg, neg_ratio=0.3)  # int(3 * 0.3) = 0 negatives
    assert not counted[0]
    _, counted = segment_prototype_loss(z, pos, neg, neg_ratio=0.34)  # int(1.02) = 1
    assert counted[0]


def test_loss_normalizer_ema():
    norm = LossNormalizer(10.0, 0.9)
    norm.update(20)
    assert math.isclose(float(norm()), 11.0, rel_tol=1e-6)
    norm.update(0)                       # counts are floored at 1
    assert math.isclose(float(norm()), 0.9 * 11 + 0.1, rel_tol=1e-6)
    assert "value" in norm.state_dict()


def test_focal_with_smoothing_by_hand():
    """logit 0, label 1, smoothing 0.2: soft target 0.9, p = 0.5, BCE = log 2, p_t = 0.5, alpha_t = 0.5:
    loss = 0.5 * log 2 * 0.5^2. Label 0 gives the same by symmetry (alpha 0.5)."""
    got = sigmoid_focal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]), alpha=0.5, gamma=2.0, label_smoothing=0.2,
                             reduction="none")
    torch.testing.assert_close(got, torch.full((2,), 0.5 * math.log(2) * 0.25))
    # logit 2, label 1: p = sigmoid(2); BCE(2, 0.9); p_t = 0.9 p + 0.1 (1 - p)
    p = 1 / (1 + math.exp(-2))
    bce = -(0.9 * math.log(p) + 0.1 * math.log(1 - p))
    want = 0.5 * bce * (1 - (0.9 * p + 0.1 * (1 - p))) ** 2
    got = sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([1.0]), alpha=0.5, gamma=2.0, label_smoothing=0.2)
    assert math.isclose(float(got), want, rel_tol=1e-5)


def test_iou_and_diou_by_hand():
    """pred (1, 3), target (2, 2): segments [-1, 3] and [-2, 2], IoU 3 / 5; rho = (3 - 1 - 2 + 2) / 2 = 1,
    C = max(1, 2) + max(3, 2) = 5: DIoU loss = 1 - 0.6 + (1 / 5)^2 = 0.44."""
    pred, tgt = torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]])
    assert math.isclose(float(ctr_iou_loss(pred, tgt)), 0.4, rel_tol=1e-6)
    assert math.isclose(float(ctr_diou_loss(pred, tgt)), 0.44, rel_tol=1e-6)
