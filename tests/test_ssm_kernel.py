"""The compiled CPU selective scan (impl="kernel", numba) against the sequential reference and a closed form."""
import importlib
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidmamba.ssm import selective_scan

kernel_mod = importlib.import_module("vidmamba.ssm.scan_kernel")
needs_numba = pytest.mark.skipif(not kernel_mod.kernel_available(), reason="numba not importable")
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
REL = {torch.float32: 1e-5, torch.float64: 1e-10}


def inputs(b=3, d=6, n=3, L=20, g=None, dtype=torch.float64, seed=0, extras=True):
    """Mamba-1 inputs: u, delta, z (b, d, l); A (d, n); B, C (b, n, l) if g is None else (b, g, n, l); D, bias (d,)."""
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    bc = (b, n, L) if g is None else (b, g, n, L)
    kw = dict(u=r(b, d, L), delta=r(b, d, L) * 0.5, A=-(torch.rand(d, n, generator=gen, dtype=dtype) + 0.2),
              B=r(*bc), C=r(*bc), D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.3)
    if not extras:
        kw.update(D=None, z=None, delta_bias=None, delta=kw["delta"].abs())
    return kw


def time_major(kw):
    """The same inputs with u, delta, z, B, C laid out (b, l, .) in memory and seen as (b, ., l), as the mixers'
    projections produce them (``inputs`` makes them (b, ., l) contiguous)."""
    return {k: v.transpose(-1, -2).contiguous().transpose(-1, -2) if k in ("u", "delta", "z", "B", "C") and
            v is not None else v for k, v in kw.items()}


def mixed_mask(b, L):
    """Right-padded lengths L, 1, and about L/2 for the rest."""
    lengths = [L, 1] + [max(1, L // 2 + i) for i in range(b - 2)]
    return torch.arange(L)[None, :] < torch.tensor(lengths[:b])[:, None]


def scan(kw, impl, softplus=True, **extra):
    return selective_scan(*(kw[k] for k in NAMES), softplus, return_last_state=True, impl=impl, **extra)


def assert_rel(actual, expected, rel):
    """max |actual - expected| <= rel * max |expected| (a relative error on the tensor's scale)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = expected.abs().max().item() or 1.0
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:.0e} x {scale:.3e}"


def forward_and_grads(kw, impl, w, wl, **extra):
    """Outputs y, last and the gradient of sum(w y) + sum(wl last) w.r.t. every input that is given."""
    leaves = {k: None if v is None else v.detach().clone().requires_grad_() for k, v in kw.items()}
    y, last = scan(leaves, impl, **extra)
    given = [v for v in leaves.values() if v is not None]
    grads = torch.autograd.grad((y * w).sum() + (last * wl).sum(), given)
    return [y, last, *grads]


# --------------------------------------------------------------------------------------------- agreement with ref
@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("L", [1, 7, 130])
@pytest.mark.parametrize("g", [None, 2])
@pytest.mark.parametrize("extras", [True, False])
@pytest.mark.parametrize("layout", ["channel-major", "time-major"])
def test_kernel_matches_reference(dtype, L, g, extras, layout, monkeypatch):
    """Outputs, last state and the gradients of every input, with and without mask, both directions, inputs in
    either memory layout."""
    monkeypatch.setattr(kernel_mod, "CHUNK", 16)          # several saved chunks, the last one partial
    kw = inputs(L=L, g=g, dtype=dtype, extras=extras)
    kw = kw if layout == "channel-major" else time_major(kw)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(kw["u"].shape, generator=gen, dtype=dtype)
    wl = torch.randn(3, 6, 3, generator=gen, dtype=dtype)
    for mask in (None, mixed_mask(3, L)):
        for reverse in (False, True):
            extra = dict(softplus=extras, mask=mask, reverse=reverse)
            expected = forward_and_grads(kw, "ref", w, wl, **extra)
            actual = forward_and_grads(kw, "kernel", w, wl, **extra)
            for a, e in zip(actual, expected):
                assert_rel(a, e, REL[dtype])
            if mask is not None:
                assert torch.all(actual[0].transpose(1, 2)[~mask] == 0)          # outputs at pads are exactly 0


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reverse", [False, True])
def test_kernel_reads_either_layout_in_place_and_layouts_give_the_same_bits(dtype, reverse, monkeypatch):
    """u, delta, z reach the kernels without a copy both as (b, l, d) memory seen as (b, d, l) and as (b, d, l)-
    contiguous tensors (y, du, ddelta, dz are then in that layout too). Both layouts, and a mix (copied to
    (b, l, d)), give bit-identical outputs and gradients: the kernel copies each chunk of steps into the same tiles
    and runs the same arithmetic in the same order on them (chunks of 16 here: the last one partial)."""
    monkeypatch.setattr(kernel_mod, "CHUNK", 16)
    seen = []
    real = kernel_mod._KernelScan.apply
    monkeypatch.setattr(kernel_mod._KernelScan, "apply", lambda *a: seen.append(a) or real(*a))
    kw = inputs(b=2, d=2 * 70, n=3, L=40, g=2, dtype=dtype)
    mixed = dict(time_major(kw), delta=kw["delta"])
    w = torch.randn(kw["u"].shape, dtype=dtype)
    wl = torch.randn(2, 140, 3, dtype=dtype)
    results = [forward_and_grads(given, "kernel", w, wl, mask=mixed_mask(2, 40), reverse=reverse)
               for given in (kw, time_major(kw), mixed)]
    for a, b, c in zip(*results):
        assert torch.equal(a, b) and torch.equal(a, c)
    for layout, expected_y in ((time_major, lambda y: y.transpose(1, 2).is_contiguous()),
                               (lambda kw: kw, lambda y: y.is_contiguous())):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in layout(kw).items()}      # strides kept
        y, _ = scan(leaves, "kernel", mask=mixed_mask(2, 40), reverse=reverse)
        u, delta, z = seen[-1][0], seen[-1][1], seen[-1][6]
        assert [t.data_ptr() for t in (u, delta, z)] == [leaves[k].data_ptr() for k in ("u", "delta", "z")]
        assert expected_y(y)
        y.backward(w if expected_y(w) else w.transpose(1, 2).contiguous().transpose(1, 2))
        assert all(expected_y(leaves[k].grad) for k in ("u", "delta", "z"))


@needs_numba
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tile_transpose_matches_numpy(dtype):
    """The tiles' copy (``_transpose``: 8 x 8 blocks as vectors, the edges element by element) equals numpy's
    transpose on views with row strides of larger arrays, for shapes with and without partial blocks on either side,
    and writes nothing outside its destination."""
    kernels = kernel_mod._load()
    rng = np.random.default_rng(0)
    for w, m in [(64, 128), (8, 8), (16, 45), (70, 130), (13, 21), (6, 7), (64, 2), (1, 1)]:
        src = rng.standard_normal((w + 5, m + 9)).astype(dtype)[2:2 + w, 3:3 + m]
        out = np.full((m + 4, w + 11), np.nan, dtype)
        kernels._transpose(src, out[1:1 + m, 5:5 + w])
        assert np.array_equal(out[1:1 + m, 5:5 + w], src.T)
        out[1:1 + m, 5:5 + w] = np.nan
        assert np.isnan(out).all()


@needs_numba
def test_scratch_starts_on_a_cache_line_in_every_thread():
    """The kernels' scratch arrays (``_scratch``) start on a 64-byte boundary with the shape, dtype and C layout
    asked for, for sizes that malloc returns at other alignments, from the main thread and from another thread
    (whose malloc arena gave 32-byte-aligned blocks)."""
    kernels = kernel_mod._load()
    shapes = [(64,), (3, 64), (7, 1, 5, 64), (65, 16, 64), (1,), (13, 5)]

    def check(found):
        for shape in shapes * 4:
            for dtype in (np.float32, np.float64):
                a = kernels._scratch(shape, dtype)
                found.append((a.ctypes.data % 64, a.shape == shape, a.dtype == dtype, a.flags.c_contiguous))
                plain = np.empty(int(np.prod(shape)) + 1, dtype)          # moves the next block's address
                del plain

    here, there = [], []
    check(here)
    worker = threading.Thread(target=check, args=(there,))
    worker.start()
    worker.join()
    assert len(there) == len(here) == 48
    assert set(here + there) == {(0, True, True, True)}


@needs_numba
def test_kernel_saves_states_only_when_a_backward_can_follow(monkeypatch):
    """Under torch.no_grad the forward saves no chunk states, even when inputs require grad (parameters); with grad
    on it saves them (b, ceil(l / CHUNK), n, d) and the backward runs."""
    starts = []
    real = kernel_mod._run_blocks

    def run_blocks(name, args, nblocks):
        if name == "scan_fwd":
            starts.append(args[-1].shape)
        real(name, args, nblocks)

    monkeypatch.setattr(kernel_mod, "_run_blocks", run_blocks)
    kw = inputs(b=2, d=6, n=3, L=70)
    kw["A"].requires_grad_()
    with torch.no_grad():
        y0, _ = scan(kw, "kernel")
    y, _ = scan(kw, "kernel")
    y.sum().backward()
    assert starts == [(1, 1, 1, 1), (2, -(-70 // kernel_mod.CHUNK), 3, 6)]
    assert torch.equal(y0, y)
    assert_rel(kw["A"].grad, torch.autograd.grad(scan(dict(kw), "ref")[0].sum(), kw["A"])[0], 1e-10)


@needs_numba
def test_kernel_channels_not_a_multiple_of_the_block():
    """More channels than one thread block (64), groups whose size is not a multiple of it, an odd batch."""
    kw = inputs(b=1, d=2 * 70, n=2, L=9, g=2)
    for mask in (None, mixed_mask(1, 9)):
        for a, e in zip(scan(kw, "kernel", mask=mask, reverse=True), scan(kw, "ref", mask=mask, reverse=True)):
            assert_rel(a, e, 1e-10)


@needs_numba
@pytest.mark.parametrize("path", ["openmp", "pool"])
def test_kernel_threads_give_identical_results(path, monkeypatch):
    """On either threading path (numba's OpenMP threads, or the thread pool used after fork / on another numba
    layer), blocks split over 1, 2 or 3 threads give bit-identical outputs and gradients."""
    if path == "pool":
        monkeypatch.setattr(kernel_mod, "_numba_openmp", lambda: False)
    kw = inputs(b=3, d=2 * 70, n=2, L=33, g=2, dtype=torch.float32)
    w = torch.randn(kw["u"].shape)
    wl = torch.randn(3, 140, 2)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append(forward_and_grads(kw, "kernel", w, wl, mask=mixed_mask(3, 33)))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)
    if path == "pool":       # the same kernel compiled in two contexts (no reassociation): the same bits
        monkeypatch.undo()
        for a, b in zip(results[0], forward_and_grads(kw, "kernel", w, wl, mask=mixed_mask(3, 33))):
            assert torch.equal(a, b)


@needs_numba
def test_kernel_keeps_torchs_thread_count():
    """Starting numba's OpenMP layer (first kernel call of a process) must not change torch's thread count (they share
    one OpenMP runtime). Fresh process: the layer starts once per process."""
    code = ("import torch; torch.set_num_threads(1); from vidmamba.ssm import selective_scan; "
            "x = torch.randn(1, 128, 9); A = -torch.ones(128, 2); B = torch.randn(1, 2, 9); "
            "selective_scan(x, x.abs(), A, B, B, impl='kernel'); print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"]


def test_openmp_layer_only_on_linux(monkeypatch):
    """Off Linux torch's OpenMP runtime is not the libgomp numba's layer loads: the kernels use the plain pool."""
    monkeypatch.setattr(kernel_mod, "_openmp", None)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert kernel_mod._numba_openmp() is False


@needs_numba
@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_kernel_runs_in_a_forked_child_after_the_parent_used_threads():
    """GNU OpenMP is not fork-safe: a forked child must not enter numba's OpenMP layer (which would abort it)."""
    import multiprocessing as mp

    kw = inputs(b=2, d=140, n=2, L=9, dtype=torch.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        expected = scan(kw, "kernel")[0]
        with mp.get_context("fork").Pool(1) as pool:
            got = pool.apply(_scan_in_child, (kw,))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got, expected)


def _scan_in_child(kw):
    torch.set_num_threads(2)
    return scan(kw, "kernel")[0]


@needs_numba
@pytest.mark.parametrize("g", [None, 2])
def test_kernel_gradcheck_fp64(g, monkeypatch):
    monkeypatch.setattr(kernel_mod, "CHUNK", 4)
    kw = {k: v.requires_grad_() for k, v in inputs(b=2, d=4, n=2, L=9, g=g).items()}
    mask = mixed_mask(2, 9)

    def f(*args):
        return scan(dict(zip(NAMES, args)), "kernel", mask=mask, reverse=g is None)

    assert torch.autograd.gradcheck(f, tuple(kw[k] for k in NAMES))


@needs_numba
def test_kernel_bf16_autocast_inputs():
    """bf16 inputs (as under autocast): computed in float32, y returned in bf16, gradients in the inputs' dtypes."""
    kw = inputs(L=40, dtype=torch.float32)
    for k in ("u", "delta", "B", "C", "z"):
        kw[k] = kw[k].bfloat16()
    w = torch.randn(kw["u"].shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = forward_and_grads(kw, "ref", w, 0.0)
        actual = forward_and_grads(kw, "kernel", w, 0.0)
    assert actual[0].dtype == torch.bfloat16 and actual[1].dtype == torch.float32
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype
        assert_rel(a.float(), e.float(), 1e-2)        # bf16 rounding of y and of the input gradients


# --------------------------------------------------------------------------------------------- independent oracle
def closed_form(kw, mask=None):
    """numpy float64, no recurrence: h_t = sum_{s<=t} prod_{s<r<=t} exp(dt_r A) dt_s B_s u_s, y_t = C_t . h_t.

    dt = softplus(delta + bias) * mask. Returns y (b, d, l) (without D, z) and h_L (b, d, n)."""
    u, delta, A, B, C = (kw[k].detach().double().numpy() for k in ("u", "delta", "A", "B", "C"))
    dt = np.logaddexp(0.0, delta + kw["delta_bias"].double().numpy()[:, None])             # softplus
    if mask is not None:
        dt = dt * mask.numpy()[:, None, :]
    log_a = dt[..., None] * A[None, :, None, :]                                             # (b, d, l, n)
    cum = np.cumsum(log_a, axis=2)
    x = (dt * u)[..., None] * B.transpose(0, 2, 1)[:, None]                                 # (b, d, l, n)
    L = u.shape[-1]
    decay = np.exp(cum[:, :, :, None, :] - cum[:, :, None, :, :])                           # [t, s]: prod_{s<r<=t}
    causal = np.tril(np.ones((L, L)))[None, None, :, :, None]
    h = np.einsum("bdtsn,bdsn->bdtn", decay * causal, x)                                    # (b, d, l, n)
    y = np.einsum("bdtn,btn->bdt", h, C.transpose(0, 2, 1))
    if mask is not None:
        y = y * mask.numpy()[:, None, :]                                                    # outputs at pads: 0
    return y, h[:, :, -1]


@pytest.mark.parametrize("impl", ["ref", "fast", pytest.param("kernel", marks=needs_numba)])
@pytest.mark.parametrize("masked", [False, True])
def test_last_state_and_outputs_match_closed_form(impl, masked):
    kw = inputs(b=2, d=3, n=4, L=11)
    mask = mixed_mask(2, 11) if masked else None
    y_cf, h_cf = closed_form(kw, mask)
    y, h = selective_scan(kw["u"], kw["delta"], kw["A"], kw["B"], kw["C"], delta_bias=kw["delta_bias"],
                          delta_softplus=True, return_last_state=True, mask=mask, impl=impl)
    np.testing.assert_allclose(h.numpy(), h_cf, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.numpy(), y_cf, rtol=1e-10, atol=1e-12)


def test_last_state_hand_computed():
    """One channel, one state, A = -1, dt = (0, ln 4, ln 2), so exp(dt A) = (1, 1/4, 1/2); u is chosen so that
    dt u B = (0, 1, 3): h = 0 (identity step), then 0 / 4 + 1 = 1, then 1 / 2 + 3 = 3.5."""
    dt = torch.tensor([[[0.0, np.log(4.0), np.log(2.0)]]], dtype=torch.float64)
    u = torch.tensor([[[5.0, 1.0 / np.log(4.0), 3.0 / np.log(2.0)]]], dtype=torch.float64)
    ones = torch.ones(1, 1, 3, dtype=torch.float64)
    A = -torch.ones(1, 1, dtype=torch.float64)
    for impl in ("ref", "fast") + (("kernel",) if kernel_mod.kernel_available() else ()):
        y, h = selective_scan(u, dt, A, ones, ones, return_last_state=True, impl=impl)
        assert h.item() == pytest.approx(3.5, rel=1e-12)
        assert y.flatten().tolist() == pytest.approx([0.0, 1.0, 3.5], rel=1e-12)


# --------------------------------------------------------------------------------------------- dispatch / fallback
@needs_numba
def test_auto_uses_kernel_on_cpu(monkeypatch):
    calls = []
    real = kernel_mod._KernelScan.apply
    monkeypatch.setattr(kernel_mod._KernelScan, "apply", lambda *a: calls.append(1) or real(*a))
    scan(inputs(L=5), "auto")
    assert calls


def test_fallback_when_numba_cannot_be_imported(monkeypatch):
    """numba missing: "auto" runs the pure-PyTorch path (same results as the reference); "kernel" says why not."""
    monkeypatch.setitem(sys.modules, "numba", None)                  # makes `import numba` raise ImportError
    monkeypatch.delitem(sys.modules, "vidmamba.ssm._numba_kernels", raising=False)
    monkeypatch.setattr(kernel_mod, "_kernels", None)
    assert not kernel_mod.kernel_available()
    kw = inputs(L=12)
    mask = mixed_mask(3, 12)
    for a, e in zip(scan(kw, "auto", mask=mask), scan(kw, "ref", mask=mask)):
        assert_rel(a, e, 1e-10)
    with pytest.raises(ImportError, match="numba"):
        scan(kw, "kernel")


# --------------------------------------------------------------------------------------------- depthwise conv kernel
def conv_oracle(x, weight, bias, mask, mode, silu):
    """F.conv1d on the input zeroed at pads, padded for ``mode``; "anticausal" as the causal conv of the reversed
    sequence. x (b, c, l) -> (b, c, l)."""
    k = weight.shape[-1]
    xm = x if mask is None else x.masked_fill(~mask[:, None], 0)
    if mode == "anticausal":
        y = F.conv1d(F.pad(xm.flip(-1), (k - 1, 0)), weight, bias, groups=x.shape[1]).flip(-1)
    else:
        left = k - 1 if mode == "causal" else (k - 1) // 2
        y = F.conv1d(F.pad(xm, (left, k - 1 - left)), weight, bias, groups=x.shape[1])
    return F.silu(y) if silu else y


def conv_outputs(conv, x, mask, g):
    """Output and the gradients of sum(g y) w.r.t. x, weight and bias (if any)."""
    x = x.detach().clone().requires_grad_()
    y = conv(x, mask)
    params = [x, conv.weight] + ([] if conv.bias is None else [conv.bias])
    return [y, *torch.autograd.grad((y * g).sum(), params)]


@needs_numba
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["causal", "same", "anticausal"])
@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_kernel_matches_conv1d_and_the_torch_path(dtype, mode, silu, bias):
    """Kernel vs F.conv1d (oracle) and vs the pure-PyTorch path: values and gradients of x, weight, bias; 70 channels
    (a full and a partial block of 64), odd k, mixed lengths with NaN junk at pads (which must not reach anything)."""
    from vidmamba.ssm import MaskedDepthwiseConv1d

    torch.manual_seed(0)
    act = "silu" if silu else None
    kernel = MaskedDepthwiseConv1d(70, 5, bias=bias, mode=mode, activation=act, impl="kernel").to(dtype)
    torch_path = MaskedDepthwiseConv1d(70, 5, bias=bias, mode=mode, activation=act, impl="fast").to(dtype)
    torch_path.load_state_dict(kernel.state_dict())
    x = torch.randn(3, 70, 13, dtype=dtype)
    g = torch.randn(3, 70, 13, dtype=dtype)
    mask = mixed_mask(3, 13)
    junk = torch.where(mask[:, None], x, torch.full_like(x, float("nan")))
    for m in (None, mask):
        got = conv_outputs(kernel, x if m is None else junk, m, g)
        for a, e in zip(got, conv_outputs(torch_path, x if m is None else junk, m, g)):
            assert_rel(a, e, REL[dtype])
        expected = conv_oracle(x, kernel.weight, kernel.bias, m, mode, silu)
        assert_rel(got[0], expected.detach(), REL[dtype])
    assert torch.isfinite(got[1]).all()                            # pads: zero input gradient, no NaN anywhere
    assert torch.all(got[1].transpose(1, 2)[~mask] == 0)


@needs_numba
@pytest.mark.parametrize("mode", ["causal", "same", "anticausal"])
def test_conv_kernel_across_step_blocks(mode):
    """Samples of several blocks of CONV_ROWS steps (a block's input gradient reads the gradient at its neighbours'
    first or last steps), with pads ending inside a block: values and gradients vs autograd through F.conv1d."""
    from vidmamba.ssm import MaskedDepthwiseConv1d
    from vidmamba.ssm._numba_kernels import CONV_ROWS

    torch.manual_seed(0)
    length = 2 * CONV_ROWS + 37
    conv = MaskedDepthwiseConv1d(6, 4, mode=mode, activation="silu", impl="kernel").double()
    x, g = torch.randn(3, 6, length, dtype=torch.float64), torch.randn(3, 6, length, dtype=torch.float64)
    mask = mixed_mask(3, length)
    xo = x.clone().requires_grad_()
    y = conv_oracle(xo, conv.weight, conv.bias, mask, mode, True)
    expected = [y, *torch.autograd.grad((y * g).sum(), (xo, conv.weight, conv.bias))]
    for a, e in zip(conv_outputs(conv, x, mask, g), expected):
        assert_rel(a, e.detach(), 1e-12)


@needs_numba
def test_conv_kernel_gradcheck_fp64():
    from vidmamba.ssm.conv_kernel import depthwise_conv_kernel

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    mask = mixed_mask(2, 8)
    assert torch.autograd.gradcheck(lambda *a: depthwise_conv_kernel(*a, mask, [-1, 0, 1, 2], True), (x, w, b))


@needs_numba
def test_conv_kernel_threads_give_identical_results():
    from vidmamba.ssm import MaskedDepthwiseConv1d
    from vidmamba.ssm._numba_kernels import CONV_ROWS

    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(140, 4, activation="silu", impl="kernel")
    x, g = torch.randn(3, 140, CONV_ROWS + 33), torch.randn(3, 140, CONV_ROWS + 33)    # two blocks per sample
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append(conv_outputs(conv, x, mixed_mask(3, CONV_ROWS + 33), g))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@needs_numba
def test_conv_kernel_bf16_input():
    """bf16 input (as under autocast): computed in float32, returned in bf16; gradients in the inputs' dtypes."""
    from vidmamba.ssm import MaskedDepthwiseConv1d

    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(8, 4, activation="silu", impl="kernel")
    x = torch.randn(2, 8, 10).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, dx, dw, db = conv_outputs(conv, x, None, torch.ones(2, 8, 10))
    assert y.dtype == dx.dtype == torch.bfloat16 and dw.dtype == db.dtype == torch.float32
    assert_rel(y.float(), conv_oracle(x.float(), conv.weight.detach(), conv.bias.detach(), None, "causal", True), 1e-2)


def test_conv_falls_back_to_torch_when_numba_cannot_be_imported(monkeypatch):
    from vidmamba.ssm import MaskedDepthwiseConv1d

    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "vidmamba.ssm._numba_kernels", raising=False)
    monkeypatch.setattr(kernel_mod, "_kernels", None)
    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(6, 4, activation="silu").double()
    x = torch.randn(2, 6, 9, dtype=torch.float64)
    assert_rel(conv(x), conv_oracle(x, conv.weight, conv.bias, None, "causal", True).detach(), 1e-12)
    conv.impl = "kernel"
    with pytest.raises(ImportError, match="numba"):
        conv(x)


# --------------------------------------------------------------------------------------------- CUDA extension route
def plain_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                            return_last_state=False):
    """mamba_ssm's ``selective_scan_fn`` contract (no masks), written out as a loop: a stand-in on machines without
    CUDA, to test how ``impl="mamba_ssm"`` maps masks and reverse scans onto it."""
    delta = delta + (0 if delta_bias is None else delta_bias[:, None])
    delta = F.softplus(delta) if delta_softplus else delta
    B, C = (M if M.dim() == 4 else M.unsqueeze(1) for M in (B, C))
    B, C = (M.repeat_interleave(u.shape[1] // M.shape[1], dim=1) for M in (B, C))     # (b, d, n, l)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1) + (0 if D is None else D * u[..., t]))
    y = torch.stack(ys, -1) * (1 if z is None else F.silu(z))
    return (y, h) if return_last_state else y


@pytest.fixture
def fresh_mamba_ssm_lookup():
    """The route looks mamba_ssm up once per process: forget that lookup before and after a test that fakes it."""
    lookup = importlib.import_module("vidmamba.ssm.selective_scan").mamba_ssm_scan_fn
    lookup.cache_clear()
    yield
    lookup.cache_clear()


@pytest.mark.usefixtures("fresh_mamba_ssm_lookup")
def test_mamba_ssm_route_maps_masks_and_reverse(monkeypatch):
    """impl="mamba_ssm" on a stand-in with mamba_ssm's contract (importable as mamba_ssm.ops.selective_scan_interface)
    gives the reference's outputs, last state and gradients with ragged masks, in both directions."""
    import types

    module = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    module.selective_scan_fn = plain_selective_scan_fn
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    kw = inputs(L=11, g=2)
    w = torch.randn(kw["u"].shape, dtype=torch.float64)
    wl = torch.randn(3, 6, 3, dtype=torch.float64)
    for mask in (None, mixed_mask(3, 11)):
        for reverse in (False, True):
            extra = dict(mask=mask, reverse=reverse)
            for a, e in zip(forward_and_grads(kw, "mamba_ssm", w, wl, **extra), forward_and_grads(kw, "ref", w, wl,
                                                                                                  **extra)):
                assert_rel(a, e, 1e-12)


@pytest.mark.usefixtures("fresh_mamba_ssm_lookup")
def test_mamba_ssm_route_says_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)
    with pytest.raises(ImportError, match="mamba_ssm"):
        scan(inputs(L=3), "mamba_ssm")


def _importable(name):
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not torch.cuda.is_available() or not _importable("mamba_ssm"), reason="needs CUDA and mamba_ssm")
def test_cuda_auto_uses_mamba_ssm_and_matches_reference(monkeypatch):
    """On CUDA, "auto" runs mamba_ssm's kernel: float32 outputs, last state and gradients vs the CPU reference."""
    sel_mod = importlib.import_module("vidmamba.ssm.selective_scan")
    calls = []
    real = sel_mod._selective_scan_mamba_ssm
    monkeypatch.setattr(sel_mod, "_selective_scan_mamba_ssm", lambda *a: calls.append(1) or real(*a))
    kw = inputs(b=3, d=64, n=16, L=300, g=2, dtype=torch.float32)
    w, wl = torch.randn(kw["u"].shape), torch.randn(3, 64, 16)
    cuda = {k: v.cuda() for k, v in kw.items()}
    for mask in (None, mixed_mask(3, 300)):
        for reverse in (False, True):
            mc = None if mask is None else mask.cuda()
            got = forward_and_grads(cuda, "auto", w.cuda(), wl.cuda(), mask=mc, reverse=reverse)
            for a, e in zip(got, forward_and_grads(kw, "ref", w, wl, mask=mask, reverse=reverse)):
                assert_rel(a.cpu(), e, 1e-4)
    assert len(calls) == 4


@pytest.mark.skipif(not torch.cuda.is_available() or not _importable("causal_conv1d"),
                    reason="needs CUDA and causal_conv1d")
def test_cuda_conv_uses_causal_conv1d_and_matches_the_torch_path(monkeypatch):
    from vidmamba.ssm import MaskedDepthwiseConv1d

    layers = importlib.import_module("vidmamba.ssm.layers")
    calls = []
    real = layers.causal_conv1d_fn
    monkeypatch.setattr(layers, "causal_conv1d_fn", lambda: calls.append(1) or real())
    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(64, 4, activation="silu").cuda()
    torch_path = MaskedDepthwiseConv1d(64, 4, activation="silu", impl="fast").cuda()
    torch_path.load_state_dict(conv.state_dict())
    x, g, mask = torch.randn(3, 64, 50).cuda(), torch.randn(3, 64, 50).cuda(), mixed_mask(3, 50).cuda()
    for a, e in zip(conv_outputs(conv, x, mask, g), conv_outputs(torch_path, x, mask, g)):
        assert_rel(a, e, 1e-4)
    assert calls


@needs_numba
def test_conv_kernel_takes_a_channel_slice():
    """A channel slice of a channels-last projection (the mixers' input) gives the same values and gradients as the
    same input made contiguous; the projection's other channels get no gradient."""
    from vidmamba.ssm import MaskedDepthwiseConv1d

    torch.manual_seed(0)
    conv = MaskedDepthwiseConv1d(70, 4, activation="silu", impl="kernel").double()
    proj = torch.randn(3, 13, 140, dtype=torch.float64, requires_grad=True)
    g, mask = torch.randn(3, 70, 13, dtype=torch.float64), mixed_mask(3, 13)
    y = conv(proj.transpose(1, 2)[:, :70], mask)
    dproj, dw = torch.autograd.grad((y * g).sum(), (proj, conv.weight))
    expected = conv_outputs(conv, proj.detach().transpose(1, 2)[:, :70].contiguous(), mask, g)
    for a, e in zip((y, dproj.transpose(1, 2)[:, :70], dw), expected[:3]):
        assert_rel(a, e, 1e-12)
    assert torch.all(dproj[..., 70:] == 0)
