"""Mamba-1 mixer (mamba_ssm's ``Mamba`` block) with padding masks, reverse scans and an optional shared A (MambaVL).

Parameter names and initialisation follow ``mamba_ssm/modules/mamba_simple.py`` (in_proj, conv1d, x_proj, dt_proj,
A_log, D, out_proj), so its state dicts load directly.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidmamba.ssm.layers import (MaskedDepthwiseConv1d, init_dt_proj, masked_fill_pads, no_weight_decay,
                                 s4d_real_a_log, upcast)
from vidmamba.ssm.selective_scan import selective_scan


def resolve_dt_rank(dt_rank, d_model: int) -> int:
    """``"auto"`` -> ceil(d_model / 16), as mamba_ssm."""
    return math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)


def make_selective_branch(d_inner: int, d_state: int, d_conv: int, dt_rank: int, conv_bias: bool, conv: str,
                          dt_init: str, dt_scale: float, dt_min: float, dt_max: float, dt_init_floor: float,
                          factory: dict, impl: str = "auto"):
    """The per-direction pieces of a Mamba-1 scan path: (conv1d (with SiLU), x_proj, dt_proj, D), mamba_ssm init."""
    conv1d = MaskedDepthwiseConv1d(d_inner, d_conv, bias=conv_bias, mode=conv, activation="silu", impl=impl, **factory)
    x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False, **factory)
    dt_proj = nn.Linear(dt_rank, d_inner, bias=True, **factory)
    init_dt_proj(dt_proj, dt_rank, dt_init, dt_scale, dt_min, dt_max, dt_init_floor)
    D = no_weight_decay(nn.Parameter(torch.ones(d_inner, device=factory.get("device"))))
    return conv1d, x_proj, dt_proj, D


def selective_branch(xs, mask, conv1d, x_proj, dt_proj, A_log, D, z=None, impl="auto", reverse=False):
    """One Mamba-1 scan path: ``scan(silu(conv(xs)))`` with dt, B, C from the conv output.

    xs (b, d, l) (pre-conv), mask (b, l) or None, A_log (d, n), z (b, d, l) or None (gate ``silu(z)``).
    ``reverse``: the scan runs from each sample's last valid step to its first (pair it with an "anticausal" conv).
    Returns y (b, d, l) = (C.h + D*x) [* silu(z)], zero at pads.
    """
    d_state = A_log.shape[-1]
    dt_rank = dt_proj.in_features
    xs = conv1d(xs, mask)                                                  # SiLU(conv(xs))
    dt, B, C = x_proj(xs.transpose(1, 2)).split([dt_rank, d_state, d_state], dim=-1)   # (b, l, .)
    delta = F.linear(dt, dt_proj.weight).transpose(1, 2)                               # (b, d, l); bias in the scan
    A = -torch.exp(upcast(A_log))
    return selective_scan(xs, delta, A, B.transpose(1, 2), C.transpose(1, 2), D=upcast(D), z=z,
                          delta_bias=upcast(dt_proj.bias), delta_softplus=True, mask=mask, reverse=reverse,
                          impl=impl)


class SharedALog(nn.Module):
    """Owner of one A_log (d_inner, d_state) shared by several ``Mamba1(own_a_log=False)`` mixers (MambaVL).

    S4D-real init, float32, ``_no_weight_decay``. ``forward()`` returns the parameter.
    """

    def __init__(self, d_inner: int, d_state: int = 16, device=None):
        super().__init__()
        self.A_log = no_weight_decay(nn.Parameter(s4d_real_a_log(d_inner, d_state, device=device)))

    def forward(self) -> nn.Parameter:
        return self.A_log


class Mamba1(nn.Module):
    """Mamba-1 selective SSM mixer. x (b, l, d_model), mask (b, l) bool (True = valid) -> (b, l, d_model).

    ``in_proj -> (x, z)``; ``x -> depthwise conv ("causal" or "same") -> SiLU -> x_proj -> (dt_lowrank, B, C)``;
    ``y = selective_scan(x, dt_proj(dt_lowrank), A=-exp(A_log), B, C, D, z, softplus(. + dt_proj.bias))``;
    ``out_proj(y)``. Outputs at padded steps are exactly 0 and padded steps never change valid outputs.

    ``own_a_log=False``: the module has no A_log; ``forward`` needs the caller's ``A_log`` (d_inner, d_state),
    e.g. from a ``SharedALog`` (MambaVL's shared A). ``impl`` is passed to the scan ("auto", "ref", "fast",
    "kernel").
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank="auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init: str = "random", dt_scale: float = 1.0,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False, conv: str = "causal",
                 own_a_log: bool = True, impl: str = "auto", device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state, self.expand = d_model, d_state, expand
        self.d_inner = expand * d_model
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.own_a_log, self.impl = own_a_log, impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        self.conv1d, self.x_proj, self.dt_proj, self.D = make_selective_branch(
            self.d_inner, d_state, d_conv, self.dt_rank, conv_bias, conv, dt_init, dt_scale, dt_min, dt_max,
            dt_init_floor, factory, impl)
        if own_a_log:
            self.A_log = no_weight_decay(nn.Parameter(s4d_real_a_log(self.d_inner, d_state, device=device)))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def resolve_a_log(self, A_log=None) -> torch.Tensor:
        """The A_log to use: the module's own, or the caller's (checked) when ``own_a_log=False``."""
        if isinstance(A_log, SharedALog):
            A_log = A_log.A_log
        if self.own_a_log:
            if A_log is not None:
                raise ValueError("this Mamba1 owns its A_log; build it with own_a_log=False to pass a shared A_log")
            return self.A_log
        if A_log is None:
            raise ValueError(f"Mamba1(own_a_log=False) needs the shared A_log of shape "
                             f"({self.d_inner}, {self.d_state}) passed to forward(..., A_log=...)")
        if tuple(A_log.shape) != (self.d_inner, self.d_state):
            raise ValueError(f"shared A_log has shape {tuple(A_log.shape)}, "
                             f"expected (d_inner, d_state) = ({self.d_inner}, {self.d_state})")
        return A_log

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, A_log: torch.Tensor | None = None,
                reverse: bool = False) -> torch.Tensor:
        """x (b, l, d_model), mask (b, l) bool or None, A_log (d_inner, d_state) iff own_a_log=False.

        ``reverse=True`` runs the whole mixer (conv included) on each sample reversed within its valid length and
        returns the result in the original order. Returns (b, l, d_model).
        """
        A_log = self.resolve_a_log(A_log)
        if reverse:
            # Flipping the whole right-padded tensor reverses each sample within its length; the leading pads
            # are zeroed conv inputs and identity scan steps, so they do not reach valid steps.
            x, mask = x.flip(1), None if mask is None else mask.flip(1)
        xs, z = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)                         # (b, d_inner, l) each
        y = selective_branch(xs, mask, self.conv1d, self.x_proj, self.dt_proj, A_log, self.D, z=z, impl=self.impl)
        out = masked_fill_pads(self.out_proj(y.transpose(1, 2)), mask, 1)
        return out.flip(1) if reverse else out
