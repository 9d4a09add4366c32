"""Gated bidirectional Mamba-1 mixer of MLVTG's MambaAligner (arXiv 2506.08512).

The paper describes ``x, g = split(Linear(LN(Z)))``; ``x -> 1D conv -> forward SSM y_f and backward SSM y_b``;
``y = sigmoid(g) * y_f + (1 - sigmoid(g)) * y_b``; output projection and residual. No code is public. Choices made
here where the paper is silent:

- Per-direction parameters as Vim "v2": each direction has its own depthwise conv, x_proj, dt_proj, A_log and D
  (names ``conv1d, x_proj, dt_proj, A_log, D`` and ``conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b``); ``in_proj`` and
  ``out_proj`` are shared.
- Each direction's conv is causal in its own direction (the backward one, ``conv1d_b``, is "anticausal": it looks at
  the current and next steps, weight[-1] on the current one, i.e. a causal conv on the reversed sequence), followed by
  SiLU, as in Mamba/Vim.
- Each branch output is ``C.h + D*x`` (Mamba's skip term kept); the branches are not gated by ``silu(z)``: the
  ``sigmoid(g)`` blend replaces Vim's ``silu(z)`` gate.
- Defaults d_state=16, d_conv=4, expand=2, dt_rank=ceil(d_model/16) and the dt/A initialisation are Mamba-1's.
- The block's LayerNorm and residual belong to the model, not to this mixer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from vidmamba.ssm.layers import masked_fill_pads, no_weight_decay, s4d_real_a_log
from vidmamba.ssm.mamba1 import make_selective_branch, resolve_dt_rank, selective_branch


class BiMambaGated(nn.Module):
    """MLVTG's gated bidirectional Mamba mixer. x (b, l, d_model), mask (b, l) bool -> (b, l, d_model).

    ``x, g = in_proj(x)`` (each d_inner); ``y_f`` = forward Mamba-1 scan path on x; ``y_b`` = the backward path
    (own parameters) on each sample reversed within its valid length, reversed back;
    ``out = out_proj(sigmoid(g) * y_f + (1 - sigmoid(g)) * y_b)``, exactly 0 at padded steps.
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2, dt_rank="auto",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init: str = "random", dt_scale: float = 1.0,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False, impl: str = "auto",
                 device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = expand * d_model
        self.dt_rank = resolve_dt_rank(dt_rank, d_model)
        self.impl = impl
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias, **factory)
        branch_args = (self.d_inner, d_state, d_conv, self.dt_rank, conv_bias)
        init_args = (dt_init, dt_scale, dt_min, dt_max, dt_init_floor, factory, impl)
        self.conv1d, self.x_proj, self.dt_proj, self.D = make_selective_branch(*branch_args, "causal", *init_args)
        self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.D_b = make_selective_branch(*branch_args, "anticausal",
                                                                                      *init_args)
        self.A_log = no_weight_decay(nn.Parameter(s4d_real_a_log(self.d_inner, d_state, device=device)))
        self.A_b_log = no_weight_decay(nn.Parameter(s4d_real_a_log(self.d_inner, d_state, device=device)))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def branch(self, xs: torch.Tensor, mask: torch.Tensor | None, backward: bool) -> torch.Tensor:
        """One direction. xs (b, d_inner, l) pre-conv -> y (b, d_inner, l), zero at pads.

        The backward direction is the forward path on each sample reversed within its valid length, computed without
        reversed copies: an anticausal conv and a scan from the last valid step down (pads are zeroed conv inputs and
        identity scan steps, so a short sample's backward scan starts at its own last step)."""
        parts = ((self.conv1d_b, self.x_proj_b, self.dt_proj_b, self.A_b_log, self.D_b) if backward else
                 (self.conv1d, self.x_proj, self.dt_proj, self.A_log, self.D))
        return selective_branch(xs, mask, *parts, impl=self.impl, reverse=backward)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (b, l, d_model), mask (b, l) bool or None -> (b, l, d_model)."""
        xs, g = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)                         # (b, d_inner, l) each
        y_f, y_b = self.branch(xs, mask, backward=False), self.branch(xs, mask, backward=True)
        if torch.is_grad_enabled():
            y = torch.lerp(y_b, y_f, torch.sigmoid(g))               # sigmoid(g) * y_f + (1 - sigmoid(g)) * y_b
        else:   # inference: in y_b's and g's memory (g is in_proj's output), not two new (b, d_inner, l) tensors
            y = y_b.lerp_(y_f, g.sigmoid_())
        return masked_fill_pads(self.out_proj(y.transpose(1, 2)), mask, 1)
