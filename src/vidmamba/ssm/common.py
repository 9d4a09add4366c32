"""Small helpers shared by the scan implementations."""
from __future__ import annotations

import torch

IMPLS = ("auto", "ref", "fast")


def check_impl(impl: str, impls=IMPLS) -> str:
    """Validate ``impl`` against ``impls``; returns it unchanged (each scan resolves "auto" itself)."""
    if impl not in impls:
        raise ValueError(f"impl must be one of {impls}, got {impl!r}")
    return impl


def backward_can_follow(*tensors) -> bool:
    """Whether a backward can reach any of ``tensors`` (None entries skipped): grad mode is on and one requires grad.
    A scan's autograd Function takes this as an argument: inside its ``forward`` grad mode is off, and
    ``ctx.needs_input_grad`` is True for inputs that require grad even under ``torch.no_grad``."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def flip_time(tensors, dims):
    """Flip each tensor along its time dim (None entries pass through).

    Flipping the whole padded sequence is a per-sample reversal within each valid length: padded steps are identity
    steps of the scan (delta = 0) with zero output, so leading pads carry the zero state into the first valid step.
    """
    return [None if t is None else t.flip(dim) for t, dim in zip(tensors, dims)]


def expand_groups(M, d):
    """B or C of shape (b, n, l) or (b, g, n, l) -> (b, d, n, l), each group serving d // g channels.

    A view (no copy) when there is a single group."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    b, g = M.shape[:2]
    if d % g:
        raise ValueError(f"number of groups {g} must divide the number of channels {d}")
    return M.unsqueeze(2).expand(b, g, d // g, *M.shape[2:]).reshape(b, d, *M.shape[2:])
