import math

import pytest
import torch

from vidmamba.nn import (
    DropPath,
    LayerScale,
    Scale,
    SinusoidalPositionEncoding,
    WeightedPool,
    drop_path,
    finite_at_valid,
    lengths_to_mask,
    masked_mean,
    masked_softmax,
    sinusoid_encoding,
)


def test_lengths_to_mask():
    m = lengths_to_mask(torch.tensor([3, 0, 1]))
    assert m.tolist() == [[True, True, True], [False, False, False], [True, False, False]]
    assert lengths_to_mask(torch.tensor([1]), 4).shape == (1, 4)


def test_masked_softmax_and_mean():
    s = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    valid = torch.tensor([[True, True, False], [False, False, False]])
    p = masked_softmax(s, valid)
    e = math.exp(1)
    assert torch.allclose(p[0], torch.tensor([1 / (1 + e), e / (1 + e), 0.0]))
    assert (p[1] == 0).all()
    p.sum().backward()
    assert torch.isfinite(s.grad).all()
    x = torch.arange(12.0).reshape(2, 3, 2)
    assert torch.allclose(masked_mean(x, valid, 1), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))
    assert torch.allclose(masked_mean(x, None, 1), x.mean(1))
    x[0, 2] = float("nan")
    assert torch.allclose(masked_mean(x, valid, 1), torch.tensor([[1.0, 2.0], [0.0, 0.0]]))


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_finite_at_valid_matches_the_masked_copy(chunk):
    g = torch.Generator().manual_seed(0)
    for trial in range(40):
        x = torch.randn(3, 7, 5, generator=g)
        mask = torch.rand(3, 7, generator=g) < 0.6
        for _ in range(trial % 3):  # 0, 1 or 2 non-finite values, anywhere (valid step or pad)
            b, t, d = (int(torch.randint(n, (1,), generator=g)) for n in x.shape)
            x[b, t, d] = (float("nan"), float("inf"), -float("inf"))[trial % 3]
        assert finite_at_valid(x, mask, chunk) == bool(torch.isfinite(x[mask]).all())
    x = torch.zeros(1, 9, 2)
    x[0, 8, 1] = float("nan")                                   # in the last chunk of 4
    assert not finite_at_valid(x, torch.ones(1, 9, dtype=torch.bool), 4)
    assert finite_at_valid(x, torch.arange(9)[None] < 8, 4)   # ... at a pad


def test_weighted_pool_ignores_pads_and_matches_manual():
    torch.manual_seed(0)
    pool = WeightedPool(6).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    out = pool(x, mask)
    junk = x.clone()
    junk[1, 2:] = 1e4
    junk[1, 3] = float("nan")
    assert torch.allclose(pool(junk, mask), out)
    assert torch.allclose(out[1], pool(x[1:2, :2])[0])
    s = x[1, :2] @ pool.score.weight[0]
    w = torch.softmax(s, 0)
    assert torch.allclose(out[1], (w[:, None] * x[1, :2]).sum(0))
    assert torch.allclose(pool.weights(x, mask).sum(-1), torch.ones(2, dtype=torch.float64))


def test_sinusoid_values():
    pe = sinusoid_encoding(6, 8)
    assert pe.shape == (6, 8)
    for t in range(6):
        for i in range(4):
            w = 10000 ** (-2 * i / 8)
            assert pe[t, 2 * i].item() == pytest.approx(math.sin(t * w), abs=1e-6)
            assert pe[t, 2 * i + 1].item() == pytest.approx(math.cos(t * w), abs=1e-6)
    with pytest.raises(ValueError):
        sinusoid_encoding(4, 5)


def test_position_encoding_masks_and_interpolates():
    enc = SinusoidalPositionEncoding(4, max_len=5, scale=0.5)
    x = torch.zeros(2, 3, 4)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    out = enc(x, mask)
    assert torch.allclose(out[0], 0.5 * sinusoid_encoding(3, 4))
    assert (out[1, 1:] == 0).all()
    # longer than max_len: linear interpolation of the table (align_corners=False)
    long = enc.encoding(12)
    table = 0.5 * sinusoid_encoding(5, 4)
    for i in range(12):
        src = min(max((i + 0.5) * 5 / 12 - 0.5, 0.0), 4.0)
        lo = int(math.floor(src))
        hi = min(lo + 1, 4)
        expected = table[lo] * (1 - (src - lo)) + table[hi] * (src - lo)
        assert torch.allclose(long[i], expected, atol=1e-6)
    assert enc(torch.zeros(1, 12, 4)).shape == (1, 12, 4)


def test_drop_path():
    x = torch.randn(64, 3, 5)
    dp = DropPath(0.5)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    dropped = (y == 0).flatten(1).all(1)
    kept = torch.isclose(y, 2 * x).flatten(1).all(1)
    assert (dropped | kept).all() and dropped.any() and kept.any()
    assert torch.equal(drop_path(x, 0.0, True), x)
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_layer_scale_and_scale():
    ls = LayerScale(4, init_value=1e-4)
    x = torch.randn(2, 3, 4)
    assert torch.allclose(ls(x), 1e-4 * x)
    ls_dp = LayerScale(4, drop_path=0.9).eval()
    assert torch.allclose(ls_dp(x), 1e-4 * x)
    sc = Scale(2.0)
    assert torch.allclose(sc(x), 2 * x)
    sc(x).sum().backward()
    assert sc.scale.grad is not None
