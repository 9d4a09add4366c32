"""Mamba-1 selective scan (diagonal A of shape (d, n)), with padding masks and reverse scans.

Recurrence per channel d and state n (ZOH for A, Euler for B, as mamba_ssm):

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t ;   y_t *= silu(z_t) if z is given

Padded steps (mask False) are identity steps (delta = 0 after softplus) and their outputs are 0, so they never
change a valid output, in either direction.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from vidmamba.ssm.common import IMPLS, backward_can_follow, check_impl, expand_groups, flip_time
from vidmamba.ssm.scan_kernel import kernel_available, run_kernel, selective_scan_kernel

SCAN_IMPLS = IMPLS + ("kernel", "mamba_ssm")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, mask=None, reverse=False, impl="auto"):
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics plus ``mask`` and ``reverse``.

    Shapes: u, delta, z (b, d, l); A (d, n); B, C (b, n, l) or (b, g, n, l) with g dividing d; D, delta_bias (d,);
    mask (b, l) bool, True = valid. Returns y (b, d, l) in u's dtype, and with ``return_last_state`` also the final
    state (b, d, n) in float32 or wider (for ``reverse``, the state after the first valid step).
    ``impl``: "ref" (sequential loop, the test oracle), "fast" (chunked pure PyTorch, custom backward), "kernel"
    (fused numba CPU kernel, ``scan_kernel.py``), "mamba_ssm" (its CUDA ``selective_scan_fn``, extra ``[cuda]``) or
    "auto": "kernel" for CPU tensors when numba imports, "mamba_ssm" for CUDA tensors when it imports, else "fast"
    (also after a kernel failed to compile: ``scan_kernel.KernelError``).
    """
    auto = check_impl(impl, SCAN_IMPLS) == "auto"
    if auto:
        if u.device.type == "cpu":
            impl = "kernel" if kernel_available() else "fast"
        else:
            impl = "mamba_ssm" if u.device.type == "cuda" and mamba_ssm_scan_fn() is not None else "fast"
    if impl == "kernel":
        out = run_kernel(lambda: selective_scan_kernel(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask,
                                                       reverse), fallback=auto)
        if out is not None:
            return out if return_last_state else out[0]
        impl = "fast"
    if reverse:
        u, delta, B, C, z, mask = flip_time([u, delta, B, C, z, mask], dims=[-1, -1, -1, -1, -1, -1])
    fn = {"ref": selective_scan_ref, "fast": _selective_scan_fast, "mamba_ssm": _selective_scan_mamba_ssm}[impl]
    y, last = fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask)
    if reverse:
        y = y.flip(-1)
    return (y, last) if return_last_state else y


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus, mask):
    """Upcast to float32 (or keep float64), apply bias/softplus/mask to delta; B/C become (b, g, n, l)."""
    ctype = torch.promote_types(u.dtype, torch.float32)
    delta = _final_delta(delta.to(ctype), delta_bias, delta_softplus, mask)
    B, C = (M.to(ctype) if M.dim() == 4 else M.to(ctype).unsqueeze(1) for M in (B, C))
    if u.shape[1] % B.shape[1] or u.shape[1] % C.shape[1]:
        raise ValueError(f"number of groups {B.shape[1]} must divide the number of channels {u.shape[1]}")
    return u.to(ctype), delta, A.to(ctype), B, C


def _final_delta(delta, delta_bias, delta_softplus, mask):
    """delta (b, d, l) -> softplus(delta + bias) (as asked) * mask, in delta's dtype."""
    if delta_bias is not None:
        delta = delta + delta_bias.to(delta.dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    return delta if mask is None else delta * mask[:, None, :].to(delta.dtype)


def _finish(y, u, D, z, mask, out_dtype):
    """y (b, d, l): add the skip term, gate with silu(z), zero padded steps, cast back."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    if mask is not None:
        y = y * mask[:, None, :].to(y.dtype)
    return y.to(out_dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, mask=None):
    """Sequential reference: a plain loop over time. Returns (y (b, d, l), last_state (b, d, n))."""
    out_dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, mask)
    bsz, d, length = u.shape
    B, C = expand_groups(B, d), expand_groups(C, d)                 # (b, d, n, l)
    h = u.new_zeros(bsz, d, A.shape[1])
    ys = []
    # unbind once: indexing per step would make autograd build a full-size zero gradient per step (O(l^2))
    for dt, u_t, B_t, C_t in zip(delta.unbind(-1), u.unbind(-1), B.unbind(-1), C.unbind(-1)):
        dt = dt[..., None]                                          # (b, d, 1)
        h = torch.exp(dt * A) * h + dt * B_t * u_t[..., None]
        ys.append((h * C_t).sum(-1))                                # (b, d)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(u.shape)
    return _finish(y, u, D, z, mask, out_dtype), h


@functools.cache
def mamba_ssm_scan_fn():
    """mamba_ssm's ``selective_scan_fn`` (CUDA), or None when mamba_ssm cannot be imported (looked up once: a failed
    import would search the path again on every scan)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError:
        return None
    return selective_scan_fn


def _selective_scan_mamba_ssm(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask):
    """mamba_ssm's ``selective_scan_fn`` with our mask: padded steps get dt = 0 (bias and softplus applied here in
    float32) and output 0. Returns (y (b, d, l), last_state (b, d, n))."""
    fn = mamba_ssm_scan_fn()
    if fn is None:
        raise ImportError("impl='mamba_ssm' needs mamba_ssm (pip install 'vidmamba[cuda]' on a CUDA machine)")
    if mask is not None:
        delta = _final_delta(delta.to(torch.promote_types(delta.dtype, torch.float32)), delta_bias, delta_softplus,
                             mask)
        delta_bias, delta_softplus = None, False
    y, last = fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state=True)
    return (y if mask is None else y * mask[:, None, :].to(y.dtype)), last


def _selective_scan_fast(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask, chunk_size=None):
    """Chunked scan with a hand-written backward (``_ChunkedScan``); pre/post-processing stays in plain autograd."""
    out_dtype = u.dtype
    u, delta, A, B, C = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, mask)
    y, last = _ChunkedScan.apply(u, delta, A, B, C, chunk_size or _default_chunk(u.shape[0] * A.numel()),
                                 backward_can_follow(u, delta, A, B, C))
    return _finish(y, u, D, z, mask, out_dtype), last


def _default_chunk(state_numel, slab_numel=1 << 20):
    """Steps per chunk: a power of two in [16, 256] with a (T, b, d, n) slab of about 2**20 elements (cache-sized;
    measured on a 2-core CPU: b=1, d=512, n=16 -> 128 and b=8 -> 16 were the fastest)."""
    T = 16
    while T < 256 and 2 * T * state_numel <= slab_numel:
        T *= 2
    return T


def _no_autocast(t):
    return torch.autocast(device_type=t.device.type, enabled=False)


def _time_major(u, delta, B, C):
    """(b, d, l) -> (l, b, d) and (b, g, n, l) -> (l, b, g, n), contiguous, so a chunk of steps is one slab."""
    return (u.permute(2, 0, 1).contiguous(), delta.permute(2, 0, 1).contiguous(),
            B.permute(3, 0, 1, 2).contiguous(), C.permute(3, 0, 1, 2).contiguous())


def _chunk_inputs(dA, hs, dlt, du, A, Bt, g):
    """Fill the (T, b, d, n) slabs dA = exp(delta*A) and hs = delta*u*B (the per-step input) in place."""
    T, bsz, d, n = dA.shape
    torch.mul(dlt.unsqueeze(-1), A, out=dA).exp_()
    torch.mul(du.view(T, bsz, g, d // g, 1), Bt.view(T, bsz, g, 1, n), out=hs.view(T, bsz, g, d // g, n))


def _contract_state(h, v):
    """(T, b, g, dg, n) x (T, b, g, n) -> (T, b, g, dg): sum over the state axis. (einsum, not a batched
    matrix-vector matmul: 3-5x faster on CPU for these shapes.)"""
    return torch.einsum("tbgdn,tbgn->tbgd", h, v)


def _scan_slab(hs, dA, h0):
    """In place: hs[i] <- dA[i] * hs[i-1] + hs[i] with hs[-1] = h0 (one fused op per step)."""
    hs_l, dA_l = hs.unbind(0), dA.unbind(0)
    hs_l[0].addcmul_(dA_l[0], h0)
    for i in range(1, len(hs_l)):
        hs_l[i].addcmul_(dA_l[i], hs_l[i - 1])


class _ChunkedScan(torch.autograd.Function):
    """Core recurrence h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, y_t = <C_t, h_t>, h_0 = 0.

    Inputs u, delta (b, d, l); A (d, n); B, C (b, g, n, l). Returns y (b, d, l) and the last state (b, d, n).
    The forward walks chunks of T steps; per chunk the decays and inputs are computed as (T, b, d, n) slabs, the
    recurrence is one in-place addcmul per step, and the C contraction is one einsum. With ``save`` (a backward may
    follow: ``common.backward_can_follow``, decided by the caller) the state at each chunk start is saved, and only
    that; the backward recomputes the chunk's states from it and runs the reverse scan
    dh_t = C_t dy_t + exp(delta_{t+1} A) dh_{t+1}. Memory: O(b d n (T + l / T) + b d l).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk, save):
        ctx.set_materialize_grads(False)
        with _no_autocast(u):
            bsz, d, length = u.shape
            g, n = B.shape[1], A.shape[1]
            ut, dlt, Bt, Ct = _time_major(u, delta, B, C)
            du = dlt * ut
            T = max(1, min(chunk, length))
            dA = u.new_empty(T, bsz, d, n)
            hs = u.new_empty(T, bsz, d, n)
            nchunks = -(-length // T)
            starts = u.new_empty(nchunks if save else 0, bsz, d, n)
            h = u.new_zeros(bsz, d, n)
            y = u.new_empty(length, bsz, d)
            for c, t0 in enumerate(range(0, length, T)):
                t1 = min(t0 + T, length)
                Tc = t1 - t0
                if save:
                    starts[c] = h
                _chunk_inputs(dA[:Tc], hs[:Tc], dlt[t0:t1], du[t0:t1], A, Bt[t0:t1], g)
                _scan_slab(hs[:Tc], dA[:Tc], h)
                y[t0:t1] = _contract_state(hs[:Tc].view(Tc, bsz, g, d // g, n), Ct[t0:t1]).view(Tc, bsz, d)
                h = hs[Tc - 1].clone()
        if save:
            ctx.save_for_backward(ut, dlt, A, Bt, Ct, starts)
            ctx.chunk = T
        return y.permute(1, 2, 0), h

    @staticmethod
    def backward(ctx, dy, dlast):
        ut, dlt, A, Bt, Ct, starts = ctx.saved_tensors
        T = ctx.chunk
        with _no_autocast(ut):
            length, bsz, d = ut.shape
            g, n = Bt.shape[2], A.shape[1]
            dg = d // g
            dyt = dy.to(ut.dtype).permute(2, 0, 1).contiguous() if dy is not None else ut.new_zeros(ut.shape)
            du = dlt * ut
            dA = ut.new_empty(T, bsz, d, n)
            hbuf = ut.new_empty(T + 1, bsz, d, n)     # row 0: state before the chunk; rows 1..T: states in it
            dH = ut.new_empty(T, bsz, d, n)
            d_u, d_delta = torch.empty_like(ut), torch.empty_like(ut)
            d_B, d_C = torch.empty_like(Bt), torch.empty_like(Ct)
            d_A = torch.zeros_like(A)
            carry = dlast.to(ut.dtype) if dlast is not None else None
            for c in reversed(range(starts.shape[0])):
                t0, t1 = c * T, min(c * T + T, length)
                Tc = t1 - t0
                a, hprev, hcur, dh = dA[:Tc], hbuf[:Tc], hbuf[1:Tc + 1], dH[:Tc]
                hbuf[0] = starts[c]
                _chunk_inputs(a, hcur, dlt[t0:t1], du[t0:t1], A, Bt[t0:t1], g)
                _scan_slab(hcur, a, starts[c])
                dyc = dyt[t0:t1].view(Tc, bsz, g, 1, dg)
                # dC_t = sum_d dy_t h_t ; reverse scan for dh (in place, same fused step as the forward)
                torch.matmul(dyc, hcur.view(Tc, bsz, g, dg, n), out=d_C[t0:t1].view(Tc, bsz, g, 1, n))
                torch.mul(dyc.transpose(-1, -2), Ct[t0:t1].view(Tc, bsz, g, 1, n), out=dh.view(Tc, bsz, g, dg, n))
                if carry is not None:
                    dh[Tc - 1] += carry
                dh_l, a_l = dh.unbind(0), a.unbind(0)
                for i in range(Tc - 2, -1, -1):
                    dh_l[i].addcmul_(a_l[i + 1], dh_l[i + 1])
                carry = a_l[0] * dh_l[0]
                # input terms: d(delta B u) = dh
                dhB = _contract_state(dh.view(Tc, bsz, g, dg, n), Bt[t0:t1]).view(Tc, bsz, d)
                torch.mul(dlt[t0:t1], dhB, out=d_u[t0:t1])
                torch.mul(ut[t0:t1], dhB, out=d_delta[t0:t1])
                torch.matmul(du[t0:t1].view(Tc, bsz, g, 1, dg), dh.view(Tc, bsz, g, dg, n),
                             out=d_B[t0:t1].view(Tc, bsz, g, 1, n))
                # decay terms: q = dh * h_{t-1} * a = d(log a) = d(delta A)
                q = a.mul_(hprev).mul_(dh)
                d_delta[t0:t1] += torch.mul(q, A, out=hprev).sum(-1)
                d_A += q.mul_(dlt[t0:t1].unsqueeze(-1)).view(Tc * bsz, d, n).sum(0)
        return (d_u.permute(1, 2, 0), d_delta.permute(1, 2, 0), d_A, d_B.permute(1, 2, 3, 0),
                d_C.permute(1, 2, 3, 0), None, None)
