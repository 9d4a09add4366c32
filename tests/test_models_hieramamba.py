"""HieraMamba video backbone: anchor pooling / interleaving, per-sample padding, pyramid shapes, windows, gradients."""
import math

import pytest
import torch

from vidmamba.models.hieramamba import (
    AMPBlock,
    HieraMambaBackbone,
    HieraMambaBackboneConfig,
    interleave_anchors,
    split_anchors,
)
from vidmamba.nn import MaskedMHA, lengths_to_mask
from vidmamba.ssm import Hydra

TINY = dict(in_dim=6, embd_dim=32, num_blocks=3, d_state=8, headdim=16, max_seq_len=8, local_heads=2, chunk_size=4)


def tiny(**overrides) -> HieraMambaBackbone:
    torch.manual_seed(0)
    model = HieraMambaBackbone(HieraMambaBackboneConfig(**{**TINY, **overrides})).eval()
    with torch.no_grad():  # move LayerScale off its 1e-4 init so every branch visibly shapes the outputs
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.0)
    return model


def padded_batch(lengths, dim, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    mask = lengths_to_mask(torch.tensor(lengths))
    return x.masked_fill(~mask[..., None], float("nan")), mask


def test_interleave_matches_loop():
    lengths, d = [7, 4, 1, 6], 3
    x, mask = padded_batch(lengths, d)
    for stride in (2, 3):
        x_c, mask_c, anchor_mask = interleave_anchors(x, mask, stride)
        n = math.ceil(x.shape[1] / stride)
        assert x_c.shape == (len(lengths), n * (stride + 1), d)
        for b, t_valid in enumerate(lengths):
            for w in range(n):
                clips = [t for t in range(w * stride, (w + 1) * stride)]
                valid = [t for t in clips if t < t_valid]
                a = w * (stride + 1)
                assert bool(anchor_mask[b, w]) == bool(valid) == bool(mask_c[b, a])
                expected = torch.stack([x[b, t] for t in valid]).mean(0) if valid else torch.zeros(d)
                torch.testing.assert_close(x_c[b, a], expected)
                for j, t in enumerate(clips):
                    ok = t < t_valid
                    assert bool(mask_c[b, a + 1 + j]) == ok
                    torch.testing.assert_close(x_c[b, a + 1 + j], x[b, t] if ok else torch.zeros(d))
            # the interleaved mask stays a valid prefix: T clips + ceil(T / s) anchors
            n_valid = t_valid + math.ceil(t_valid / stride)
            assert mask_c[b].tolist() == [i < n_valid for i in range(mask_c.shape[1])]
        assert torch.isfinite(x_c).all()


def test_split_inverts_interleave():
    x, mask = padded_batch([5, 2], 4)
    x_c, _, _ = interleave_anchors(x, mask, 2)
    anchors, clips = split_anchors(x_c, x.shape[1], 2)
    torch.testing.assert_close(clips, x.masked_fill(~mask[..., None], 0))
    torch.testing.assert_close(anchors, x_c[:, 0::3])


@pytest.mark.parametrize("overrides", [{}, {"mixer": "attention"}, {"stride": 2}],
                         ids=["hydra", "attention-twin", "input-stride-2"])
def test_padded_batch_matches_each_video_alone(overrides):
    # ragged lengths: longer than max_seq_len (interpolated PE), odd, shorter than the total stride (4), a single clip
    lengths = [13, 8, 5, 3, 1]
    model = tiny(**overrides)
    stride = model.cfg.stride
    x, mask = padded_batch(lengths, TINY["in_dim"])
    with torch.no_grad():
        out = model.encode(x, mask)
    assert len(out.feats) == len(out.masks) == TINY["num_blocks"]
    for level, (feat, m) in enumerate(zip(out.feats, out.masks)):
        n_level = [math.ceil(t / stride / 2 ** level) for t in lengths]
        assert m.tolist() == lengths_to_mask(torch.tensor(n_level), m.shape[1]).tolist()
        assert feat.shape == (len(lengths), math.ceil(x.shape[1] / stride / 2 ** level), TINY["embd_dim"])
        assert torch.isfinite(feat).all()
        assert (feat[~m] == 0).all()
        n_anchor = [math.ceil(t / 2) for t in n_level]
        n_pad = math.ceil(m.shape[1] / 2)
        assert out.anchor_masks[level].tolist() == lengths_to_mask(torch.tensor(n_anchor), n_pad).tolist()
    for b, t in enumerate(lengths):
        with torch.no_grad():
            alone = model.encode(x[b:b + 1, :t], None)
        for level in range(TINY["num_blocks"]):
            n = math.ceil(t / stride / 2 ** level)
            assert alone.feats[level].shape[1] == n
            torch.testing.assert_close(out.feats[level][b, :n], alone.feats[level][0], atol=2e-5, rtol=1e-4)
            na = math.ceil(n / 2)
            torch.testing.assert_close(out.anchors[level][b, :na], alone.anchors[level][0], atol=2e-5, rtol=1e-4)


def test_pads_do_not_change_outputs():
    """Junk of any value at padded inputs gives bit-identical outputs (finite junk vs NaN vs zeros)."""
    model = tiny()
    x, mask = padded_batch([9, 4], TINY["in_dim"])
    with torch.no_grad():
        ref = model(x.nan_to_num(0.0), mask)[0]
        for junk in (float("nan"), float("inf"), 1e6):
            out = model(x.masked_fill(~mask[..., None], junk), mask)[0]
            for a, b in zip(ref, out):
                assert torch.equal(a, b)


def test_block_anchor_is_mean_of_valid_clips_at_input():
    """Inside a block the mixer sees the window means of the block input, placed before their clips."""
    model = tiny()
    block = model.blocks[0]
    seen = {}
    handle = block.norm_global.register_forward_hook(lambda mod, args, out: seen.setdefault("x_c", args[0]))
    x, mask = padded_batch([7, 2], TINY["embd_dim"])
    with torch.no_grad():
        block(x, mask)
    handle.remove()
    x_c = seen["x_c"]
    torch.testing.assert_close(x_c[0, [0, 3, 6, 9]], torch.stack([x[0, 0:2].mean(0), x[0, 2:4].mean(0),
                                                                  x[0, 4:6].mean(0), x[0, 6]]))
    torch.testing.assert_close(x_c[1, 0], x[1, :2].mean(0))
    assert (x_c[1, 3:] == 0).all()


def test_window_attention_only_in_first_five_blocks():
    model = tiny(num_blocks=7)
    assert [blk.window_size for blk in model.blocks] == [5] * 5 + [0] * 2
    assert [blk.local.attn.window_size for blk in model.blocks] == [5] * 5 + [0] * 2
    # behaviour: q/k/v conv (k3) + window 5 reach 3 steps; a change 4 steps away is invisible only in windowed blocks
    x = torch.randn(1, 12, TINY["embd_dim"])
    mask = torch.ones(1, 12, dtype=torch.bool)
    x2 = x.clone()
    x2[0, 8] += 1.0
    with torch.no_grad():
        for i, blk in enumerate(model.blocks):
            d = (blk.local.attn(x, mask) - blk.local.attn(x2, mask))[0, :5].abs().amax()
            assert (d == 0) if i < 5 else (d > 0), (i, d)


def test_gradients_reach_all_parameters():
    model = tiny()
    x, mask = padded_batch([11, 6, 2], TINY["in_dim"])
    x.requires_grad_(True)
    feats, _ = model(x, mask)
    torch.manual_seed(3)
    loss = sum((f * torch.randn_like(f)).sum() for f in feats)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and (x.grad[~mask] == 0).all()


def test_mixer_switch_and_presets():
    hydra, twin = tiny(), tiny(mixer="attention")
    assert all(isinstance(b.mixer, Hydra) for b in hydra.blocks)
    assert all(isinstance(b.mixer, MaskedMHA) and b.mixer.window_size == 0 for b in twin.blocks)
    assert twin.blocks[0].mixer.q.in_features == twin.blocks[0].mixer.proj.out_features == TINY["embd_dim"]
    assert all(isinstance(b, AMPBlock) for b in twin.blocks)
    with pytest.raises(ValueError):
        HieraMambaBackboneConfig(mixer="rnn")
    with pytest.raises(ValueError):
        HieraMambaBackboneConfig(local_window=4)
    ego = HieraMambaBackboneConfig()
    assert (ego.embd_dim, ego.num_blocks, ego.stride, ego.max_seq_len, ego.d_state, ego.d_conv, ego.headdim) == \
        (384, 8, 1, 2304, 64, 7, 64)
    assert (ego.local_window, ego.local_window_blocks, ego.local_heads, ego.dropout, ego.drop_path) == \
        (5, 5, 2, 0.1, 0.1)
    mad = HieraMambaBackboneConfig.preset("mad")
    assert (mad.embd_dim, mad.num_blocks, mad.stride, mad.max_seq_len) == (512, 9, 2, 4096)
    assert HieraMambaBackboneConfig.preset("tacos").in_dim == 4096
    assert not HieraMambaBackboneConfig.preset("madv2").use_abs_pe


def test_rejects_non_prefix_mask():
    model = tiny()
    x = torch.randn(1, 4, TINY["in_dim"])
    with pytest.raises(ValueError):
        model(x, torch.tensor([[True, False, True, False]]))
