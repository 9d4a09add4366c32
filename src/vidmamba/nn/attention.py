"""Masked multi-head attention: global or local-window self-attention, and cross-attention.

Tensors are channel-last: x (b, l, d); masks (b, l) bool, True = valid. Inputs are zeroed at pads (non-finite junk
there is harmless), padded keys never receive weight, outputs at padded query positions are 0, and a query with no
valid key (e.g. an empty text) attends to nothing (zero context) instead of producing NaN.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidmamba.nn.mask import check_mask, masked_softmax
from vidmamba.ssm.layers import masked_fill_pads


def masked_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None, window_size: int = 0,
                     dropout_p: float = 0.0, training: bool = False) -> Tensor:
    """Scaled dot-product attention with a key padding mask and an optional local window.

    q (b, h, lq, dh), k and v (b, h, lk, dh), key_mask (b, lk) bool or None -> (b, h, lq, dh).
    ``window_size`` 0 = global; an odd w > 0 (needs lq == lk) lets query t see keys ``t - w//2 .. t + w//2`` and costs
    O(l w) memory instead of O(l^2).
    """
    b, _, lq, dh = q.shape
    lk = k.shape[2]
    if key_mask is None:
        key_mask = torch.ones(b, lk, dtype=torch.bool, device=q.device)
    q = q * dh ** -0.5
    if window_size:
        if window_size < 0 or window_size % 2 == 0:
            raise ValueError(f"window_size must be 0 (global) or odd, got {window_size}")
        if lq != lk:
            raise ValueError("local-window attention needs queries and keys of the same length")
        r = window_size // 2
        k_win = F.pad(k, (0, 0, r, r)).unfold(2, window_size, 1)  # (b, h, l, dh, w)
        v_win = F.pad(v, (0, 0, r, r)).unfold(2, window_size, 1)
        m_win = F.pad(key_mask, (r, r), value=False).unfold(1, window_size, 1)  # (b, l, w)
        attn = masked_softmax(torch.einsum("bhld,bhldw->bhlw", q, k_win), m_win[:, None])
        attn = F.dropout(attn, dropout_p, training)
        return torch.einsum("bhlw,bhldw->bhld", attn, v_win)
    attn = masked_softmax(q @ k.transpose(-1, -2), key_mask[:, None, None, :])
    attn = F.dropout(attn, dropout_p, training)
    return attn @ v


class MaskedMHA(nn.Module):
    """Multi-head attention with padding masks; self-attention (optionally windowed) or cross-attention.

    dim: query width; kv_dim: context width (default dim); out_dim: output width (default dim; HieraMamba's fusion
    uses 2 dim for a (scale, shift) pair); window_size: 0 global or odd local window (self-attention only).
    """

    def __init__(self, dim: int, n_heads: int = 4, window_size: int = 0, kv_dim: int | None = None,
                 out_dim: int | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} must be divisible by n_heads {n_heads}")
        if window_size < 0 or (window_size and window_size % 2 == 0):
            raise ValueError(f"window_size must be 0 (global) or odd, got {window_size}")
        kv_dim = kv_dim or dim
        self.n_heads, self.window_size, self.attn_drop = n_heads, window_size, attn_drop
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(kv_dim, dim, bias=bias)
        self.v = nn.Linear(kv_dim, dim, bias=bias)
        self.proj = nn.Linear(dim, out_dim or dim, bias=bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: Tensor) -> Tensor:
        b, l, d = x.shape
        return x.view(b, l, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        """x (b, l, dim), mask (b, l); context (b, lc, kv_dim) and context_mask (b, lc) for cross-attention
        (None: self-attention over x with ``mask``) -> (b, l, out_dim), zero at padded queries."""
        x = masked_fill_pads(x, check_mask(mask, x.shape[:2]), 1)
        if context is None:
            context, context_mask = x, mask
        elif self.window_size:
            raise ValueError("window_size applies to self-attention only")
        context = masked_fill_pads(context, check_mask(context_mask, context.shape[:2], "context_mask"), 1)
        q, k, v = self._heads(self.q(x)), self._heads(self.k(context)), self._heads(self.v(context))
        out = masked_attention(q, k, v, context_mask, self.window_size, self.attn_drop, self.training)
        out = self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
        return masked_fill_pads(out, mask, 1)


class CrossAttention(MaskedMHA):
    """Video queries attend to text keys: ``forward(x, context, mask, context_mask)``; same options as MaskedMHA
    except the window (dim: video width, kv_dim: text width)."""

    def __init__(self, dim: int, kv_dim: int | None = None, n_heads: int = 4, out_dim: int | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, bias: bool = True):
        super().__init__(dim, n_heads, 0, kv_dim, out_dim, attn_drop, proj_drop, bias)

    def forward(self, x: Tensor, context: Tensor, mask: Tensor | None = None,  # type: ignore[override]
                context_mask: Tensor | None = None) -> Tensor:
        """x (b, l, dim), context (b, lc, kv_dim), mask (b, l), context_mask (b, lc) -> (b, l, out_dim)."""
        return super().forward(x, mask, context, context_mask)
