"""Padding-mask helpers. Masks are bool with True = valid, shaped like the leading dims of the tensor they mask.
(:func:`masked_fill_pads` lives in the SSM core, below this package, and is re-exported here.)"""
from __future__ import annotations

import torch
from torch import Tensor

from vidmamba.ssm.layers import masked_fill_pads  # noqa: F401  (re-exported)


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """(b,) valid lengths -> (b, max_len) bool mask, True at positions ``< length``."""
    if max_len is None:
        max_len = int(lengths.max()) if lengths.numel() else 0
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def check_mask(mask: Tensor | None, shape: tuple, name: str = "mask") -> Tensor | None:
    """Validate an optional padding mask: bool with the given shape (e.g. (b, l)). Returns it unchanged."""
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = valid), got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    return mask


def batch_mask(batch: dict, key: str, x: Tensor) -> Tensor:
    """The validated ``<key>_mask`` of a batch for ``x`` (b, l, ...): (b, l) bool, all True when the batch has none."""
    mask = batch.get(f"{key}_mask")
    if mask is None:
        return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    return check_mask(mask.to(x.device), x.shape[:2], f"{key}_mask")


def finite_at_valid(x: Tensor, mask: Tensor, chunk: int = 4096) -> bool:
    """True when every value of ``x`` (b, l, ...) at the valid steps of ``mask`` (b, l) is finite. Reads ``chunk``
    steps at a time, so a long input is never copied whole (``x[mask]`` would copy it)."""
    for i in range(0, x.shape[1], chunk):
        bad = ~torch.isfinite(x[:, i:i + chunk]).flatten(2).all(-1)              # (b, chunk): a non-finite value
        if bool((bad & mask[:, i:i + chunk]).any()):
            return False
    return True


def masked_fill_min(scores: Tensor, valid: Tensor) -> Tensor:
    """Replace invalid entries of ``scores`` with the dtype's most negative finite value (softmax-safe, no NaN)."""
    return scores.masked_fill(~valid, torch.finfo(scores.dtype).min)


def masked_softmax(scores: Tensor, valid: Tensor, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` restricted to ``valid`` entries (broadcastable bool).

    Invalid entries get exactly 0; a slice with no valid entry is all zeros (not NaN), and its gradient is 0.
    """
    valid = valid.expand_as(scores)
    probs = torch.softmax(masked_fill_min(scores, valid), dim=dim)
    return probs * valid


def masked_mean(x: Tensor, mask: Tensor | None, dim: int = 1) -> Tensor:
    """Mean of ``x`` (b, l, ...) over ``dim`` counting only valid positions of ``mask`` (b, l).

    Rows with no valid position give 0; pads may hold any value (even NaN). With ``mask=None``: the plain mean.
    """
    if mask is None:
        return x.mean(dim)
    m = mask.reshape(mask.shape + (1,) * (x.dim() - mask.dim()))
    return x.masked_fill(~m, 0).sum(dim) / m.sum(dim).clamp(min=1).to(x.dtype)
