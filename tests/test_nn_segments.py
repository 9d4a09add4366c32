import pytest
import torch

from vidmamba.nn import (
    ctr_diou_loss,
    ctr_iou_loss,
    cxw_to_xx,
    offsets_to_segments,
    pairwise_diou,
    pairwise_giou,
    pairwise_iou,
    segment_diou,
    segment_giou,
    segment_iou,
    xx_to_cxw,
)

# (a, b, IoU, GIoU, DIoU) worked by hand
CASES = [
    ((0.0, 4.0), (2.0, 6.0), 1 / 3, 1 / 3, 1 / 3 - (2 / 6) ** 2),   # partial overlap: inter 2, union 6, rho 2, C 6
    ((0.0, 1.0), (3.0, 5.0), 0.0, -0.4, -(3.5 / 5) ** 2),           # disjoint: union 3, C 5, rho 3.5
    ((0.0, 10.0), (2.0, 4.0), 0.2, 0.2, 0.2 - (2 / 10) ** 2),       # contained: rho 2, C 10
    ((1.0, 3.0), (1.0, 3.0), 1.0, 1.0, 1.0),                         # identical
    ((0.0, 2.0), (2.0, 3.0), 0.0, 0.0, -(1.5 / 3) ** 2),             # touching: C = U = 3
]


@pytest.mark.parametrize("a,b,iou,giou,diou", CASES)
def test_hand_values(a, b, iou, giou, diou):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    assert segment_iou(a, b).item() == pytest.approx(iou)
    assert segment_giou(a, b).item() == pytest.approx(giou)
    assert segment_diou(a, b).item() == pytest.approx(diou)
    # symmetric
    assert segment_diou(b, a).item() == pytest.approx(diou)


def test_degenerate_segment_has_zero_iou():
    z = torch.tensor([2.0, 2.0])
    assert segment_iou(z, z).item() == 0.0
    assert torch.isfinite(segment_giou(z, z)) and torch.isfinite(segment_diou(z, z))


def test_pairwise_matches_elementwise_loops():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(5, 2, generator=g, dtype=torch.float64).sort(-1).values * 10
    b = torch.rand(7, 2, generator=g, dtype=torch.float64).sort(-1).values * 10
    for pair_fn, elem_fn in ((pairwise_iou, segment_iou), (pairwise_giou, segment_giou),
                             (pairwise_diou, segment_diou)):
        m = pair_fn(a, b)
        assert m.shape == (5, 7)
        for i in range(5):
            for j in range(7):
                assert m[i, j].item() == pytest.approx(elem_fn(a[i], b[j]).item())


def test_iou_bounds_and_ordering():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(200, 2, generator=g).sort(-1).values
    b = torch.rand(200, 2, generator=g).sort(-1).values
    iou, giou, diou = segment_iou(a, b), segment_giou(a, b), segment_diou(a, b)
    assert (iou >= 0).all() and (iou <= 1).all()
    assert (giou <= iou + 1e-6).all() and (giou >= -1 - 1e-6).all()
    assert (diou <= iou + 1e-6).all() and (diou >= -1 - 1e-6).all()


def test_span_conversions_roundtrip():
    xx = torch.tensor([[1.0, 5.0], [2.0, 2.5]])
    cxw = xx_to_cxw(xx)
    assert torch.allclose(cxw, torch.tensor([[3.0, 4.0], [2.25, 0.5]]))
    assert torch.allclose(cxw_to_xx(cxw), xx)


def test_offsets_to_segments():
    pts = torch.tensor([0.0, 4.0, 8.0])
    off = torch.tensor([[0.0, 1.0], [0.5, 0.25], [2.0, 0.0]])
    segs = offsets_to_segments(pts, off, stride=4)
    assert torch.allclose(segs, torch.tensor([[0.0, 4.0], [2.0, 5.0], [0.0, 8.0]]))
    per_point = offsets_to_segments(pts, off, stride=torch.tensor([1.0, 2.0, 4.0]))
    assert torch.allclose(per_point, torch.tensor([[0.0, 1.0], [3.0, 4.5], [0.0, 8.0]]))


def _hieramamba_formulas(p, t):
    """The centre-offset formulas exactly as written in the official ``libs/modeling/loss.py``."""
    lp, rp, lg, rg = p[..., 0], p[..., 1], t[..., 0], t[..., 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union
    rho = 0.5 * (rp - lp - rg + lg)
    len_c = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    return 1 - iou, 1 - iou + (rho / len_c) ** 2


def test_ctr_losses_match_hieramamba_formulas():
    g = torch.Generator().manual_seed(2)
    p = torch.rand(64, 2, generator=g, dtype=torch.float64) * 5 + 0.01
    t = torch.rand(64, 2, generator=g, dtype=torch.float64) * 5 + 0.01
    iou_ref, diou_ref = _hieramamba_formulas(p, t)
    assert torch.allclose(ctr_iou_loss(p, t, reduction="none"), iou_ref)
    assert torch.allclose(ctr_diou_loss(p, t, reduction="none"), diou_ref)
    assert ctr_diou_loss(p, t, reduction="sum").item() == pytest.approx(diou_ref.sum().item())
    mask = torch.arange(64) % 3 == 0
    assert ctr_iou_loss(p, t, mask=mask).item() == pytest.approx(iou_ref[mask].mean().item())


def test_ctr_losses_reject_negative_offsets():
    with pytest.raises(ValueError):
        ctr_diou_loss(torch.tensor([[-1.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
