"""The compiled CPU depthwise conv of ``MaskedDepthwiseConv1d`` (numba), wrapped as a torch autograd op.

Same sums as the module's pure-PyTorch path, in one pass per block of steps of one sample instead of k shifted
multiply-adds, slices, pads and a masked copy (forward) and their autograd graph (backward):
y (b, l, c) = act(bias + sum_j w[j] x[t + offsets[j]]), x zero outside the sequence and at padded steps; act is the
identity or SiLU (fused: the backward recomputes the pre-activation instead of saving it). Runs on the scan kernel's
threads (``scan_kernel._run_blocks``); the kernels are in ``_numba_kernels.py``.
"""
from __future__ import annotations

import numpy as np
import torch

from vidmamba.ssm.scan_kernel import _load, _np, _run_blocks, mask_u8, require_kernels


def depthwise_conv_kernel(x, weight, bias, mask, offsets, silu):
    """x (b, c, l), weight (c, 1, k), bias (c,) or None, mask (b, l) bool or None, offsets: k ints (output t reads
    input t + offsets[j] with weight[:, 0, j]), silu: apply SiLU. Returns (b, c, l) in x's dtype, a transposed view
    of a contiguous (b, l, c) tensor (computed in float32, or float64 for float64 inputs)."""
    require_kernels()
    if x.device.type != "cpu":
        raise ValueError(f"the conv kernel runs on CPU tensors, got {x.device}")
    ctype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(device_type="cpu", enabled=False):
        xt = x.transpose(1, 2).to(ctype).contiguous()      # (b, l, c); a channel slice of a projection is copied
        w = weight[:, 0].t().to(ctype).contiguous()          # (the kernel reads contiguous rows: _numba_kernels.py)
        b = x.new_zeros(x.shape[1], dtype=ctype) if bias is None else bias.to(ctype).contiguous()
        y = _KernelConv.apply(xt, w, b, mask, np.asarray(offsets, dtype=np.int64), bool(silu))
    return y.to(x.dtype).transpose(1, 2)


class _KernelConv(torch.autograd.Function):
    """y = conv(x; w, bias, mask, offsets, silu) on contiguous x, y (b, l, c), w (k, c), bias (c,)."""

    @staticmethod
    def forward(ctx, x, w, bias, mask, offsets, silu):
        y = x.new_empty(x.shape)
        mask8 = mask_u8(mask)
        head = (_np(x), _np(w), _np(bias), _np(mask8), offsets, mask is not None, silu)
        _run_blocks("conv_fwd", (*head, _np(y)), _conv_blocks(x))
        ctx.save_for_backward(x, w, bias, mask8)
        ctx.flags = offsets, mask is not None, silu
        return y

    @staticmethod
    def backward(ctx, dy):
        x, w, bias, mask8 = ctx.saved_tensors
        offsets, has_mask, silu = ctx.flags
        dy = dy.to(x.dtype).contiguous()
        dx = x.new_empty(x.shape)
        nblocks = _conv_blocks(x)
        dw_part, dbias_part = x.new_empty(nblocks, w.shape[0], x.shape[2]), x.new_empty(nblocks, x.shape[2])
        head = (_np(x), _np(w), _np(bias), _np(mask8), offsets, has_mask, silu)
        _run_blocks("conv_bwd", (*head, _np(dy), _np(dx), _np(dw_part), _np(dbias_part)), nblocks)
        return dx, dw_part.sum(0), dbias_part.sum(0), None, None, None


def _conv_blocks(x):
    """The conv kernels' blocks for x (b, l, c): ceil(l / CONV_ROWS) per sample."""
    return x.shape[0] * -(-x.shape[1] // _load().CONV_ROWS)
