"""Mamba-1 selective scan (diagonal A of shape (d, n)), with padding masks and reverse scans.

Recurrence per channel d and state n (ZOH for A, Euler for B, as mamba_ssm):

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t = <C_t, h_t> + D * u_t ;   y_t *= silu(z_t) if z is given

Padded steps (mask False) are identity steps (delta = 0 after softplus) and their outputs are 0, so they never
change a valid output, in either direction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidmamba.ssm.common import check_impl, flip_time, expand_groups


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, *, mask=None, reverse=False, impl="auto"):
    """Selective scan with mamba_ssm's ``selective_scan_fn`` semantics plus ``mask`` and ``reverse``.

    Shapes: u, delta, z (b, d, l); A (d, n); B, C (b, n, l) or (b, g, n, l) with g dividing d; D, delta_bias (d,);
    mask (b, l) bool, True = valid. Returns y (b, d, l) in u's dtype, and with ``return_last_state`` also the final
    state (b, d, n) in float32 or wider (for ``reverse``, the state after the first valid step).
    ``impl``: "ref" (sequential loop, the test oracle), "fast" (chunked, custom backward) or "auto" (= "fast").
    """
    impl = check_impl(impl)
    if reverse:
        u, delta, B, C, z, mask = flip_time([u, delta, B, C, z, mask], dims=[-1, -1, -1, -1, -1, -1])
    fn = selective_scan_ref if impl == "ref" else _selective_scan_fast
    y, last = fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask)
    if reverse:
        y = y.flip(-1)
    return (y, last) if return_last_state else y


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus, mask):
    """Upcast to float32 (or keep float64), apply bias/softplus/mask to delta, expand B/C groups to (b, d, n, l)."""
    ctype = torch.promote_types(u.dtype, torch.float32)
    d = u.shape[1]
    delta = delta.to(ctype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(ctype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if mask is not None:
        delta = delta * mask[:, None, :].to(ctype)
    B = expand_groups(B.to(ctype), d)
    C = expand_groups(C.to(ctype), d)
    return u.to(ctype), delta, A.to(ctype), B, C


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
    h = u.new_zeros(bsz, d, A.shape[1])
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]                                   # (b, d, 1)
        h = torch.exp(dt * A) * h + dt * B[..., t] * u[:, :, t, None]
        ys.append((h * C[..., t]).sum(-1))                          # (b, d)
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(u.shape)
    return _finish(y, u, D, z, mask, out_dtype), h


def _selective_scan_fast(u, delta, A, B, C, D, z, delta_bias, delta_softplus, mask):
    raise NotImplementedError  # replaced by the chunked implementation
