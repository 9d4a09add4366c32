import math

import pytest
import torch
import torch.nn.functional as F

from vidmamba.nn import (
    cosine_similarity_matrix,
    foreground_bce_loss,
    giou_loss,
    label_smoothing_cross_entropy,
    multi_positive_info_nce,
    random_subset,
    reduce_loss,
    saliency_inter_loss,
    saliency_intra_loss,
    sigmoid_focal_loss,
    smooth_l1_span_loss,
    soft_target_cross_entropy,
    symmetric_info_nce,
)


def _focal_direct(x: float, t: float, alpha: float, gamma: float, eps: float) -> float:
    """Focal loss of one element written out with probabilities."""
    p = 1 / (1 + math.exp(-x))
    ts = t * (1 - eps) + eps / 2
    ce = -(ts * math.log(p) + (1 - ts) * math.log(1 - p))
    p_t = p * ts + (1 - p) * (1 - ts)
    a_t = 1.0 if alpha < 0 else (alpha if t >= 0.5 else 1 - alpha)
    return a_t * ce * (1 - p_t) ** gamma


@pytest.mark.parametrize("alpha,gamma,eps", [(0.25, 2.0, 0.0), (0.5, 2.0, 0.2), (-1.0, 1.5, 0.1), (0.5, 0.0, 0.0)])
def test_focal_loss_matches_direct_formula(alpha, gamma, eps):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64) * 3
    t = (torch.rand(4, 9, generator=g) > 0.6).double()
    got = sigmoid_focal_loss(x, t, alpha, gamma, eps, reduction="none")
    for i in range(4):
        for j in range(9):
            assert got[i, j].item() == pytest.approx(_focal_direct(x[i, j].item(), t[i, j].item(), alpha, gamma, eps))


def test_focal_loss_reductions_and_mask():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, generator=g)
    t = (torch.rand(3, 5, generator=g) > 0.5).float()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    per = sigmoid_focal_loss(x, t, 0.5, 2.0, 0.2, reduction="none")
    assert torch.allclose(sigmoid_focal_loss(x, t, 0.5, 2.0, 0.2, mask=mask, reduction="sum"), per[mask].sum())
    assert torch.allclose(sigmoid_focal_loss(x, t, 0.5, 2.0, 0.2, mask=mask), per[mask].mean())
    assert (sigmoid_focal_loss(x, t, 0.5, 2.0, 0.2, mask=mask, reduction="none")[~mask] == 0).all()
    # gamma 0, no alpha, no smoothing: plain BCE
    assert torch.allclose(sigmoid_focal_loss(x, t, -1, 0.0), F.binary_cross_entropy_with_logits(x, t))
    with pytest.raises(ValueError):
        sigmoid_focal_loss(x, t, reduction="avg")


def test_reduce_loss_empty_mask_is_zero_with_graph():
    x = torch.randn(4, requires_grad=True)
    out = reduce_loss(x ** 2, torch.zeros(4, dtype=torch.bool))
    assert out.item() == 0.0
    out.backward()
    assert (x.grad == 0).all()


def test_foreground_bce_hand_values():
    logits = torch.zeros(2, 4)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    # valid: 3 fg (w 1), 4 bg (w 0.1) -> (3 + 0.4) log 2 / 7
    expected = (3 + 0.4) * math.log(2) / 7
    assert foreground_bce_loss(logits, targets, mask, bg_weight=0.1).item() == pytest.approx(expected)
    logits2 = torch.tensor([[2.0, -1.0, 0.5, 9.0]])
    t2 = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    m2 = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    exp2 = (math.log(1 + math.exp(-2.0)) + 0.5 * math.log(1 + math.exp(-1.0)) + 0.5 * math.log(1 + math.exp(0.5))) / 3
    assert foreground_bce_loss(logits2, t2, m2, bg_weight=0.5).item() == pytest.approx(exp2)


def test_span_losses_hand_values():
    pred = torch.tensor([[[0.0, 0.4], [0.1, 0.9], [5.0, 6.0]]])
    gt = torch.tensor([[[0.0, 0.6], [0.1, 0.5], [0.0, 0.0]]])
    fg = torch.tensor([[True, True, False]])
    # smooth-L1 (beta 1): 0.5 * 0.2^2 = 0.02 and 0.5 * 0.4^2 = 0.08; mean over fg clips
    assert smooth_l1_span_loss(pred, gt, fg).item() == pytest.approx((0.02 + 0.08) / 2)
    # (0,.4) vs (0,.6): IoU 2/3 = GIoU; (.1,.9) vs (.1,.5): 0.5
    assert giou_loss(pred, gt, fg).item() == pytest.approx(((1 - 2 / 3) + 0.5) / 2)
    disjoint = giou_loss(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 5.0]), reduction="none")
    assert disjoint.item() == pytest.approx(1.4)


def _manual_multi_pos(sim, pos, neg, tau):
    rows = []
    for i in range(sim.shape[0]):
        if not pos[i].any():
            continue
        e = [math.exp(s / tau) for s in sim[i].tolist()]
        num = sum(v for v, p in zip(e, pos[i].tolist()) if p)
        den = num + sum(v for v, n, p in zip(e, neg[i].tolist(), pos[i].tolist()) if n and not p)
        rows.append(-math.log(num / den))
    return sum(rows) / len(rows)


def test_info_nce_single_positive_equals_log_softmax():
    g = torch.Generator().manual_seed(2)
    sim = torch.rand(6, 10, generator=g, dtype=torch.float64) * 2 - 1
    target = torch.randint(0, 10, (6,), generator=g)
    pos = F.one_hot(target, 10).bool()
    expected = -torch.log_softmax(sim / 0.07, dim=-1)[torch.arange(6), target].mean()
    assert torch.allclose(multi_positive_info_nce(sim, pos, tau=0.07), expected)


def test_multi_positive_info_nce_matches_manual():
    g = torch.Generator().manual_seed(3)
    sim = torch.rand(5, 12, generator=g, dtype=torch.float64) * 2 - 1
    pos = torch.rand(5, 12, generator=g) > 0.7
    pos[2] = False  # a row without positives does not count
    neg = (torch.rand(5, 12, generator=g) > 0.5) & ~pos
    got = multi_positive_info_nce(sim, pos, neg, tau=0.1)
    assert got.item() == pytest.approx(_manual_multi_pos(sim, pos, neg, 0.1))
    per_row = multi_positive_info_nce(sim, pos, neg, tau=0.1, reduction="none")
    assert per_row[2].item() == 0.0
    # row_mask excludes rows from the mean
    row_mask = torch.tensor([True, False, True, True, True])
    keep = pos.clone()
    keep[1] = False
    assert multi_positive_info_nce(sim, pos, neg, 0.1, row_mask).item() == pytest.approx(
        _manual_multi_pos(sim, keep, neg, 0.1))


def test_info_nce_no_positive_is_finite_zero_grad():
    sim = torch.randn(3, 4, requires_grad=True)
    loss = multi_positive_info_nce(sim, torch.zeros(3, 4, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(sim.grad).all() and (sim.grad == 0).all()


def test_symmetric_info_nce_matches_cross_entropy():
    g = torch.Generator().manual_seed(4)
    sim = torch.rand(7, 7, generator=g, dtype=torch.float64)
    idx = torch.arange(7)
    expected = F.cross_entropy(sim / 0.07, idx) + F.cross_entropy(sim.t() / 0.07, idx)
    assert torch.allclose(symmetric_info_nce(sim, 0.07), expected)


def test_saliency_losses_match_manual():
    g = torch.Generator().manual_seed(5)
    b, l, d, tau = 3, 6, 8, 0.07
    vid = torch.randn(b, l, d, generator=g, dtype=torch.float64)
    txt = torch.randn(b, d, generator=g, dtype=torch.float64)
    sal = torch.randint(0, 5, (b, l), generator=g).double()
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4], dtype=torch.bool)
    pos_idx = torch.tensor([2, 3, 0])
    sal[2, 0], sal[2, 1] = 4.0, 1.0  # video 2 has one lower clip
    sal[1, 4:] = -5.0  # lower-saliency pads must not count as negatives

    # inter: positive clip vs every sentence
    pv = vid[torch.arange(b), pos_idx]
    sim = torch.stack([torch.stack([F.cosine_similarity(pv[i], txt[j], dim=0) for j in range(b)]) for i in range(b)])
    ls_r = torch.log_softmax(sim / tau, 1).diag().mean()
    ls_c = torch.log_softmax(sim.t() / tau, 1).diag().mean()
    assert saliency_inter_loss(vid, txt, pos_idx, tau).item() == pytest.approx(-(ls_r + ls_c).item())

    # intra: per video, the positive against valid lower-saliency clips
    total = 0.0
    for i in range(b):
        cand = [t for t in range(l) if mask[i, t] and (t == pos_idx[i] or sal[i, t] < sal[i, pos_idx[i]])]
        s = torch.stack([F.cosine_similarity(vid[i, t], txt[i], dim=0) for t in cand]) / tau
        total += -torch.log_softmax(s, 0)[cand.index(int(pos_idx[i]))].item()
    assert saliency_intra_loss(vid, txt, sal, pos_idx, mask, tau).item() == pytest.approx(total / b)


def test_saliency_intra_all_equal_scores_is_zero():
    vid, txt = torch.randn(2, 5, 4), torch.randn(2, 4)
    loss = saliency_intra_loss(vid, txt, torch.ones(2, 5), torch.tensor([0, 1]), torch.ones(2, 5, dtype=torch.bool))
    assert loss.item() == 0.0


def test_cosine_similarity_matrix():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
    r = 1 / math.sqrt(2)
    assert torch.allclose(cosine_similarity_matrix(a, b), torch.tensor([[1.0, 0.0, -r], [r, r, -1.0]]), atol=1e-6)


def test_label_smoothing_ce_matches_torch():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(8, 5, generator=g)
    target = torch.randint(0, 5, (8,), generator=g)
    for eps in (0.0, 0.1, 0.3):
        assert torch.allclose(label_smoothing_cross_entropy(logits, target, eps),
                              F.cross_entropy(logits, target, label_smoothing=eps), atol=1e-6)
    soft = torch.softmax(torch.randn(8, 5, generator=g), -1)
    assert torch.allclose(soft_target_cross_entropy(logits, soft), F.cross_entropy(logits, soft), atol=1e-6)


def test_random_subset():
    g = torch.Generator().manual_seed(7)
    cand = torch.rand(6, 20, generator=g) > 0.5
    cand[0] = False
    k = torch.tensor([3, 3, 0, 100, 1, 5])
    pick = random_subset(cand, k, generator=g)
    assert not (pick & ~cand).any()
    assert pick.sum(1).tolist() == torch.minimum(cand.sum(1), k).tolist()
    assert (random_subset(cand, 2, generator=g).sum(1) == cand.sum(1).clamp(max=2)).all()
    # every candidate can be drawn
    hits = sum(random_subset(cand[1:2], 1, generator=g).int() for _ in range(300))
    assert (hits[cand[1:2]] > 0).all()


# --------------------------------------------------------------------------------------------------------------------
# graded saliency ranking
# --------------------------------------------------------------------------------------------------------------------
def test_saliency_rank_loss_hand_computed():
    from vidmamba.nn.losses import saliency_rank_loss

    # video 0: ordered pairs (0>1) 0.2+0.4, (0>2) 0.2+0.2, (2>1) 0.2+0.2 -> 1.4 / 3
    # video 1: (0>2) 0.2-0, (1>2) 0.2-0.1; the tie (0, 1) and the padded clip 3 do not count -> 0.3 / 2
    # video 2: all targets equal -> no pair -> left out of the mean
    scores = torch.tensor([[0.1, 0.5, 0.3, 0.0], [0.0, 0.1, 0.0, 5.0], [1.0, 0.0, 3.0, 0.0]], requires_grad=True)
    targets = torch.tensor([[3.0, 1.0, 2.0, 0.0], [2.0, 2.0, 1.0, 9.0], [2.0, 2.0, 2.0, 2.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    loss = saliency_rank_loss(scores, targets, mask, margin=0.2)
    assert loss.item() == pytest.approx((1.4 / 3 + 0.3 / 2) / 2)
    loss.backward()
    assert scores.grad[2].abs().sum() == 0 and scores.grad[1, 3] == 0
    # min_gap: only the pair (0 > 1) of video 0 (gap 2) survives a gap of 1.5 -> 0.6
    assert saliency_rank_loss(scores[:1], targets[:1], mask[:1], 0.2, min_gap=1.5).item() == pytest.approx(0.6)
    # scores already ordered with more than the margin -> 0
    ordered = torch.tensor([[0.9, 0.1, 0.5]])
    assert saliency_rank_loss(ordered, targets[:1, :3], mask[:1, :3], margin=0.2).item() == 0.0
    # no pair anywhere -> 0, still differentiable
    flat = saliency_rank_loss(scores[2:], targets[2:], mask[2:])
    assert flat.item() == 0.0 and flat.requires_grad


def test_saliency_rank_loss_clip_cap_scores_one_random_subset():
    from itertools import combinations

    from vidmamba.nn.losses import saliency_rank_loss

    g = torch.Generator().manual_seed(0)
    scores, targets = torch.randn(1, 6, generator=g), torch.randn(1, 6, generator=g)
    mask = torch.ones(1, 6, dtype=torch.bool)
    full = saliency_rank_loss(scores, targets, mask, 0.3)
    assert saliency_rank_loss(scores, targets, mask, 0.3, max_clips=6).item() == pytest.approx(full.item())
    capped = saliency_rank_loss(scores, targets, mask, 0.3, max_clips=3, generator=torch.Generator().manual_seed(1))
    subsets = [saliency_rank_loss(scores[:, list(c)], targets[:, list(c)], mask[:, list(c)], 0.3).item()
               for c in combinations(range(6), 3)]
    assert any(capped.item() == pytest.approx(v) for v in subsets)
    with pytest.raises(ValueError, match="one shape"):
        saliency_rank_loss(scores, targets[:, :5], mask)
