"""MLVTGConfig.w_sal_reg: the per-video standardised regression target of the highlight score (post_saliency)."""
import torch

from vidmamba.models import create_model
from vidmamba.models.mlvtg import saliency_regression_loss


def test_regression_loss_is_zero_at_the_standardised_target_and_ignores_pads():
    target = torch.tensor([[1.0, 2.0, 3.0, 9.0], [5.0, 5.0, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    z = torch.tensor([[-1.0, 0.0, 1.0, 123.0], [0.0, 0.0, 0.0, 0.0]]) * torch.tensor(1.5).sqrt()
    assert saliency_regression_loss(z, target, mask).item() < 1e-10      # constant video 2 does not count
    scores = torch.zeros(2, 4, requires_grad=True)
    loss = saliency_regression_loss(scores, target, mask)
    assert abs(loss.item() - 1.0) < 1e-6                                 # mean of z^2 over a video = 1
    loss.backward()
    assert scores.grad[0, 3] == 0 and bool((scores.grad[1] == 0).all())
    flat = saliency_regression_loss(scores, target[1:].expand(2, 4), mask)
    assert flat.item() == 0.0 and flat.requires_grad


def _batch(t=12):
    g = torch.Generator().manual_seed(0)
    return {"video": torch.randn(1, t, 16, generator=g), "text": torch.randn(1, 3, 8, generator=g),
            "saliency": torch.rand(1, t, generator=g) * 4 + 1, "clip_length": [2.0], "duration": [2.0 * t]}


def test_post_saliency_head_is_trained_by_the_regression_target():
    """Without a graded loss the post head gets no gradient (InfoNCE scores the pre-aligner clips); w_sal_reg trains
    it, and the loss appears as loss_sal_reg."""
    cfg = dict(video_dim=16, text_dim=8, hidden_dim=16, num_layers=1, post_saliency=True)
    for w, trained in ((0.0, False), (1.0, True)):
        torch.manual_seed(0)
        model = create_model("mlvtg", **cfg, w_sal_reg=w)
        out = model(_batch())
        assert ("loss_sal_reg" in out) == trained
        out["loss"].backward()
        grads = [p.grad for p in model.post_saliency_head.parameters()]
        assert any(g is not None and bool(g.abs().sum() > 0) for g in grads) == trained
