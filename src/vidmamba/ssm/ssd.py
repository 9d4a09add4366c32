"""Mamba-2 state-space duality (SSD) scan: one scalar decay per head, with padding masks and reverse scans.

Recurrence per head h (state of shape (p, n)), as mamba_ssm's ``mamba_chunk_scan_combined``:

    H_t = exp(dt_t * A_h) * H_{t-1} + dt_t * x_t B_t^T
    y_t = H_t C_t + D * x_t ;   y_t *= silu(z_t) if z is given

Padded steps (mask False) are identity steps (dt = 0 after softplus) and their outputs are 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vidmamba.ssm.common import IMPLS, backward_can_follow, check_impl, flip_time
from vidmamba.ssm.scan_kernel import kernel_available, run_kernel, selective_scan_kernel

KERNEL_MAX_STATE_GRAD = 64   # with gradients "auto" uses the kernel up to this d_state (at 128 it lost at 1 thread)


def ssd_scan(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, return_last_state=False, *,
             mask=None, reverse=False, chunk_size=64, impl="auto"):
    """SSD scan (Mamba-2 layout).

    Shapes: x, z (b, l, h, p); dt (b, l, h); A (h,); B, C (b, l, g, n) with g dividing h; D (h,) or (h, p);
    dt_bias (h,); mask (b, l) bool, True = valid. Returns y (b, l, h, p) in x's dtype, and with
    ``return_last_state`` also the final state (b, h, p, n) in float32 or wider.
    ``impl``: "ref" (sequential loop, the test oracle), "fast" (chunked SSD with ``chunk_size``), "kernel" (the
    Mamba-1 numba kernel on the same recurrence per channel with one decay per channel for its n states,
    ``_ssd_as_selective_scan``) or "auto": "kernel" for CPU tensors when numba imports, at every d_state without
    gradients and up to ``KERNEL_MAX_STATE_GRAD`` with them, else "fast". (``benchmarks/conv_ssd.py``, 1 / 2 threads:
    forward 1.8-4.8x / 2.0-4.2x the chunked SSD at d_state 16-128 (HieraMamba's MAD prediction, d_state 64: 2.2x /
    2.5x); forward + backward at MAD training 1.12x / 1.24x, 1.5-2.9x at d_state 16-32, 1.11x / 0.91x at d_state 64
    and 4k steps, but 0.85x / 0.81x at d_state 64 on short inputs (8 x 160 steps) and 0.79x / 0.82x at 128.)
    """
    auto = check_impl(impl, IMPLS + ("kernel",)) == "auto"
    if auto:
        fits = B.shape[-1] <= KERNEL_MAX_STATE_GRAD or not backward_can_follow(x, dt, A, B, C, D, z, dt_bias)
        impl = "kernel" if x.device.type == "cpu" and fits and kernel_available() else "fast"
    if impl == "kernel":
        out = run_kernel(lambda: _ssd_as_selective_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask, reverse),
                         fallback=auto)
        if out is not None:
            return out if return_last_state else out[0]
        impl = "fast"
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
    """Upcast, apply bias/softplus/mask to dt; B, C stay (b, l, g, n)."""
    ctype = torch.promote_types(x.dtype, torch.float32)
    nheads = x.shape[2]
    dt = dt.to(ctype)
    if dt_bias is not None:
        dt = dt + dt_bias.to(ctype)
    if dt_softplus:
        dt = F.softplus(dt)
    if mask is not None:
        dt = dt * mask[:, :, None].to(ctype)
    for M in (B, C):
        if nheads % M.shape[2]:
            raise ValueError(f"number of groups {M.shape[2]} must divide the number of heads {nheads}")
    return x.to(ctype), dt, A.to(ctype), B.to(ctype), C.to(ctype)


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


def _ssd_as_selective_scan(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask, reverse):
    """The SSD recurrence as a Mamba-1 selective scan over d = h * p channels: channel (h, p) has dt_h, the decay A_h
    for each of its n states, and its head's group of B / C (heads of a group are consecutive, as are a group's
    channels in the Mamba-1 layout); then H_t[h, p, :] is the Mamba-1 state of channel (h, p). Runs the numba kernel
    (no chunking: l * d * n state updates). Returns (y (b, l, h, p), last_state (b, h, p, n))."""
    nheads, hdim = x.shape[2:]
    per_channel = lambda t: None if t is None else t.repeat_interleave(hdim, -1)   # noqa: E731  (.., h) -> (.., d)
    if D is not None:
        D = D.flatten() if D.dim() == 2 else per_channel(D)
    A = per_channel(A)[:, None]                                    # (d, 1): one decay per channel for all n states
    y, last = selective_scan_kernel(x.flatten(2).transpose(1, 2), per_channel(dt).transpose(1, 2), A,
                                    B.permute(0, 2, 3, 1), C.permute(0, 2, 3, 1), D,
                                    None if z is None else z.flatten(2).transpose(1, 2), per_channel(dt_bias),
                                    dt_softplus, mask, reverse)
    return y.transpose(1, 2).unflatten(-1, (nheads, hdim)), last.unflatten(1, (nheads, hdim))


def ssd_scan_ref(x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False, mask=None):
    """Sequential reference: a plain loop over time. Returns (y (b, l, h, p), last_state (b, h, p, n))."""
    out_dtype = x.dtype
    x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, mask)
    bsz, _, nheads, headdim = x.shape
    B, C = (M.repeat_interleave(nheads // M.shape[2], dim=2) for M in (B, C))   # (b, l, h, n)
    state = x.new_zeros(bsz, nheads, headdim, B.shape[-1])
    ys = []
    for dt_t, x_t, B_t, C_t in zip(dt.unbind(1), x.unbind(1), B.unbind(1), C.unbind(1)):   # unbind: O(l) backward
        decay = torch.exp(dt_t * A)[:, :, None, None]                           # (b, h, 1, 1)
        state = decay * state + (dt_t[:, :, None] * x_t)[..., None] * B_t[:, :, None, :]   # (b, h, p, n)
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C_t))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return _finish(y, x, D, z, mask, out_dtype), state


def _ssd_scan_chunked(x, dt, A, B, C, D, z, dt_bias, dt_softplus, mask, chunk_size):
    """Chunked SSD (plain autograd): intra-chunk matmuls, chunk-end states, a short recurrence over chunks,
    state-to-output. Returns (y (b, l, h, p), last_state (b, h, p, n))."""
    out_dtype = x.dtype
    x, dt, A, B, C = _prepare(x, dt, A, B, C, dt_bias, dt_softplus, mask)
    with torch.autocast(device_type=x.device.type, enabled=False):
        y, last = _ssd_core(x, dt, A, B, C, chunk_size)
    return _finish(y, x, D, z, mask, out_dtype), last


def _ssd_core(x, dt, A, B, C, chunk_size):
    """x (b, l, h, p), dt (b, l, h) (final, masked), A (h,), B, C (b, l, g, n); all in the compute dtype.

    Decays are exp of differences of within-chunk cumulative sums of ``dt * A <= 0`` (as mamba_ssm's kernels): the
    pairs i < j are set to -inf before exp, so every decay lies in [0, 1] and nothing overflows. Heads sharing a
    group are laid side by side (``hg * p`` columns), so the state matmuls need no broadcast copies of B or C."""
    bsz, length, nheads, hdim = x.shape
    g, n = B.shape[2], B.shape[3]
    hg = nheads // g
    T = max(1, min(chunk_size, length))
    nc = -(-length // T)
    pad = nc * T - length
    if pad:                                   # dt = 0, x = 0 at the tail: identity steps, final state unchanged
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    X = (x * dt[..., None]).view(bsz, nc, T, g, hg, hdim)                     # (b, c, T, g, hg, p)
    Bc, Cc = (M.view(bsz, nc, T, g, n).transpose(2, 3) for M in (B, C))        # (b, c, g, T, n)
    cs = (dt * A).view(bsz, nc, T, g, hg).permute(0, 1, 3, 4, 2).cumsum(-1)   # (b, c, g, hg, T), non-increasing

    # 1. intra-chunk: y_i += sum_{j <= i} (C_i . B_j) exp(cs_i - cs_j) dt_j x_j
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    decay = (cs[..., :, None] - cs[..., None, :]).masked_fill_(~causal, -torch.inf).exp_()   # (b, c, g, hg, T, T)
    y = (decay * (Cc @ Bc.transpose(-1, -2)).unsqueeze(3)) @ X.permute(0, 1, 3, 4, 2, 5)   # (b, c, g, hg, T, p)
    y = y.permute(0, 1, 4, 2, 3, 5)                                                        # (b, c, T, g, hg, p)
    # 2. state at each chunk end from that chunk's inputs alone: sum_j exp(cs_{T-1} - cs_j) dt_j x_j B_j^T
    to_end = torch.exp(cs[..., -1:] - cs).permute(0, 1, 4, 2, 3)[..., None]                # (b, c, T, g, hg, 1)
    states = (X * to_end).flatten(-2).transpose(2, 3).transpose(-1, -2) @ Bc                # (b, c, g, hg*p, n)
    # 3. recurrence over chunks: state entering chunk c
    chunk_decay = torch.exp(cs[..., -1]).repeat_interleave(hdim, -1)[..., None]            # (b, c, g, hg*p, 1)
    h = x.new_zeros(bsz, g, hg * hdim, n)
    entering = []
    # unbind, not [:, c]: per-step indexing would give an O(nc^2) backward (a full-size zero grad per chunk)
    for decay_c, states_c in zip(chunk_decay.unbind(1), states.unbind(1)):
        entering.append(h)
        h = decay_c * h + states_c
    # 4. contribution of the entering state: exp(cs_i) C_i . h
    h_in = torch.stack(entering, dim=1)                                                    # (b, c, g, hg*p, n)
    y_state = (Cc @ h_in.transpose(-1, -2)).transpose(2, 3).unflatten(-1, (hg, hdim))     # (b, c, T, g, hg, p)
    y = y + y_state * torch.exp(cs).permute(0, 1, 4, 2, 3)[..., None]
    return y.reshape(bsz, nc * T, nheads, hdim)[:, :length], h.reshape(bsz, nheads, hdim, n)
