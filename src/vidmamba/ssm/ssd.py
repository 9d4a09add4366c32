"""Mamba-2 state-space duality (SSD) scan: one scalar decay per head, with padding masks and reverse scans.

Recurrence per head h (state of shape (p, n)), as mamba_ssm's ``mamba_chunk_scan_combined``:

    H_t = exp(dt_t * A_h) * H_{t-1} + dt_t * x_t B_t^T
    y_t = H_t C_t + D * x_t ;   y_t *= silu(z_t) if z is given

Padded steps (mask False) are identity steps (dt = 0 after softplus) and their outputs are 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidmamba.ssm.common import check_impl, flip_time


def ssd_scan(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, return_last_state=False, *,
             mask=None, reverse=False, chunk_size=64, impl="auto"):
    """SSD scan (Mamba-2 layout).

    Shapes: x, z (b, l, h, p); dt (b, l, h); A (h,); B, C (b, l, g, n) with g dividing h; D (h,) or (h, p);
    dt_bias (h,); mask (b, l) bool, True = valid. Returns y (b, l, h, p) in x's dtype, and with
    ``return_last_state`` also the final state (b, h, p, n) in float32 or wider.
    ``impl``: "ref" (sequential loop, the test oracle), "fast" (chunked SSD with ``chunk_size``) or "auto" (= "fast").
    """
    impl = check_impl(impl)
    if reverse:
        x, dt, B, C, z, mask = flip_time([x, dt, B, C, z, mask], dims=[1] * 6)
    if impl == "ref":
        y, last = ssd_scan_ref(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask)
    else:
        y, last = _ssd_scan_chunked(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask, chunk_size)
    if reverse:
        y = y.flip(1)
    return (y, last) if return_last_state else y


def _prepare(x, dt, A, B, C, dt_bias, dt_softplus, mask):
    """Upcast, apply bias/softplus/mask to dt, expand B/C groups to heads: B, C (b, l, h, n)."""
    ctype = torch.promote_types(x.dtype, torch.float32)
    nheads = x.shape[2]
    dt = dt.to(ctype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(ctype)
    if dt_softplus:
        dt = F.softplus(dt)
    if mask is not None:
        dt = dt * mask[:, :, None].to(ctype)
    groups = B.shape[2]
    if nheads % groups:
        raise ValueError(f"number of groups {groups} must divide the number of heads {nheads}")
    B = B.to(ctype).repeat_interleave(nheads // groups, dim=2)
    C = C.to(ctype).repeat_interleave(nheads // groups, dim=2)
    return x.to(ctype), dt, A.to(ctype), B, C


def _finish(y, x, D, z, mask, out_dtype):
    """y (b, l, h, p): add the skip term, gate with silu(z), zero padded steps, cast back."""
    if D is not None:
        D = D.to(y.dtype)
        y = y + x * (D[:, None] if D.dim() == 1 else D)
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    if mask is not None:
        y = y * mask[:, :, None, None].to(y.dtype)
    return y.to(out_dtype)


def ssd_scan_ref(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, mask=None):
    """Sequential reference: a plain loop over time. Returns (y (b, l, h, p), last_state (b, h, p, n))."""
    out_dtype = x.dtype
    x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, mask)
    bsz, length, nheads, headdim = x.shape
    state = x.new_zeros(bsz, nheads, headdim, B.shape[-1])
    ys = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)[:, :, None, None]                      # (b, h, 1, 1)
        inp = dt[:, t, :, None, None] * x[:, t, :, :, None] * B[:, t, :, None, :]
        state = decay * state + inp                                             # (b, h, p, n)
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return _finish(y, x, D, z, mask, out_dtype), state


def _ssd_scan_chunked(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask, chunk_size):
    raise NotImplementedError  # replaced by the chunked implementation
