import pytest
import torch

from vidmamba.nn import CrossAttention, MaskedMHA, masked_attention


def _padded_batch(lengths, dim, seed, junk=True):
    """Random (b, max_len, dim) batch with garbage at padded steps, its mask and the unpadded samples."""
    g = torch.Generator().manual_seed(seed)
    l = max(lengths)
    x = torch.randn(len(lengths), l, dim, generator=g, dtype=torch.float64)
    mask = torch.arange(l)[None, :] < torch.tensor(lengths)[:, None]
    if junk:
        x = torch.where(mask[..., None], x, 1e3 * torch.randn(x.shape, generator=g, dtype=torch.float64))
    return x, mask, [x[i, :n] for i, n in enumerate(lengths)]


def _band_reference(q, k, v, key_mask, window):
    """Full attention with an explicit (l, l) band mask |i - j| <= window // 2 and -inf masking."""
    l = q.shape[2]
    i = torch.arange(l)
    allowed = (i[:, None] - i[None, :]).abs() <= window // 2 if window else torch.ones(l, l, dtype=torch.bool)
    allowed = allowed[None, None] & key_mask[:, None, None, :]
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    attn = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1)
    return attn @ v


@pytest.mark.parametrize("window", [1, 3, 5, 9, 0])
def test_windowed_attention_equals_band_masked_full_attention(window):
    g = torch.Generator().manual_seed(window)
    b, h, l, dh = 3, 2, 11, 4
    q, k, v = (torch.randn(b, h, l, dh, generator=g, dtype=torch.float64) for _ in range(3))
    key_mask = torch.arange(l)[None, :] < torch.tensor([11, 6, 1])[:, None]
    out = masked_attention(q, k, v, key_mask, window_size=window)
    ref = _band_reference(q, k, v, key_mask, window)
    valid = key_mask[:, None, :, None].expand_as(out)  # padded queries may differ (they are zeroed by the module)
    assert torch.allclose(out[valid], ref[valid])


def test_windowed_module_equals_global_when_window_covers_sequence():
    torch.manual_seed(0)
    x, mask, _ = _padded_batch([7, 5], 8, 0)
    local = MaskedMHA(8, n_heads=2, window_size=13).double()
    full = MaskedMHA(8, n_heads=2, window_size=0).double()
    full.load_state_dict(local.state_dict())
    assert torch.allclose(local(x, mask), full(x, mask))


@pytest.mark.parametrize("window", [0, 5])
def test_self_attention_padded_batch_equals_each_sample_alone(window):
    torch.manual_seed(1)
    mha = MaskedMHA(12, n_heads=3, window_size=window).double().eval()
    x, mask, samples = _padded_batch([9, 4, 1], 12, 1)
    out = mha(x, mask)
    for i, s in enumerate(samples):
        n = s.shape[0]
        assert torch.allclose(out[i, :n], mha(s[None])[0])
        assert (out[i, n:] == 0).all()


def test_cross_attention_padding_invariance_and_grad_leak():
    torch.manual_seed(2)
    xa = CrossAttention(8, kv_dim=6, n_heads=2).double().eval()
    v, vmask, vids = _padded_batch([5, 3], 8, 2)
    t, tmask, txts = _padded_batch([2, 4], 6, 3)
    t.requires_grad_(True)
    out = xa(v, t, vmask, tmask)
    assert out.shape == (2, 5, 8)
    for i in range(2):
        n = vids[i].shape[0]
        assert torch.allclose(out[i, :n], xa(vids[i][None], txts[i][None])[0])
    out.sum().backward()
    assert (t.grad[~tmask] == 0).all() and (t.grad[tmask] != 0).any()


def test_empty_context_gives_zeros_not_nan():
    xa = CrossAttention(4, n_heads=1)
    out = xa(torch.randn(2, 3, 4), torch.randn(2, 5, 4), None, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(out).all()
    # with no valid key the attended value is 0, so the output is the projection bias
    assert torch.allclose(out, xa.proj.bias.expand_as(out))


def test_padded_query_gradient_does_not_leak():
    torch.manual_seed(3)
    mha = MaskedMHA(8, n_heads=2, window_size=3).double()
    x, mask, _ = _padded_batch([6, 2], 8, 4)
    x.requires_grad_(True)
    mha(x, mask).pow(2).sum().backward()
    assert (x.grad[~mask] == 0).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        MaskedMHA(8, n_heads=2, window_size=4)
    with pytest.raises(ValueError):
        MaskedMHA(8, n_heads=3)
    with pytest.raises(ValueError):
        MaskedMHA(8, window_size=3)(torch.randn(1, 4, 8), None, torch.randn(1, 2, 8))
    with pytest.raises(TypeError):
        MaskedMHA(8)(torch.randn(1, 4, 8), torch.ones(1, 4))
    with pytest.raises(ValueError):
        MaskedMHA(8)(torch.randn(1, 4, 8), torch.ones(1, 5, dtype=torch.bool))


def test_out_dim():
    assert MaskedMHA(8, n_heads=2, out_dim=16)(torch.randn(2, 3, 8)).shape == (2, 3, 16)


@pytest.mark.parametrize("window", [0, 3])
def test_non_finite_junk_at_pads_is_harmless(window):
    torch.manual_seed(4)
    mha = MaskedMHA(8, n_heads=2, window_size=window).double().eval()
    x, mask, samples = _padded_batch([5, 2], 8, 5)
    x[1, 2] = float("nan")
    x[1, 3:] = float("inf")
    out = mha(x, mask)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[1, :2], mha(samples[1][None])[0])
    xa = CrossAttention(8, n_heads=2).double().eval()
    assert torch.isfinite(xa(samples[0][None].expand(2, -1, -1), x, None, mask)).all()
