"""Masked pooling over the sequence dim: attentive (weighted) pooling."""
from __future__ import annotations

from torch import Tensor, nn

from vidmamba.nn.mask import check_mask, masked_softmax
from vidmamba.ssm.layers import masked_fill_pads


class WeightedPool(nn.Module):
    """Attentive pooling (UniVTG WeightedPool, MLVTG HD branch): ``S = softmax_t(w . x_t) x`` over valid tokens.

    forward(x (b, l, d), mask (b, l) or None) -> (b, d); a row with no valid token pools to 0.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1, bias=False)  # a bias would cancel in the softmax
        nn.init.trunc_normal_(self.score.weight, std=0.02)

    def weights(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Pooling weights (b, l): softmax of the learned score over valid tokens, 0 at pads."""
        check_mask(mask, x.shape[:2])
        s = self.score(x).squeeze(-1)
        return s.softmax(-1) if mask is None else masked_softmax(s, mask)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = masked_fill_pads(x, check_mask(mask, x.shape[:2]), 1)
        return (self.weights(x, mask).unsqueeze(-1) * x).sum(1)
