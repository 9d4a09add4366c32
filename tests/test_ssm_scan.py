"""Fast scans (chunked Mamba-1 scan with custom backward, chunked SSD) against the sequential references."""
import importlib

import pytest
import torch
from hypothesis import given, settings, strategies as st

from vidmamba.ssm import selective_scan, ssd_scan

sel_mod = importlib.import_module("vidmamba.ssm.selective_scan")

RTOL, ATOL = 1e-4, 1e-5


def close(a, b, rtol=RTOL, atol=ATOL):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def m1_inputs(b=2, d=4, n=3, L=20, g=None, dtype=torch.float32, seed=0, big=False):
    """u, delta, A, B, C, D, z, delta_bias for the Mamba-1 layout; g=None: B/C (b, n, l), else (b, g, n, l)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    bc = (b, n, L) if g is None else (b, g, n, L)
    delta = torch.full((b, d, L), 50.0, dtype=dtype) if big else r(b, d, L).abs() * 0.5
    A = torch.full((d, n), -16.0, dtype=dtype) if big else -(torch.rand(d, n, generator=gen, dtype=dtype) + 0.2)
    return dict(u=r(b, d, L), delta=delta, A=A, B=r(*bc), C=r(*bc), D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.3)


def m2_inputs(b=2, L=20, h=4, p=3, n=5, g=1, dtype=torch.float32, seed=0, big=False):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    dt = torch.full((b, L, h), 50.0, dtype=dtype) if big else r(b, L, h).abs() * 0.5
    A = torch.full((h,), -16.0, dtype=dtype) if big else -(torch.rand(h, generator=gen, dtype=dtype) + 0.2)
    return dict(x=r(b, L, h, p), dt=dt, A=A, B=r(b, L, g, n), C=r(b, L, g, n), D=r(h), z=r(b, L, h, p),
                dt_bias=r(h) * 0.3)


def ragged_mask(lengths, L):
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]


def m1(kw, **extra):
    return selective_scan(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw.get("D"), kw.get("z"),
                          kw.get("delta_bias"), extra.pop("softplus", True), return_last_state=True, **extra)


def m2(kw, **extra):
    return ssd_scan(kw["x"], kw["dt"], kw["A"], kw["B"], kw["C"], kw.get("D"), kw.get("z"), kw.get("dt_bias"),
                    extra.pop("softplus", True), return_last_state=True, **extra)


def drop(kw, *names):
    return {k: v for k, v in kw.items() if k not in names}


# ----------------------------------------------------------------------------------------------- agreement fwd/last
@pytest.mark.parametrize("L", [1, 7, 64, 65, 200])
@pytest.mark.parametrize("g", [None, 1, 2])
@pytest.mark.parametrize("extras", ["all", "plain"])
def test_selective_scan_fast_matches_ref(L, g, extras):
    kw = m1_inputs(L=L, g=g)
    soft = extras == "all"
    if extras == "plain":
        kw = drop(kw, "D", "z", "delta_bias")
    mask = ragged_mask([L, max(1, L // 2)], L)
    for m in (None, mask):
        y_ref, h_ref = m1(kw, softplus=soft, mask=m, impl="ref")
        for chunk in (16, None):
            y, h = sel_mod._selective_scan_fast(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], kw.get("D"),
                                                kw.get("z"), kw.get("delta_bias"), soft, m, chunk_size=chunk)
            close(y, y_ref)
            close(h, h_ref)


@pytest.mark.parametrize("L", [1, 7, 64, 65, 200])
@pytest.mark.parametrize("g", [1, 2])
@pytest.mark.parametrize("extras", ["all", "plain"])
def test_ssd_fast_matches_ref(L, g, extras):
    kw = m2_inputs(L=L, g=g)
    soft = extras == "all"
    if extras == "plain":
        kw = drop(kw, "D", "z", "dt_bias")
    mask = ragged_mask([L, max(1, L // 2)], L)
    for m in (None, mask):
        y_ref, h_ref = m2(kw, softplus=soft, mask=m, impl="ref")
        for chunk in (16, 64):
            y, h = m2(kw, softplus=soft, mask=m, chunk_size=chunk, impl="fast")
            close(y, y_ref)
            close(h, h_ref)


needs_numba = pytest.mark.skipif(not importlib.import_module("vidmamba.ssm.scan_kernel").kernel_available(),
                                 reason="numba not importable")


@needs_numba
@pytest.mark.parametrize("L", [1, 7, 65])
@pytest.mark.parametrize("g", [1, 2])
@pytest.mark.parametrize("extras", ["all", "plain", "per-channel D"])
def test_ssd_kernel_matches_ref(L, g, extras):
    """impl="kernel" (the SSD recurrence run as a per-channel Mamba-1 scan) vs the sequential SSD reference, float64:
    outputs, last state and the gradients of every input, with and without a ragged mask, both directions."""
    kw = {k: v.double() for k, v in m2_inputs(L=L, g=g).items()}
    if extras == "plain":
        kw = drop(kw, "D", "z", "dt_bias")
    if extras == "per-channel D":
        kw["D"] = torch.randn(4, 3, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(2, L, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 4, 3, 5, generator=gen,
                                                                                      dtype=torch.float64)
    for mask in (None, ragged_mask([L, max(1, L // 2)], L)):
        for reverse in (False, True):
            results = []
            for impl in ("kernel", "ref"):
                leaves = {k: v.clone().requires_grad_() for k, v in kw.items()}
                y, h = m2(leaves, softplus=extras != "plain", mask=mask, reverse=reverse, impl=impl)
                grads = torch.autograd.grad((y * wy).sum() + (h * wh).sum(), list(leaves.values()))
                results.append([y, h, *grads])
            for a, e in zip(*results):
                close(a, e, rtol=1e-10, atol=1e-12)


@needs_numba
@pytest.mark.parametrize("n", [16, 64, 127, 128])
@pytest.mark.parametrize("hp", [(3, 5), (2, 70)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssd_kernel_matches_ref_at_large_states(n, hp, dtype):
    """The kernel's one-decay-per-channel path at HieraMamba's d_state 64 and beyond (odd sizes: 15 channels, less
    than a block; heads of 70, across a block boundary; 70 steps, across a saved chunk) vs the sequential reference in
    float64: outputs, last state and every gradient, ragged mask, both directions."""
    h, p = hp
    kw = m2_inputs(L=70, h=h, p=p, n=n, g=1, dtype=dtype)
    gen = torch.Generator().manual_seed(2)
    wy, wh = torch.randn(2, 70, h, p, generator=gen), torch.randn(2, h, p, n, generator=gen)
    mask = ragged_mask([70, 41], 70)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    for reverse in (False, True):
        results = []
        for impl in ("kernel", "ref"):
            leaves = {k: (v if impl == "kernel" else v.double()).clone().requires_grad_() for k, v in kw.items()}
            y, last = m2(leaves, mask=mask, reverse=reverse, impl=impl)
            loss = (y * wy.to(y.dtype)).sum() + (last * wh.to(last.dtype)).sum()
            results.append([y, last, *torch.autograd.grad(loss, list(leaves.values()))])
        for name, a, e in zip(["y", "last", *kw], *results):
            assert a.dtype == dtype, name
            scale = e.abs().max().item()
            torch.testing.assert_close(a.double() / scale, e / scale, **tol, msg=lambda m: f"{name}: {m}")


@needs_numba
def test_ssd_auto_uses_the_kernel_on_cpu(monkeypatch):
    """Without gradients at every d_state; with them up to KERNEL_MAX_STATE_GRAD; never without numba."""
    ssd_mod = importlib.import_module("vidmamba.ssm.ssd")
    calls = []
    real = ssd_mod._ssd_as_selective_scan
    monkeypatch.setattr(ssd_mod, "_ssd_as_selective_scan", lambda *a: calls.append(a[3].shape[-1]) or real(*a))
    big = ssd_mod.KERNEL_MAX_STATE_GRAD + 1
    for n in (16, 64, big):
        m2(m2_inputs(L=5, n=n), impl="auto")
    assert calls == [16, 64, big]
    for n in (ssd_mod.KERNEL_MAX_STATE_GRAD, big):
        m2({k: v.requires_grad_() for k, v in m2_inputs(L=5, n=n).items()}, impl="auto")
    assert calls == [16, 64, big, ssd_mod.KERNEL_MAX_STATE_GRAD]
    with torch.no_grad():
        m2({k: v.requires_grad_() for k, v in m2_inputs(L=5, n=big).items()}, impl="auto")
    assert calls[-1] == big
    monkeypatch.setattr(ssd_mod, "kernel_available", lambda: False)        # numba missing: the chunked SSD
    m2(m2_inputs(L=5, n=2), impl="auto")
    assert len(calls) == 5


def test_fast_scan_saves_chunk_states_only_when_a_backward_can_follow(monkeypatch):
    """Under torch.no_grad the chunked scan saves nothing, even when an input requires grad (a parameter: autograd's
    ``needs_input_grad`` is True for it there); with grad on it saves its inputs and chunk states, and the backward
    matches the reference."""
    saved = []
    real = torch.autograd.function.FunctionCtx.save_for_backward
    monkeypatch.setattr(torch.autograd.function.FunctionCtx, "save_for_backward",
                        lambda ctx, *t: saved.append(len(t)) or real(ctx, *t))
    kw = m1_inputs(L=70)
    kw["A"].requires_grad_()
    with torch.no_grad():
        y0, _ = m1(kw, impl="fast")
    assert saved == []
    y, _ = m1(kw, impl="fast")
    y.sum().backward()
    assert saved == [6] and torch.equal(y0, y)
    close(kw["A"].grad, torch.autograd.grad(m1(kw, impl="ref")[0].sum(), kw["A"])[0])


def test_ssd_per_channel_D():
    kw = m2_inputs(L=30)
    kw["D"] = torch.randn(4, 3)
    close(m2(kw, impl="fast")[0], m2(kw, impl="ref")[0])


def test_fp32_gradients_match_ref():
    kw1 = {k: v.requires_grad_() for k, v in m1_inputs(L=70, g=2).items()}
    kw2 = {k: v.requires_grad_() for k, v in m2_inputs(L=70, g=2).items()}
    mask = ragged_mask([70, 33], 70)
    for fn, kw in ((m1, kw1), (m2, kw2)):
        grads = []
        for impl in ("ref", "fast"):
            y, h = fn(kw, mask=mask, impl=impl)
            grads.append(torch.autograd.grad(y.square().sum() + h.sum(), list(kw.values())))
        for a, b in zip(*grads):
            close(b, a, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- padding / reverse
TIME_KEYS = {"u", "delta", "x", "dt", "B", "C", "z"}       # per-sample, time-indexed inputs


def _cut(kw, tdim, i=None, start=0, length=None, flip=False):
    """Sample i (all if None) of the time-indexed inputs, steps [start, start + length), optionally time-reversed."""
    out = {}
    for k, v in kw.items():
        if k in TIME_KEYS:
            v = v if i is None else v[i:i + 1]
            v = v.narrow(tdim, start, (v.shape[tdim] - start) if length is None else length)
            v = v.flip(tdim) if flip else v
        out[k] = v
    return out


@pytest.mark.parametrize("which", ["m1", "m2", "m1-kernel"])
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_batch_equals_each_sample_alone(which, reverse):
    lengths, L = [37, 20, 1], 37
    impl = "kernel" if which == "m1-kernel" else "fast"
    if which.startswith("m1"):
        fn, kw, tdim = m1, m1_inputs(b=3, L=L, g=2), -1
    else:
        fn, kw, tdim = m2, m2_inputs(b=3, L=L, g=2), 1
    kw = {k: v.requires_grad_() for k, v in kw.items()}
    mask = ragged_mask(lengths, L)
    y, h = fn(kw, mask=mask, reverse=reverse, impl=impl)
    y_t = y if tdim == 1 else y.transpose(1, 2)                      # (b, l, ...)
    assert torch.all(y_t[~mask] == 0)                                # outputs at pads are exactly 0
    w = torch.randn(y.shape)
    x_name = "x" if which == "m2" else "u"
    g_batch = torch.autograd.grad((y * w).sum() + h.sum(), [kw[x_name]])[0]
    for i, n in enumerate(lengths):
        yi, hi = fn(_cut(kw, tdim, i, 0, n), reverse=reverse, impl=impl)
        wi = w[i:i + 1].narrow(tdim, 0, n)
        close(yi, y[i:i + 1].narrow(tdim, 0, n))
        close(hi, h[i:i + 1])
        gi = torch.autograd.grad((yi * wi).sum() + hi.sum(), [kw[x_name]])[0]
        close(gi[i:i + 1].narrow(tdim, 0, n), g_batch[i:i + 1].narrow(tdim, 0, n))
        assert torch.all(g_batch[i:i + 1].narrow(tdim, n, L - n) == 0)  # no gradient flows into pads


@pytest.mark.parametrize("which", ["m1", "m2"])
def test_reverse_equals_forward_of_reversed(which):
    L = 50
    if which == "m1":
        kw, fn, tdim = m1_inputs(b=1, L=L), m1, -1
    else:
        kw, fn, tdim = m2_inputs(b=1, L=L), m2, 1
    for impl in ("fast", "ref") + (("kernel",) if which == "m1" else ()):
        y_rev, h_rev = fn(kw, reverse=True, impl=impl)
        y_fwd, h_fwd = fn(_cut(kw, tdim, flip=True), impl=impl)
        close(y_rev, y_fwd.flip(tdim))
        close(h_rev, h_fwd)


# ----------------------------------------------------------------------------------------------- SSD invariances
def test_ssd_chunk_size_invariance_and_state_passing():
    L, k = 90, 37
    kw = drop(m2_inputs(b=2, L=L, g=2), "D", "z")
    ys = [m2(kw, chunk_size=c, impl="fast") for c in (1, 8, 16, 64, 128)]
    for y, h in ys[1:]:
        close(y, ys[0][0])
        close(h, ys[0][1])
    # scan [0:k] -> h_k; the state of [0:L] is h_k decayed over [k:L] plus the state of [k:L] run from zero
    first, rest = _cut(kw, 1, length=k), _cut(kw, 1, start=k)
    _, h_k = m2(first, impl="fast")
    y_rest, h_rest = m2(rest, impl="fast")
    dt = torch.nn.functional.softplus(rest["dt"] + rest["dt_bias"])                 # (b, l-k, h)
    decay = torch.exp(dt.cumsum(1) * rest["A"])                                      # (b, l-k, h)
    C = rest["C"].repeat_interleave(2, dim=2)                                        # (b, l-k, h, n)
    y_from_hk = torch.einsum("bhpn,blhn->blhp", h_k, C) * decay[..., None]
    close(ys[0][0][:, k:], y_rest + y_from_hk)
    close(ys[0][1], h_rest + decay[:, -1, :, None, None] * h_k)


# ----------------------------------------------------------------------------------------------- gradcheck (fp64)
@pytest.mark.parametrize("g", [None, 2])
def test_gradcheck_selective_scan_fast(g, monkeypatch):
    kw = {k: v.requires_grad_() for k, v in m1_inputs(b=2, d=4, n=2, L=9, g=g, dtype=torch.float64).items()}
    mask = ragged_mask([9, 5], 9)
    names = list(kw)

    def f(*args):
        a = dict(zip(names, args))
        y, h = selective_scan(a["u"], a["delta"], a["A"], a["B"], a["C"], a["D"], a["z"], a["delta_bias"], True,
                              return_last_state=True, mask=mask, impl="fast")
        return y, h

    monkeypatch.setattr(sel_mod, "_default_chunk", lambda numel: 4)   # several chunks inside 9 steps
    assert torch.autograd.gradcheck(f, tuple(kw.values()))


def test_gradcheck_ssd_fast():
    kw = {k: v.requires_grad_() for k, v in m2_inputs(b=2, L=9, h=2, p=2, n=2, g=2, dtype=torch.float64).items()}
    mask = ragged_mask([9, 5], 9)
    names = list(kw)

    def f(*args):
        a = dict(zip(names, args))
        return ssd_scan(a["x"], a["dt"], a["A"], a["B"], a["C"], a["D"], a["z"], a["dt_bias"], True,
                        return_last_state=True, mask=mask, chunk_size=4, impl="fast")

    assert torch.autograd.gradcheck(f, tuple(kw.values()))


# ----------------------------------------------------------------------------------------------- long / extreme
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("m1_impl", ["fast", "kernel"])
def test_long_sequence_finite(autocast, m1_impl):
    L = 100_000
    kw1 = m1_inputs(b=1, d=2, n=2, L=L)
    kw2 = m2_inputs(b=1, L=L, h=1, p=2, n=2)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y1, h1 = m1(kw1, impl=m1_impl)
        y2, h2 = m2(kw2, impl="fast")
    for t in (y1, h1, y2, h2):
        assert torch.isfinite(t).all()
    assert y1.shape == (1, 2, L) and y2.shape == (1, L, 1, 2)


@pytest.mark.parametrize("m1_impl", ["fast", "kernel"])
def test_large_decay_finite_and_matches_ref(m1_impl):
    kw1 = m1_inputs(L=150, big=True)
    kw2 = m2_inputs(L=150, big=True)
    for fn, kw, impl in ((m1, kw1, m1_impl), (m2, kw2, "fast")):
        y_ref, h_ref = fn(kw, softplus=False, impl="ref")
        y, h = fn(kw, softplus=False, impl=impl)
        assert torch.isfinite(y).all() and torch.isfinite(h).all()
        close(y, y_ref)
        close(h, h_ref)
    # gradients stay finite too
    kw1 = {k: v.requires_grad_() for k, v in kw1.items()}
    y, h = m1(kw1, softplus=False, impl=m1_impl)
    grads = torch.autograd.grad(y.sum() + h.sum(), list(kw1.values()))
    assert all(torch.isfinite(gr).all() for gr in grads)


# ----------------------------------------------------------------------------------------------- impl validation
@settings(max_examples=15, deadline=None)
@given(st.text(max_size=8))
def test_impl_is_validated(impl):
    for fn, kw in ((m1, m1_inputs(b=1, L=3)), (m2, m2_inputs(b=1, L=3))):
        if impl in ("auto", "ref", "fast", "kernel"):
            fn(kw, impl=impl)
        else:
            with pytest.raises(ValueError, match="impl"):
                fn(kw, impl=impl)


@pytest.mark.parametrize("m1_impl", ["fast", "kernel"])
def test_group_count_must_divide(m1_impl):
    kw = m1_inputs(d=4, g=3)
    with pytest.raises(ValueError, match="groups"):
        m1(kw, impl=m1_impl)
    kw2 = m2_inputs(h=4, g=3)
    with pytest.raises(ValueError, match="groups"):
        m2(kw2, impl="fast")
