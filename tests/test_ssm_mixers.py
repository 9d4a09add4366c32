"""Tests of the SSM mixers (Mamba1, Mamba2, BiMambaGated, Hydra), their shared layers and the shared-A variant.

Oracles are written here independently of the mixers: a token-by-token Mamba-1 recurrence (conv state + SSM state,
like mamba_ssm's ``step()``), a Mamba-2 loop, and Hydra's explicit L x L quasiseparable matrix. All in float64.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidmamba.ssm import (BiMambaGated, GatedRMSNorm, Hydra, Mamba1, Mamba2, MaskedDepthwiseConv1d, RMSNorm,
                          SharedALog, selective_scan, ssd_scan)
from vidmamba.ssm.scan_kernel import kernel_available

D_MODEL = 8
TOL = dict(rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------------------------------------------------
# helpers


def fast_path_missing(scan: str) -> bool:
    """True while the fast implementation of ``scan`` ("selective" or "ssd") still raises NotImplementedError."""
    try:
        if scan == "selective":
            selective_scan(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), -torch.ones(2, 2), torch.zeros(1, 2, 3),
                           torch.zeros(1, 2, 3), impl="fast")
        else:
            ssd_scan(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2), -torch.ones(2), torch.zeros(1, 3, 1, 2),
                     torch.zeros(1, 3, 1, 2), impl="fast")
    except NotImplementedError:
        return True
    return False


SCAN_OF = {"mamba1": "selective", "mamba1_same": "selective", "mamba1_rev": "selective", "bimamba": "selective",
           "mamba2": "ssd", "mamba2_nbg": "ssd", "hydra": "ssd"}


def make_mixer(name: str, impl: str = "ref", seed: int = 0) -> nn.Module:
    """A tiny float64 mixer with non-trivial biases and dt large enough that the decays matter."""
    torch.manual_seed(seed)
    dt = dict(dt_min=0.05, dt_max=0.8)
    if name in ("mamba1", "mamba1_rev"):
        m = Mamba1(D_MODEL, d_state=4, d_conv=4, bias=True, impl=impl, **dt)
    elif name == "mamba1_same":
        m = Mamba1(D_MODEL, d_state=4, d_conv=3, conv="same", impl=impl, **dt)
    elif name == "mamba2":
        m = Mamba2(D_MODEL, d_state=4, d_conv=4, headdim=4, ngroups=2, chunk_size=4, bias=True, impl=impl, **dt)
    elif name == "mamba2_nbg":
        m = Mamba2(D_MODEL, d_state=4, d_conv=3, headdim=4, conv="same", norm_before_gate=True, chunk_size=4,
                   impl=impl, **dt)
    elif name == "bimamba":
        m = BiMambaGated(D_MODEL, d_state=4, d_conv=4, bias=True, impl=impl, **dt)
    elif name == "hydra":
        m = Hydra(D_MODEL, d_state=4, d_conv=7, headdim=4, ngroups=4, chunk_size=4, bias=True, impl=impl, **dt)
    else:
        raise KeyError(name)
    m = m.double()
    with torch.no_grad():          # move A and D away from their symmetric inits so that indexing errors show
        for pname, p in m.named_parameters():
            if pname.split(".")[-1] in ("A_log", "A_b_log", "D", "D_b") or pname.startswith("norm"):
                p.add_(0.3 * torch.randn_like(p))
    return m


def run(m, x, mask=None):
    """Call a mixer; for the ``mamba1_rev`` case (flagged by an attribute set in the test) with ``reverse=True``."""
    return m(x, mask, reverse=True) if getattr(m, "_test_reverse", False) else m(x, mask)


def ragged_batch(lengths, seed=1):
    """x (b, L, D_MODEL) float64 with large junk at pads; mask (b, L) bool."""
    g = torch.Generator().manual_seed(seed)
    L = max(lengths)
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    x = torch.randn(len(lengths), L, D_MODEL, generator=g, dtype=torch.float64)
    junk = 50 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    return torch.where(mask[..., None], x, junk), mask


def skip_if_missing(name, impl):
    if impl == "auto" and fast_path_missing(SCAN_OF[name]):
        pytest.skip(f"fast {SCAN_OF[name]} scan not implemented yet (raises NotImplementedError)")


# --------------------------------------------------------------------------------------------------------------------
# padding invariance, for every mixer


@pytest.mark.parametrize("impl", ["ref", "auto"])
@pytest.mark.parametrize("name", list(SCAN_OF))
def test_ragged_batch_matches_each_sample_alone(name, impl):
    skip_if_missing(name, impl)
    m = make_mixer(name, impl)
    m._test_reverse = name == "mamba1_rev"
    lengths = [11, 6, 1]
    x, mask = ragged_batch(lengths)
    x.requires_grad_(True)
    params = [p for p in m.parameters()]
    out = run(m, x, mask)
    assert out.shape == x.shape
    assert torch.all(out[~mask] == 0), "outputs at pads must be exact zeros"
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum(), [x] + params)
    gx, gparams = grads[0], grads[1:]
    assert torch.all(gx[~mask] == 0), "pads must not receive gradient"
    acc = [torch.zeros_like(p) for p in params]
    for i, n in enumerate(lengths):
        xi = x[i:i + 1, :n].detach().clone().requires_grad_(True)
        oi = run(m, xi)
        torch.testing.assert_close(out[i, :n], oi[0], **TOL)
        gi = torch.autograd.grad((oi * w[i:i + 1, :n]).sum(), [xi] + params, allow_unused=True)
        torch.testing.assert_close(gx[i, :n], gi[0][0], **TOL)
        acc = [a + (torch.zeros_like(a) if g is None else g) for a, g in zip(acc, gi[1:])]
    for (pname, _), g, a in zip(m.named_parameters(), gparams, acc):
        torch.testing.assert_close(g, a, **TOL, msg=lambda s: f"grad of {pname}: {s}")


@pytest.mark.parametrize("name", list(SCAN_OF))
def test_ref_and_auto_agree(name):
    skip_if_missing(name, "auto")
    ref, fast = make_mixer(name, "ref"), make_mixer(name, "auto")
    x, mask = ragged_batch([13, 9, 2], seed=3)
    outs, grads = [], []
    for m in (ref, fast):
        xi = x.clone().requires_grad_(True)
        o = m(xi, mask)
        outs.append(o)
        grads.append(torch.autograd.grad(o.pow(2).sum(), [xi] + list(m.parameters())))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-7, atol=1e-9)
    for g_fast, g_ref in zip(grads[1], grads[0]):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------------------------------------------------
# Mamba-1: token-by-token recurrence (like mamba_ssm's step())


def mamba1_path_recurrent(xs, z, conv1d, x_proj, dt_proj, A_log, D):
    """One causal Mamba-1 scan path, one token at a time. xs, z (b, l, d) (z may be None) -> y (b, l, d)."""
    b, length, d = xs.shape
    k = conv1d.weight.shape[-1]
    n = A_log.shape[-1]
    r = dt_proj.in_features
    A = -torch.exp(A_log)
    conv_state = xs.new_zeros(b, d, k)
    h = xs.new_zeros(b, d, n)
    ys = []
    for t in range(length):
        conv_state = torch.cat([conv_state[:, :, 1:], xs[:, t, :, None]], dim=-1)
        xc = F.silu((conv_state * conv1d.weight[:, 0]).sum(-1) + conv1d.bias)             # (b, d)
        dt_low, B, C = x_proj(xc).split([r, n, n], dim=-1)
        dt = F.softplus(dt_proj(dt_low))                                                    # (b, d)
        h = torch.exp(dt[..., None] * A) * h + dt[..., None] * B[:, None, :] * xc[..., None]
        y = (h * C[:, None, :]).sum(-1) + D * xc
        ys.append(y if z is None else y * F.silu(z[:, t]))
    return torch.stack(ys, dim=1)


@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_mamba1_equals_token_by_token_recurrence(impl):
    skip_if_missing("mamba1", impl)
    m = make_mixer("mamba1", impl)
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    xs, z = m.in_proj(x).chunk(2, dim=-1)
    expected = m.out_proj(mamba1_path_recurrent(xs, z, m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D))
    torch.testing.assert_close(m(x), expected, **TOL)


def test_mamba1_reverse_is_mixer_on_reversed_sequence():
    m = make_mixer("mamba1")
    x = torch.randn(1, 7, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(m(x, reverse=True), m(x.flip(1)).flip(1), **TOL)
    assert not torch.allclose(m(x, reverse=True), m(x))


# --------------------------------------------------------------------------------------------------------------------
# Mamba-2: loop oracle


def mamba2_loop(m: Mamba2, x):
    """Mamba-2 forward for one unpadded batch, written as a time loop. x (b, l, d_model) -> (b, l, d_model)."""
    b, length, _ = x.shape
    H, P, G, N = m.nheads, m.headdim, m.ngroups, m.d_state
    z, xbc, dt = m.in_proj(x).split([m.d_inner, m.d_inner + 2 * G * N, H], dim=-1)
    k = m.conv1d.weight.shape[-1]
    left = k - 1 if m.conv1d.mode == "causal" else (k - 1) // 2
    w = m.conv1d.weight[:, 0]                                                               # (c, k)
    conv = []
    for t in range(length):
        acc = m.conv1d.bias.clone().expand(b, -1)
        for j in range(k):
            s = t - left + j
            if 0 <= s < length:
                acc = acc + w[:, j] * xbc[:, s]
        conv.append(F.silu(acc))
    xbc = torch.stack(conv, dim=1)
    xs, B, C = xbc.split([m.d_inner, G * N, G * N], dim=-1)
    A = -torch.exp(m.A_log)
    dt = F.softplus(dt + m.dt_bias)                                                         # (b, l, H)
    state = x.new_zeros(b, H, P, N)
    ys = []
    for t in range(length):
        xt = xs[:, t].reshape(b, H, P)
        Bt = B[:, t].reshape(b, G, N).repeat_interleave(H // G, dim=1)                      # head h -> group h*G//H
        Ct = C[:, t].reshape(b, G, N).repeat_interleave(H // G, dim=1)
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]
        state = decay * state + dt[:, t, :, None, None] * xt[..., None] * Bt[:, :, None, :]
        ys.append(((state * Ct[:, :, None, :]).sum(-1) + m.D[:, None] * xt).reshape(b, -1))
    y = torch.stack(ys, dim=1)                                                              # (b, l, d_inner)
    gate = F.silu(z)
    if not m.norm.norm_before_gate:
        y = y * gate
    yg = y.reshape(b, length, G, -1)
    y = (yg / torch.sqrt(yg.pow(2).mean(-1, keepdim=True) + m.norm.eps)).reshape(b, length, -1) * m.norm.weight
    if m.norm.norm_before_gate:
        y = y * gate
    return m.out_proj(y)


@pytest.mark.parametrize("impl", ["ref", "auto"])
@pytest.mark.parametrize("name", ["mamba2", "mamba2_nbg"])
def test_mamba2_equals_loop_oracle(name, impl):
    skip_if_missing(name, impl)
    m = make_mixer(name, impl)
    x = torch.randn(2, 10, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(m(x), mamba2_loop(m, x), **TOL)


# --------------------------------------------------------------------------------------------------------------------
# Hydra: explicit quasiseparable matrix


def hydra_matrix_oracle(m: Hydra, x):
    """Hydra on one unpadded sample via the materialised (L x L) mixing matrix per head. x (1, l, d) -> (1, l, d)."""
    length = x.shape[1]
    H, P, G, N = m.nheads, m.headdim, m.ngroups, m.d_state
    z, xbc, dt = m.in_proj(x)[0].split([m.d_inner, m.d_inner + 4 * G * N, 2 * H], dim=-1)
    k = m.conv1d.weight.shape[-1]
    xbc = F.silu(F.conv1d(xbc.T[None], m.conv1d.weight, m.conv1d.bias, padding=k // 2, groups=xbc.shape[-1]))[0].T
    xs, Bf, Cf, Bb, Cb = xbc.split([m.d_inner, G * N, G * N, G * N, G * N], dim=-1)
    dtf = F.softplus(dt[:, :H] + m.dt_bias)
    dtb = F.softplus(dt[:, H:] + m.dt_bias)
    A = -torch.exp(m.A_log)
    diag = xs @ m.fc_D.weight.T + m.D                                                      # (l, H)
    y = torch.zeros(length, H, P, dtype=x.dtype)
    for h in range(H):
        g = h * G // H
        sl = slice(g * N, (g + 1) * N)
        M = torch.zeros(length, length, dtype=x.dtype)
        for i in range(length):
            M[i, i] = diag[i, h]
            for j in range(i):                      # forward SSM, output shifted by one step
                M[i, j] = (Cf[i - 1, sl] @ Bf[j, sl]) * torch.exp(A[h] * dtf[j + 1:i, h].sum()) * dtf[j, h]
            for j in range(i + 1, length):          # backward SSM, output shifted by one step
                M[i, j] = (Cb[i + 1, sl] @ Bb[j, sl]) * torch.exp(A[h] * dtb[i + 1:j, h].sum()) * dtb[j, h]
        y[:, h] = M @ xs[:, h * P:(h + 1) * P]
    y = y.reshape(length, -1)
    y = y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + m.norm.eps) * m.norm.weight * F.silu(z)
    return m.out_proj(y)[None]


@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_hydra_equals_quasiseparable_matrix(impl):
    skip_if_missing("hydra", impl)
    m = make_mixer("hydra", impl)
    x = torch.randn(1, 9, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(m(x), hydra_matrix_oracle(m, x), **TOL)


def test_hydra_fixed_hyperparameters():
    m = Hydra(16, d_state=8, headdim=8)
    assert m.conv1d.mode == "same" and m.conv1d.kernel_size == (7,)
    assert m.in_proj.weight.shape == (32 + 32 + 4 * 8 + 2 * 4, 16)
    assert m.A_log.shape == (4,) and torch.all(m.A_log == 0)
    assert m.fc_D.bias is None and m.out_proj.bias is None and m.in_proj.bias is None
    assert m.norm.norm_before_gate and m.norm.eps == 1e-5


# --------------------------------------------------------------------------------------------------------------------
# BiMambaGated: the gate selects one branch


def force_gate(m: BiMambaGated, value: float):
    """Forward hook on in_proj that replaces the gate half with ``value``."""
    def hook(_module, _inputs, out):
        return torch.cat([out[..., :m.d_inner], torch.full_like(out[..., m.d_inner:], value)], dim=-1)
    return m.in_proj.register_forward_hook(hook)


@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_bimamba_gate_plus_inf_is_forward_branch(impl):
    skip_if_missing("bimamba", impl)
    m = make_mixer("bimamba", impl)
    x, mask = ragged_batch([9, 5])
    handle = force_gate(m, math.inf)
    out = m(x, mask)
    handle.remove()
    for i, n in enumerate([9, 5]):
        xs = m.in_proj(x[i:i + 1, :n])[..., :m.d_inner]
        y = mamba1_path_recurrent(xs, None, m.conv1d, m.x_proj, m.dt_proj, m.A_log, m.D)
        torch.testing.assert_close(out[i, :n], m.out_proj(y)[0], **TOL)
    assert not torch.allclose(out, m(x, mask))


@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_bimamba_gate_minus_inf_is_backward_branch_on_reversed_input(impl):
    skip_if_missing("bimamba", impl)
    m = make_mixer("bimamba", impl)
    x, mask = ragged_batch([9, 5])
    handle = force_gate(m, -math.inf)
    out = m(x, mask)
    handle.remove()
    for i, n in enumerate([9, 5]):
        xs_rev = m.in_proj(x[i:i + 1, :n].flip(1))[..., :m.d_inner]
        y = mamba1_path_recurrent(xs_rev, None, m.conv1d_b, m.x_proj_b, m.dt_proj_b, m.A_b_log, m.D_b)
        torch.testing.assert_close(out[i, :n], m.out_proj(y)[0].flip(0), **TOL)


def test_bimamba_has_separate_direction_parameters():
    m = BiMambaGated(D_MODEL, d_state=4)
    names = {n for n, _ in m.named_parameters()}
    for base in ("conv1d.weight", "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "D"):
        stem, _, leaf = base.rpartition(".")
        assert base in names and (f"{stem}_b.{leaf}" if stem else f"{leaf}_b") in names
    assert {"A_log", "A_b_log", "in_proj.weight", "out_proj.weight"} <= names
    assert m.in_proj.out_features == 2 * m.d_inner


# --------------------------------------------------------------------------------------------------------------------
# shared A (MambaVL)


def test_shared_a_log_single_parameter_and_summed_gradient():
    torch.manual_seed(0)
    shared = SharedALog(2 * D_MODEL, 4).double()
    m1 = Mamba1(D_MODEL, d_state=4, own_a_log=False, impl="ref", dt_min=0.05, dt_max=0.8).double()
    m2 = Mamba1(D_MODEL, d_state=4, own_a_log=False, impl="ref", dt_min=0.05, dt_max=0.8).double()
    combined = nn.ModuleDict({"shared": shared, "video": m1, "text": m2})
    a_params = [n for n, _ in combined.named_parameters() if "A_log" in n]
    assert a_params == ["shared.A_log"]
    x1 = torch.randn(2, 7, D_MODEL, dtype=torch.float64)
    x2 = torch.randn(2, 5, D_MODEL, dtype=torch.float64)

    def grad_of(use1, use2):
        shared.A_log.grad = None
        loss = 0
        if use1:
            loss = loss + m1(x1, A_log=shared.A_log).pow(2).sum()
        if use2:
            loss = loss + m2(x2, A_log=shared()).sum()
        loss.backward()
        return shared.A_log.grad.clone()

    g1, g2, g12 = grad_of(True, False), grad_of(False, True), grad_of(True, True)
    assert g1.abs().sum() > 0 and g2.abs().sum() > 0
    torch.testing.assert_close(g12, g1 + g2, **TOL)


def test_shared_a_log_errors():
    own = Mamba1(D_MODEL, d_state=4, impl="ref")
    borrowed = Mamba1(D_MODEL, d_state=4, own_a_log=False, impl="ref")
    assert not any("A_log" in n for n, _ in borrowed.named_parameters())
    x = torch.randn(1, 3, D_MODEL)
    with pytest.raises(ValueError, match="needs the shared A_log"):
        borrowed(x)
    with pytest.raises(ValueError, match="expected"):
        borrowed(x, A_log=torch.zeros(2 * D_MODEL, 5))
    with pytest.raises(ValueError, match="owns its A_log"):
        own(x, A_log=torch.zeros(2 * D_MODEL, 4))
    assert borrowed(x, A_log=SharedALog(2 * D_MODEL, 4)).shape == x.shape


# --------------------------------------------------------------------------------------------------------------------
# initialisation


def test_dt_init_in_range_and_a_init():
    dt_min, dt_max = 2e-3, 0.05
    m1 = Mamba1(64, d_state=6, dt_min=dt_min, dt_max=dt_max)
    bi = BiMambaGated(64, d_state=6, dt_min=dt_min, dt_max=dt_max)
    m2 = Mamba2(64, d_state=8, headdim=4, dt_min=dt_min, dt_max=dt_max)
    hy = Hydra(64, d_state=8, headdim=4, dt_min=dt_min, dt_max=dt_max)
    for bias in (m1.dt_proj.bias, bi.dt_proj.bias, bi.dt_proj_b.bias, m2.dt_bias, hy.dt_bias):
        dt = F.softplus(bias.double())
        assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
        assert dt.max() / dt.min() > 3, "log-uniform over the range, not a constant"
    assert getattr(m1.dt_proj.bias, "_no_reinit", False)
    floored = F.softplus(Mamba1(32, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-4).dt_proj.bias.double())
    torch.testing.assert_close(floored, torch.full_like(floored, 1e-4), rtol=1e-4, atol=0)
    std = math.ceil(64 / 16) ** -0.5
    assert m1.dt_proj.weight.abs().max() <= std
    torch.testing.assert_close(Mamba1(64, dt_init="constant", dt_scale=2.0).dt_proj.weight,
                               torch.full((128, 4), 2 * std))
    expected = -torch.arange(1, 7, dtype=torch.float32).expand(128, 6)
    for a_log in (m1.A_log, bi.A_log, bi.A_b_log, SharedALog(128, 6).A_log):
        assert a_log.dtype == torch.float32
        torch.testing.assert_close(-torch.exp(a_log), expected)
    a2 = -torch.exp(m2.A_log)
    assert a2.shape == (m2.nheads,) and a2.max() <= -1 and a2.min() >= -16
    torch.testing.assert_close(-torch.exp(hy.A_log), -torch.ones(hy.nheads))
    for m in (m1, bi, m2, hy):
        for n, p in m.named_parameters():
            if n.split(".")[-1] in ("A_log", "A_b_log", "D", "D_b", "dt_bias"):
                assert getattr(p, "_no_weight_decay", False), n
        assert torch.all(m.D == 1)


def test_mixers_reject_bad_configuration():
    with pytest.raises(ValueError):
        Mamba1(8, conv="centered")
    with pytest.raises(ValueError):
        Mamba2(8, headdim=5)
    with pytest.raises(ValueError):
        Hydra(8, headdim=4, ngroups=3)
    with pytest.raises(ValueError):
        Mamba1(8, dt_init="zeros")
    with pytest.raises(ValueError):
        Mamba1(8, impl="cuda")(torch.randn(1, 2, 8))


def test_bimamba_inference_blend_in_place_equals_training_path():
    """Without grad, BiMambaGated blends in the memory of its own temporaries: the same outputs as with grad."""
    torch.manual_seed(0)
    mixer = BiMambaGated(D_MODEL).double()
    x = torch.randn(3, 11, D_MODEL, dtype=torch.float64)
    mask = torch.arange(11)[None] < torch.tensor([[11], [6], [1]])
    with torch.no_grad():
        inference = mixer(x, mask)
    assert torch.equal(inference, mixer(x, mask).detach())


# --------------------------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------------------------
# layers


CONV_IMPLS = ["fast", pytest.param("kernel", marks=pytest.mark.skipif(not kernel_available(), reason="numba"))]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_masked_conv_matches_plain_conv(k, impl):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    causal = MaskedDepthwiseConv1d(5, k, impl=impl).double()
    torch.testing.assert_close(causal(x), F.conv1d(x, causal.weight, causal.bias, padding=k - 1, groups=5)[..., :9])
    same = MaskedDepthwiseConv1d(5, k, mode="same", impl=impl).double()
    torch.testing.assert_close(same(x), F.conv1d(x, same.weight, same.bias, padding="same", groups=5))
    mask = torch.arange(9)[None] < torch.tensor([[9], [4]])
    junk = torch.where(mask[:, None], x, torch.full_like(x, float("nan")))
    for conv in (causal, same):
        out = conv(junk, mask)
        torch.testing.assert_close(out[1:, :, :4], conv(x[1:, :, :4]))
        torch.testing.assert_close(out[:1], conv(x[:1]))


@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_anticausal_conv_is_causal_conv_on_the_reversed_sequence(impl):
    """"anticausal" = F.conv1d (causal padding) on each sample reversed in time, reversed back: values, gradients, and
    pads (NaN junk after a short sample's end) never reach valid steps."""
    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(5, 4, mode="anticausal", impl=impl).double()
    x = torch.randn(2, 5, 9, dtype=torch.float64, requires_grad=True)
    ref = F.conv1d(x.flip(-1), conv.weight, conv.bias, padding=3, groups=5)[..., :9].flip(-1)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(out, (x, conv.weight, conv.bias), g),
                    torch.autograd.grad(ref, (x, conv.weight, conv.bias), g)):
        torch.testing.assert_close(a, b)
    mask = torch.arange(9)[None] < torch.tensor([[9], [4]])
    junk = torch.where(mask[:, None], x.detach(), torch.full_like(x.detach(), float("nan")))
    torch.testing.assert_close(conv(junk, mask)[1:, :, :4], conv(x.detach()[1:, :, :4]))


@pytest.mark.parametrize("mode", ["causal", "same"])
@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_masked_conv_without_bias_gradients_match_plain_conv(mode, impl):
    """Both convs (shifted multiply-adds, kernel) give F.conv1d's values and gradients (x, weight) without a bias."""
    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(6, 5, bias=False, mode=mode, impl=impl).double()
    x = torch.randn(2, 6, 11, dtype=torch.float64, requires_grad=True)
    left = 4 if mode == "causal" else 2
    ref = F.conv1d(F.pad(x, (left, 4 - left)), conv.weight, groups=6)
    out = conv(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, (x, conv.weight), g)
    ref_grads = torch.autograd.grad(ref, (x, conv.weight), g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_rmsnorms():
    torch.manual_seed(0)
    y, z = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 8, dtype=torch.float64)
    w = torch.randn(8, dtype=torch.float64)
    rms = lambda t: t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + 1e-5)  # noqa: E731
    plain = RMSNorm(8).double()
    plain.weight.data.copy_(w)
    torch.testing.assert_close(plain(y), rms(y) * w)
    before = GatedRMSNorm(8).double()
    before.weight.data.copy_(w)
    torch.testing.assert_close(before(y, z), rms(y) * w * F.silu(z))
    grouped = GatedRMSNorm(8, norm_before_gate=False, group_size=4).double()
    grouped.weight.data.copy_(w)
    g = y * F.silu(z)
    torch.testing.assert_close(grouped(y, z), torch.cat([rms(g[:, :4]), rms(g[:, 4:])], -1) * w)
    with pytest.raises(ValueError):
        GatedRMSNorm(8, group_size=3)
