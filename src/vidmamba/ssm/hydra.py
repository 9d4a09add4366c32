"""Hydra: bidirectional quasiseparable mixer on the SSD scan (Hwang et al., arXiv 2407.09941), with padding masks.

Follows ``goombalab/hydra`` (``hydra/modules/hydra.py``); parameter names match it (in_proj, conv1d, dt_bias, A_log, D, fc_D,
norm, out_proj). Per head, the mixer applies the L x L quasiseparable matrix

    M[i, j] = C_f[i-1] . B_f[j] * exp(A * sum_{r=j+1}^{i-1} dt_f[r]) * dt_f[j]    for j < i  (forward SSM, shifted)
    M[i, j] = C_b[i+1] . B_b[j] * exp(A * sum_{r=i+1}^{j-1} dt_b[r]) * dt_b[j]    for j > i  (backward SSM, shifted)
    M[i, i] = fc_D(x_i)[head] + D[head]

to the conv output x, then ``out_proj(rmsnorm(y) * w * silu(z))``. Unlike the official code, padded steps are
masked (zero conv input, dt = 0, y = 0 before the shift), so a padded batch matches each sample run alone.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidmamba.ssm.layers import GatedRMSNorm, masked_fill_pads, no_weight_decay, upcast
from vidmamba.ssm.mamba2 import conv_act, init_ssd_mixer
from vidmamba.ssm.ssd import ssd_scan


def shift1(y: torch.Tensor) -> torch.Tensor:
    """Shift right by one step along dim 1, zero at the first position: (b, l, ...) -> (b, l, ...)."""
    return F.pad(y[:, :-1], (0, 0) * (y.dim() - 2) + (1, 0))


class Hydra(nn.Module):
    """Hydra mixer. x (b, l, d_model), mask (b, l) bool (True = valid) -> (b, l, d_model).

    ``in_proj -> [z (d_inner) | xBC (d_inner + 4*ngroups*d_state) | dt (2*nheads)]``; non-causal depthwise conv
    (k=d_conv, "same") + SiLU over xBC; x shared by both directions; xBC = [x | B_f | C_f | B_b | C_b];
    dt = [dt_f | dt_b] with one dt_bias per head shared by both; A = -exp(A_log), one scalar per head shared by both
    (init A = -1). Both directions run in one ``ssd_scan`` call stacked on the batch axis (the backward half
    time-reversed within each valid length), D=None; then
    ``y = shift1(y_f) + flip(shift1(y_b)) + x * (fc_D(x) + D)`` and ``out_proj(GatedRMSNorm(y, z))``.
    Outputs at padded steps are exactly 0.
    """

    def __init__(self, d_model: int, d_state: int = 64, d_conv: int = 7, expand: int = 2, headdim: int = 64,
                 ngroups: int = 1, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4,
                 chunk_size: int = 64, conv_bias: bool = True, bias: bool = False, impl: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        init_ssd_mixer(self, d_model, d_state, expand, headdim, ngroups, chunk_size, impl, 2, d_conv, "same",
                       conv_bias, bias, dt_min, dt_max, dt_init_floor, factory)
        self.A_log = no_weight_decay(nn.Parameter(torch.zeros(self.nheads, device=device)))
        self.fc_D = nn.Linear(self.d_inner, self.nheads, bias=False, **factory)
        self.norm = GatedRMSNorm(self.d_inner, eps=1e-5, norm_before_gate=True, **factory)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (b, l, d_model), mask (b, l) bool or None -> (b, l, d_model)."""
        batch = x.shape[0]
        gn = self.ngroups * self.d_state
        z, xbc, dt = self.in_proj(x).split([self.d_inner, self.d_inner + 4 * gn, 2 * self.nheads], dim=-1)
        xs, bc_f, bc_b = conv_act(self.conv1d, xbc, mask).split([self.d_inner, 2 * gn, 2 * gn], dim=-1)
        dt_f, dt_b = dt.split([self.nheads, self.nheads], dim=-1)
        # Flipping the whole right-padded tensor reverses each sample within its valid length (leading pads are
        # identity steps with zero output).
        mask2 = None if mask is None else torch.cat([mask, mask.flip(1)])
        B, C = torch.cat([bc_f, bc_b.flip(1)]).unflatten(-1, (2, self.ngroups, self.d_state)).unbind(2)
        y = ssd_scan(torch.cat([xs, xs.flip(1)]).unflatten(-1, (self.nheads, self.headdim)),
                     torch.cat([dt_f, dt_b.flip(1)]), -torch.exp(upcast(self.A_log)), B, C, D=None,
                     dt_bias=upcast(self.dt_bias), dt_softplus=True, mask=mask2, chunk_size=self.chunk_size,
                     impl=self.impl)                                                    # (2b, l, h, p)
        y = shift1(masked_fill_pads(y, mask2, 1))
        diag = F.linear(xs, self.fc_D.weight, self.D.to(xs.dtype))                      # (b, l, h)
        y = (y[:batch] + y[batch:].flip(1)).flatten(-2) + xs * diag.repeat_interleave(self.headdim, dim=-1)
        return masked_fill_pads(self.out_proj(self.norm(y, z)), mask, 1)
