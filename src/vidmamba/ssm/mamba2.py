"""Mamba-2 mixer (mamba_ssm's ``Mamba2``): SSD scan with one scalar decay per head, with padding masks.

Parameter names and initialisation follow ``mamba_ssm/modules/mamba2.py`` (in_proj ordered [z, x, B, C, dt],
conv1d over xBC, dt_bias, A_log, D per head, norm, out_proj).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vidmamba.ssm.layers import (GatedRMSNorm, MaskedDepthwiseConv1d, dt_bias_init, masked_fill_pads, no_weight_decay,
                                 upcast)
from vidmamba.ssm.ssd import ssd_scan


def conv_act(conv1d: MaskedDepthwiseConv1d, xbc: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """SiLU(depthwise conv) over time of a channels-last tensor: (b, l, c) -> (b, l, c); pads zeroed first (the conv
    is built with ``activation="silu"``)."""
    return conv1d(xbc.transpose(1, 2), mask).transpose(1, 2)


def init_ssd_mixer(m: nn.Module, d_model, d_state, expand, headdim, ngroups, chunk_size, impl, directions, d_conv,
                   conv, conv_bias, bias, dt_min, dt_max, dt_init_floor, factory) -> None:
    """Set the dims and the shared pieces of an SSD mixer with ``directions`` (1: Mamba2, 2: Hydra) B/C/dt sets.

    Adds ``in_proj`` (d_model -> [z | x | (B, C) * directions | dt * directions]), ``conv1d`` over xBC, and the
    per-head ``dt_bias`` (mamba_ssm init) and ``D`` (ones), both ``_no_weight_decay``.
    """
    m.d_model, m.d_state, m.headdim, m.ngroups = d_model, d_state, headdim, ngroups
    m.d_inner = expand * d_model
    if m.d_inner % headdim:
        raise ValueError(f"d_inner={m.d_inner} must be a multiple of headdim={headdim}")
    m.nheads = m.d_inner // headdim
    if m.nheads % ngroups:
        raise ValueError(f"ngroups={ngroups} must divide nheads={m.nheads}")
    m.chunk_size, m.impl = chunk_size, impl
    conv_dim = m.d_inner + directions * 2 * ngroups * d_state
    m.in_proj = nn.Linear(d_model, m.d_inner + conv_dim + directions * m.nheads, bias=bias, **factory)
    m.conv1d = MaskedDepthwiseConv1d(conv_dim, d_conv, bias=conv_bias, mode=conv, activation="silu", impl=impl,
                                     **factory)
    device = factory.get("device")
    m.dt_bias = no_weight_decay(nn.Parameter(dt_bias_init(m.nheads, dt_min, dt_max, dt_init_floor, device=device)))
    m.D = no_weight_decay(nn.Parameter(torch.ones(m.nheads, device=device)))


class Mamba2(nn.Module):
    """Mamba-2 mixer. x (b, l, d_model), mask (b, l) bool (True = valid) -> (b, l, d_model).

    ``z, xBC, dt = in_proj(x)``; ``xBC -> SiLU(depthwise conv)``; ``x, B, C = split(xBC)``;
    ``y = ssd_scan(x, dt, A=-exp(A_log), B, C, D, dt_bias, dt_softplus=True)``; ``out_proj(norm(y, z))``.
    Heads: nheads = expand*d_model / headdim; B, C have ngroups groups of d_state.

    ``norm_before_gate`` defaults to mamba_ssm's Mamba2 (False: ``rmsnorm(y*silu(z))*w``, RMS over groups of
    d_inner/ngroups channels); True gives ``rmsnorm(y)*w*silu(z)``. Outputs at padded steps are exactly 0.
    """

    def __init__(self, d_model: int, d_state: int = 128, d_conv: int = 4, expand: int = 2, headdim: int = 64,
                 ngroups: int = 1, A_init_range=(1, 16), dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, chunk_size: int = 64, conv: str = "causal", conv_bias: bool = True,
                 bias: bool = False, norm_before_gate: bool = False, impl: str = "auto", device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        init_ssd_mixer(self, d_model, d_state, expand, headdim, ngroups, chunk_size, impl, 1, d_conv, conv,
                       conv_bias, bias, dt_min, dt_max, dt_init_floor, factory)
        lo, hi = A_init_range
        if not 0 < lo <= hi:
            raise ValueError(f"A_init_range must satisfy 0 < lo <= hi, got {A_init_range}")
        a = torch.empty(self.nheads, dtype=torch.float32, device=device).uniform_(lo, hi)
        self.A_log = no_weight_decay(nn.Parameter(torch.log(a)))
        self.norm = GatedRMSNorm(self.d_inner, eps=1e-5, norm_before_gate=norm_before_gate,
                                 group_size=self.d_inner // ngroups, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (b, l, d_model), mask (b, l) bool or None -> (b, l, d_model)."""
        gn = self.ngroups * self.d_state
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.d_inner + 2 * gn, self.nheads], dim=-1)
        xs, B, C = conv_act(self.conv1d, xbc, mask).split([self.d_inner, gn, gn], dim=-1)
        y = ssd_scan(xs.unflatten(-1, (self.nheads, self.headdim)), dt, -torch.exp(upcast(self.A_log)),
                     B.unflatten(-1, (self.ngroups, self.d_state)), C.unflatten(-1, (self.ngroups, self.d_state)),
                     D=upcast(self.D), dt_bias=upcast(self.dt_bias), dt_softplus=True, mask=mask,
                     chunk_size=self.chunk_size, impl=self.impl)                         # (b, l, h, p)
        out = self.out_proj(self.norm(y.flatten(-2), z))
        return masked_fill_pads(out, mask, 1)
