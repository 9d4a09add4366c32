import math

import pytest
import torch
import torch.nn.functional as F

from vidmamba.nn import ConvHead, DenseGroundingHead, MaskedConv1d, SaliencyHead

CONFIGS = {
    "univtg": dict(offset_act="sigmoid"),
    "hieramamba": dict(with_ln=True, use_scale=True, offset_act="relu", num_levels=3),
}


def _batch(lengths, dim, seed):
    g = torch.Generator().manual_seed(seed)
    l = max(lengths)
    mask = torch.arange(l)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(len(lengths), l, dim, generator=g, dtype=torch.float64)
    x = torch.where(mask[..., None], x, 1e3 * torch.ones_like(x))  # garbage at pads
    return x, mask


def test_masked_conv_padding_invariance_and_stride():
    torch.manual_seed(0)
    conv = MaskedConv1d(4, 5, 3).double()
    x, mask = _batch([7, 3], 4, 0)
    y, m = conv(x, mask)
    assert torch.equal(m, mask)
    assert torch.allclose(y[1, :3], conv(x[1:2, :3])[0][0])
    assert (y[1, 3:] == 0).all()
    down = MaskedConv1d(4, 4, 5, stride=2).double()
    yd, md = down(x, mask)
    assert yd.shape == (2, 4, 4) and md.tolist() == [[True] * 4, [True, True, False, False]]
    assert torch.allclose(yd[1, :2], down(x[1:2, :3])[0][0])
    with pytest.raises(ValueError):
        MaskedConv1d(4, 4, 4)


def test_conv_head_equals_plain_conv_stack_without_padding():
    torch.manual_seed(1)
    head = ConvHead(6, 2, hidden_dim=5, num_layers=3).double()
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    h = x.transpose(1, 2)
    for conv in head.hidden:
        h = F.relu(F.conv1d(h, conv.conv.weight, conv.conv.bias, padding=1))
    h = F.conv1d(h, head.out.conv.weight, head.out.conv.bias, padding=1)
    assert torch.allclose(head(x), h.transpose(1, 2))
    assert len(head.hidden) == 2


@pytest.mark.parametrize("name", list(CONFIGS))
def test_dense_head_invariant_to_padding(name):
    torch.manual_seed(2)
    head = DenseGroundingHead(8, **CONFIGS[name]).double().eval()
    x, mask = _batch([10, 6, 1], 8, 1)
    logits, off = head(x, mask)
    assert logits.shape == (3, 10) and off.shape == (3, 10, 2)
    for i, n in enumerate([10, 6, 1]):
        lo, of = head(x[i:i + 1, :n])
        assert torch.allclose(logits[i, :n], lo[0]) and torch.allclose(off[i, :n], of[0])
        assert (logits[i, n:] == 0).all() and (off[i, n:] == 0).all()
    assert (off >= 0).all()
    if name == "univtg":
        assert (off <= 1).all()


def test_dense_head_no_gradient_leak_from_pads():
    torch.manual_seed(3)
    head = DenseGroundingHead(8, with_ln=True).double()
    x, mask = _batch([7, 4], 8, 2)
    x.requires_grad_(True)
    logits, off = head(x, mask)
    (logits.sum() + off.sum()).backward()
    assert (x.grad[~mask] == 0).all()


def test_dense_head_levels_use_their_scale():
    torch.manual_seed(4)
    head = DenseGroundingHead(8, **CONFIGS["hieramamba"]).double()
    with torch.no_grad():
        head.scales[1].scale.fill_(3.0)
    feats = [torch.randn(2, 8, 8, dtype=torch.float64), torch.randn(2, 4, 8, dtype=torch.float64)]
    masks = [torch.ones(2, 8, dtype=torch.bool), torch.ones(2, 4, dtype=torch.bool)]
    logits, offs = head(feats, masks)
    assert [t.shape for t in logits] == [(2, 8), (2, 4)]
    raw = head.reg(feats[1], masks[1])
    assert torch.allclose(offs[1], F.relu(3.0 * raw))
    with pytest.raises(ValueError):
        head(feats * 2, masks * 2)


def test_prior_prob_bias():
    head = DenseGroundingHead(4, prior_prob=0.01)
    assert head.cls.out.conv.bias.item() == pytest.approx(-math.log(99))


def test_saliency_head():
    torch.manual_seed(5)
    sh = SaliencyHead(6).double()
    v, vmask = _batch([5, 3], 6, 3)
    q, qmask = _batch([4, 2], 6, 4)
    sal = sh(v, vmask, q, qmask)
    assert sal.shape == (2, 5) and (sal[1, 3:] == 0).all()
    alone = sh(v[1:2, :3], None, q[1:2, :2])
    assert torch.allclose(sal[1, :3], alone[0])
    sentence = sh.pool(q[1:2, :2])[0]
    assert torch.allclose(alone[0], F.cosine_similarity(v[1, :3], sentence[None], dim=-1))


def test_non_finite_junk_at_pads_is_harmless():
    torch.manual_seed(6)
    head = DenseGroundingHead(8, with_ln=True).double().eval()
    x, mask = _batch([6, 3], 8, 5)
    x[1, 3] = float("nan")
    x[1, 4:] = float("inf")
    logits, off = head(x, mask)
    assert torch.isfinite(logits).all() and torch.isfinite(off).all()
    lo, of = head(x[1:2, :3])
    assert torch.allclose(logits[1, :3], lo[0]) and torch.allclose(off[1, :3], of[0])
    sh = SaliencyHead(8).double()
    assert torch.isfinite(sh(x, mask, x, mask)).all()
