"""The compiled CPU selective scan (numba), wrapped as a torch autograd op, and the runtime of all numba kernels.

``kernel_available()`` says whether the kernels can be used: numba imports (checked once, lazily: importing this
module never imports numba) and no kernel failed to compile in this process (then one warning, and "auto" callers
take the PyTorch path: ``KernelError``). ``selective_scan_kernel`` has the semantics of ``selective_scan_ref``
(mask and reverse handled inside the kernel, no flipped copies); the kernels themselves are in ``_numba_kernels.py``, run over ranges of (batch, channel
block) pairs on ``torch.get_num_threads()`` threads (torch's own OpenMP threads where numba can share them) by
``_run_blocks``, which ``conv_kernel.py`` uses too.
First-call JIT compilation is cached on disk in the user cache folder (``_kernel_cache.py``).
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch

from vidmamba.ssm.common import backward_can_follow

CHUNK = 64          # steps between saved states: the backward recomputes at most this many states per block
_kernels = None     # the imported _numba_kernels module once loaded; False if numba cannot be imported
_pool, _pool_size, _pool_lock = None, 0, threading.Lock()
_openmp = None     # whether the kernels run on numba's OpenMP threads (None: not decided yet)
_failure = None    # the first exception a kernel raised in this process (compilation): the kernels are off


class KernelError(RuntimeError):
    """A numba kernel failed to compile or run in this process."""


def _load():
    global _kernels
    if _kernels is None:
        try:
            _prefer_wide_vectors()
            import vidmamba.ssm._numba_kernels as _numba_kernels  # imports numba: only on first use

            _kernels = _numba_kernels
        except ImportError:
            _kernels = False
    return _kernels


def _prefer_wide_vectors() -> None:
    """Let LLVM vectorise the kernels with 512-bit registers on AVX-512 CPUs.

    LLVM's models of Intel's AVX-512 server CPUs prefer 256-bit vectors (the "prefer-256-bit" feature). Without that
    preference the scan's forward is 1.4x faster at the demo's shape, and every kernel's results are the same, bit
    for bit: the arithmetic of a channel does not depend on the vector width, and sums across channels have a fixed
    order (``_sum_block``). numba compiles for one target machine per process, so the preference is lifted only when
    numba is first imported here (nothing in the process has compiled with numba yet) and neither ``NUMBA_CPU_NAME``
    nor ``NUMBA_CPU_FEATURES`` is set: the user's settings win (``NUMBA_CPU_FEATURES`` = the host's features keeps
    256-bit vectors)."""
    if "numba" in sys.modules or "NUMBA_CPU_NAME" in os.environ or "NUMBA_CPU_FEATURES" in os.environ:
        return
    import numba
    from numba.core.codegen import get_host_cpu_features

    features = get_host_cpu_features()
    if "+avx512f" in features.split(","):
        numba.config.CPU_FEATURES = features + ",-prefer-256-bit"


def kernel_available() -> bool:
    """True when the numba kernels can be used: numba importable, no kernel failed in this process."""
    return bool(_load()) and _failure is None


def run_kernel(call, *, fallback: bool):
    """``call()``, a function that runs a numba kernel; None when the kernels failed to compile in this process
    (``KernelError``, warned once) and ``fallback`` lets the caller take its PyTorch path, else the error propagates."""
    try:
        return call()
    except KernelError:
        if not fallback:
            raise
        return None


def require_kernels() -> None:
    """Raise unless the kernels can be used: ImportError without numba, KernelError after a kernel failed."""
    if not _load():
        raise ImportError("impl='kernel' needs numba (pip install numba)")
    if _failure is not None:
        raise KernelError(f"the numba kernels failed in this process ({type(_failure).__name__}: {_failure})")


def _np(t):
    return t.detach().numpy()


def _numba_openmp() -> bool:
    """Whether the kernels run on numba's threads: only when numba's threading layer is OpenMP in this process.

    numba's OpenMP layer loads the same libgomp as torch, so its parallel regions reuse torch's OpenMP threads. Any
    other pool competes with them: after each torch op, libgomp's idle threads spin before sleeping (GOMP_SPINCOUNT),
    which on 2 cores made a scan at the training scale 1.8x slower than on the shared threads (7.1 vs 3.6 ms). The layer
    is preferred, not forced: ``NUMBA_THREADING_LAYER`` / ``_PRIORITY`` set by the user win, and on another layer (tbb,
    workqueue), in a forked child (GNU OpenMP is not fork-safe) or off Linux (where torch ships its own OpenMP
    runtime, which numba's layer would not share) the plain thread pool is used."""
    global _openmp
    if _openmp is None and not sys.platform.startswith("linux"):
        _openmp = False                      # elsewhere numba's OpenMP is not torch's: two runtimes in one process
    if _openmp is None:
        import numba
        from numba.np.ufunc.parallel import _launch_threads

        if numba.config.THREADING_LAYER == "default" and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
            numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
        threads = torch.get_num_threads()
        try:
            _launch_threads()                # the OpenMP layer sets the shared runtime's thread count: restore torch's
            _openmp = numba.threading_layer() == "omp"
        except ValueError:                   # no threading layer could be loaded
            _openmp = False
        torch.set_num_threads(threads)
    return _openmp


def _after_fork_in_child():
    """A forked child has neither the parent's pool threads nor a usable OpenMP runtime: plain threads, a new pool."""
    global _openmp, _pool, _pool_size, _pool_lock
    _openmp, _pool, _pool_size, _pool_lock = False, None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):          # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_blocks(name, args, nblocks):
    """The kernel ``name`` ("scan_fwd", "conv_bwd", ...) over blocks [0, nblocks) (``_run_blocks_on_threads``). A
    kernel that raises (it could not be compiled) turns the kernels off in this process: one warning, KernelError."""
    global _failure
    try:
        _run_blocks_on_threads(name, args, nblocks)
    except Exception as e:       # compilation (typing, lowering, LLVM) or loading: the kernels are off in this process
        _failure = e
        first = (str(e).strip().splitlines() or [""])[0]
        warnings.warn(f"vidmamba: the numba CPU kernels failed ({type(e).__name__}: {first}); impl='auto' uses the "
                      "PyTorch path (same results up to float rounding, slower)", RuntimeWarning, stacklevel=3)
        raise KernelError(f"numba kernel {name!r} failed: {type(e).__name__}: {first}") from e


def _run_blocks_on_threads(name, args, nblocks):
    """Blocks [0, nblocks) in ``torch.get_num_threads()`` contiguous ranges: on numba's OpenMP threads (shared with
    torch, see ``_numba_openmp``), otherwise the calling thread runs the first range and a thread pool the others (the
    kernels release the GIL)."""
    global _pool, _pool_size
    kernels = _load()
    threads = max(1, min(torch.get_num_threads(), nblocks))
    if _numba_openmp():                      # at every thread count: results do not depend on it
        import numba

        threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(threads)
        getattr(kernels, name + "_parallel")(tuple(args), nblocks, threads)
        return
    fn = getattr(kernels, name)
    bounds = [nblocks * i // threads for i in range(threads + 1)]
    futures = []
    if threads > 1:
        with _pool_lock:
            if _pool_size < threads - 1:
                if _pool is not None:
                    _pool.shutdown(wait=False)
                _pool, _pool_size = ThreadPoolExecutor(threads - 1, thread_name_prefix="vidmamba-scan"), threads - 1
            pool = _pool
        futures = [pool.submit(fn, *args, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    fn(*args, bounds[0], bounds[1])
    for f in futures:
        f.result()


@functools.lru_cache(maxsize=64)
def _constant(shape, dtype, value=0):
    """A tensor of ``value`` that the kernels only read (a placeholder for an absent input, a zero D or bias, the
    reverse flags), made once per (shape, dtype, value) rather than on every call."""
    return torch.full(shape, value, dtype=dtype)


def mask_u8(mask):
    """A (b, l) bool mask as the kernels take it: contiguous uint8, or a (1, 1) placeholder for None."""
    return _constant((1, 1), torch.uint8) if mask is None else mask.to(torch.uint8).contiguous()


def _num_blocks(d, g):
    """Blocks per call and per sample: g groups of ceil(d / g / BLOCK) blocks."""
    return g * -(-(d // g) // _load().BLOCK)


def selective_scan_kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask, reverse):
    """Fused scan on CPU tensors. u, delta, z (b, d, l); A (d, n), or (d, 1): one decay per channel shared by its n
    states (the SSD layout, one exp per channel and step instead of n); B, C (b, n, l) or (b, g, n, l);
    D, delta_bias (d,); mask (b, l) bool. Returns y (b, d, l) in u's dtype and the last state (b, d, n) in float32
    or float64. u, delta, z are read in place when their memory is (b, l, d) (the mixers' projections) or all
    (b, d, l)-contiguous (mamba_ssm's layout; y is then (b, d, l)-contiguous too); otherwise they are copied to
    (b, l, d). B and C are copied to (b, l, g, n) unless their memory is already so (d / n times smaller than u).
    """
    require_kernels()
    if u.device.type != "cpu":
        raise ValueError(f"impl='kernel' runs on CPU tensors, got {u.device}")
    ctype = torch.promote_types(u.dtype, torch.float32)
    d = u.shape[1]
    B, C = (M if M.dim() == 4 else M.unsqueeze(1) for M in (B, C))
    if B.shape[1] != C.shape[1] or d % B.shape[1]:
        raise ValueError(f"number of groups {B.shape[1]} must divide the number of channels {d}")
    with torch.autocast(device_type="cpu", enabled=False):
        uk, deltak, zk = _sequences(u, delta, z, ctype)
        Bt, Ct = (M.permute(0, 3, 1, 2).to(ctype).contiguous() for M in (B, C))        # (b, l, g, n)
        params = [None if t is None else t.to(ctype).contiguous() for t in (A, D, delta_bias)]
        tensors = (uk, deltak, params[0], Bt, Ct, params[1], zk, params[2])
        save = backward_can_follow(*tensors)
        y, last = _KernelScan.apply(*tensors, mask, save, bool(delta_softplus), bool(reverse))
    return y.to(u.dtype).transpose(1, 2), last


def _sequences(u, delta, z, ctype):
    """u, delta, z (b, d, l) (z may be None) in ``ctype`` as ``_KernelScan`` takes them: (b, l, d) views of their
    memory when all are (b, d, l)-contiguous, else (b, l, d)-contiguous (a copy of those that are not)."""
    ts = [None if t is None else t.to(ctype) for t in (u, delta, z)]           # a copy keeps the strides
    given = [t for t in ts if t is not None]
    channel_major = all(t.is_contiguous() for t in given) and not ts[0].transpose(1, 2).is_contiguous()
    return [None if t is None else t.transpose(1, 2) if channel_major else t.transpose(1, 2).contiguous() for t in ts]


def _channel_major(t):
    """Whether a (b, l, d) tensor that ``_sequences`` gave is (b, d, l)-contiguous memory, rather than contiguous."""
    return not t.is_contiguous()


class _KernelScan(torch.autograd.Function):
    """y, last = scan(u, delta, A, B, C, D, z, delta_bias; mask, softplus, reverse) on inputs u, delta, z (b, l, d),
    all contiguous or all (b, d, l)-contiguous memory (``_sequences``); A (d, n) or (d, 1); B, C (b, l, g, n)
    contiguous; D, delta_bias (d,) or None. Returns y (b, l, d) in u's layout and last (b, d, n). With ``save`` (a
    backward may follow: ``common.backward_can_follow``, decided by the caller), saves the inputs and the state at every ``CHUNK``-th step (b, l / CHUNK, n, d), not
    the states.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, mask, save, softplus, reverse):
        bsz, length, d = u.shape
        n = B.shape[3]
        y = torch.empty_like(u)                                                    # u's layout
        last = u.new_empty(bsz, d, n)
        starts = u.new_empty(bsz, -(-length // CHUNK), n, d) if save else _constant((1, 1, 1, 1), u.dtype)
        args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, mask, softplus, reverse)
        nblocks = bsz * _num_blocks(d, B.shape[2])
        _run_blocks("scan_fwd", (*args, save, _np_seq(y, _channel_major(u)), _np(last), _np(starts)), nblocks)
        if save:
            ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, mask, starts)
            ctx.flags = softplus, reverse
        return y, last

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B, C, D, z, delta_bias, mask, starts = ctx.saved_tensors
        bsz, length, d = u.shape
        g, n = B.shape[2], B.shape[3]
        nbg = _num_blocks(d, g) // g
        dy = torch.zeros_like(u) if dy is None else dy.to(u.dtype)
        if _channel_major(u):                        # dy in u's layout (a copy only if it is not)
            dy = dy.transpose(1, 2).contiguous().transpose(1, 2)
        else:
            dy = dy.contiguous()
        dlast = u.new_zeros(bsz, d, n) if dlast is None else dlast.to(u.dtype).contiguous()
        du, ddelta = torch.empty_like(u), torch.empty_like(u)
        dz = _constant((1, 1, 1), u.dtype) if z is None else torch.empty_like(u)      # written only with z; u's layout
        dB_part, dC_part = (u.new_empty(bsz, nbg, length, g, n) for _ in range(2))
        dA_part = u.new_empty(bsz, A.shape[1], d)
        dD_part, dbias_part = u.new_zeros(bsz, d), u.new_zeros(bsz, d)
        args = _kernel_args(u, delta, A, B, C, D, z, delta_bias, mask, *ctx.flags)
        cm = _channel_major(u)
        outs = [_np_seq(t, cm) for t in (du, ddelta, dz)] + [_np(t) for t in (dB_part, dC_part, dA_part, dD_part)]
        _run_blocks("scan_bwd", (*args, _np(starts), _np_seq(dy, cm), _np(dlast), *outs, _np(dbias_part)),
                    bsz * g * nbg)
        return (du, ddelta, dA_part.sum(0).t(), dB_part.sum(1), dC_part.sum(1),
                None if D is None else dD_part.sum(0), None if z is None else dz,
                None if delta_bias is None else dbias_part.sum(0), None, None, None, None)


def _np_seq(t, cm):
    """A (b, l, d) sequence as the kernels take it: its contiguous memory, (b, d, l) with ``cm``."""
    return _np(t.transpose(1, 2) if cm else t)


def _kernel_args(u, delta, A, B, C, D, z, delta_bias, mask, softplus, reverse):
    """The leading arguments of ``scan_fwd`` / ``scan_bwd``: numpy views, placeholders for absent inputs."""
    d, g = u.shape[2], B.shape[2]
    cm = _channel_major(u)
    zeros_d = _constant((d,), u.dtype)
    return [_np_seq(u, cm), _np_seq(delta, cm), _np(A.t().contiguous()), _np(B), _np(C),
            _np(zeros_d if D is None else D), _np(_constant((1, 1, 1), u.dtype)) if z is None else _np_seq(z, cm),
            _np(zeros_d if delta_bias is None else delta_bias), _np(mask_u8(mask)),
            _np(_constant((g,), torch.uint8, int(reverse))), softplus, z is not None, mask is not None, cm, CHUNK]
