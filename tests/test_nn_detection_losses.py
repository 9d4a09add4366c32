"""HieraMamba losses: ACC and SPC against the official functions (rewritten in ``tests/oracles.py``), the loss
normaliser, focal / DIoU by hand."""
import math

import pytest
import torch
import torch.nn.functional as F
from oracles import official_acc, official_spc

from vidmamba.nn import ctr_diou_loss, ctr_iou_loss, lengths_to_mask, sigmoid_focal_loss
from vidmamba.nn.detection_losses import (
    LossNormalizer,
    anchor_contrastive_loss,
    sample_without_replacement,
    segment_prototype_loss,
)


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def _unit_projector(x):
    return F.normalize(x, dim=-1)                # the inputs are already projected: only the official re-normalising


@pytest.mark.parametrize("gap_ratio", [0.2, 0.5])
def test_acc_is_the_official_function_on_an_unpadded_batch(gap_ratio):
    """Every candidate drawn (neg_ratio 100): the official level loss is the mean over all the batch's anchors, i.e.
    the anchor-weighted mean of the per-sample results."""
    za, zc = _unit(3, 6, 8, seed=1), _unit(3, 12, 8, seed=2)
    amask, cmask = torch.ones(3, 6, dtype=torch.bool), torch.ones(3, 12, dtype=torch.bool)
    got = anchor_contrastive_loss(za, zc, amask, cmask, tau=0.1, neg_ratio=100.0, gap_ratio=gap_ratio)
    ref = official_acc(za, zc, amask, cmask, _unit_projector, 0.1, 100.0, gap_ratio)
    assert math.isclose(float(got.mean()), ref, rel_tol=1e-7)    # the official adds 1e-9 to the denominator


@pytest.mark.parametrize("gap_ratio", [0.2, 0.5])
def test_acc_of_a_padded_sample_is_the_official_function_on_it_alone(gap_ratio):
    """The official gap is a fraction of the padded anchor length (a listed departure): each sample of a padded batch
    gets what the official function gives it unpadded."""
    clips = [12, 6, 2]                   # valid clips per sample (even, as the official padded training lengths)
    anchors = [c // 2 for c in clips]
    za, zc = _unit(3, 6, 8, seed=1), _unit(3, 12, 8, seed=2)
    amask, cmask = lengths_to_mask(torch.tensor(anchors), 6), lengths_to_mask(torch.tensor(clips), 12)
    got = anchor_contrastive_loss(za, zc, amask, cmask, tau=0.1, neg_ratio=100.0, gap_ratio=gap_ratio)
    for b in range(3):
        ones_a, ones_c = torch.ones(1, anchors[b], dtype=torch.bool), torch.ones(1, clips[b], dtype=torch.bool)
        ref = official_acc(za[b:b + 1, :anchors[b]], zc[b:b + 1, :clips[b]], ones_a, ones_c, _unit_projector, 0.1,
                           100.0, gap_ratio)
        assert math.isclose(float(got[b]), ref, rel_tol=1e-7, abs_tol=1e-7), b   # the official's + 1e-9
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


def test_spc_is_the_official_function():
    g = torch.Generator().manual_seed(5)
    z = _unit(6, 12, 6, seed=6)
    valid = lengths_to_mask(torch.tensor([12, 9, 12, 7, 12, 5]), 12)
    pos = (torch.rand(6, 12, generator=g) < 0.3) & valid
    span = pos | (torch.rand(6, 12, generator=g) < 0.3)           # the ground truth covers its positive points
    pos[3] = False                       # no positive -> not counted
    span[4] = True                       # no negative -> not counted
    loss, counted = segment_prototype_loss(z, pos, valid & ~span & ~pos, tau=0.07, neg_ratio=100.0)
    ref = official_spc(z, valid, pos, span, _unit_projector, 0.07, 100.0)
    assert math.isclose(float((loss * counted).sum() / counted.sum()), ref, rel_tol=1e-9)
    assert not counted[3] and not counted[4] and int(counted.sum()) == 4


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
