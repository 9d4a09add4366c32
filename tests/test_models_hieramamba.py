"""HieraMamba: the video backbone (anchor pooling / interleaving, per-sample padding, pyramid shapes, windows,
gradients) and the full model (padded batch == each video alone for predictions and losses, gradients, edge cases,
registry, a tiny model overfitting a tiny batch)."""
import math
import warnings

import numpy as np
import pytest
import torch

from vidmamba.models import create_model
from vidmamba.models.hieramamba import (
    AMPBlock,
    HieraMamba,
    HieraMambaBackbone,
    HieraMambaBackboneConfig,
    HieraMambaConfig,
    interleave_anchors,
    split_anchors,
)
from vidmamba.nn import MaskedMHA, lengths_to_mask, sinusoid_encoding
from vidmamba.ssm import Hydra

TINY = dict(in_dim=6, embd_dim=32, num_blocks=3, d_state=8, headdim=16, max_seq_len=8, local_heads=2, chunk_size=4)


def with_visible_layer_scale(model):
    """Move every LayerScale off its 1e-4 init, so every branch visibly shapes the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.0)
    return model


def tiny(**overrides) -> HieraMambaBackbone:
    torch.manual_seed(0)
    return with_visible_layer_scale(HieraMambaBackbone(HieraMambaBackboneConfig(**{**TINY, **overrides})).eval())


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


# ---------------------------------------------------------------------------------------------------------------------
# the full model
# ---------------------------------------------------------------------------------------------------------------------
MODEL_TINY = dict(video_dim=6, text_dim=5, embd_dim=32, text_embd_dim=16, num_blocks=3, d_state=8, headdim=16,
                  max_seq_len=8, chunk_size=4, proj_dim=8, text_layers=1, max_text_len=6, loss_norm_init=2.0,
                  acc_neg_ratio=100.0, spc_neg_ratio=100.0)  # every negative candidate used: deterministic losses
MODES = {"early-adaln": dict(early_fusion=True), "late-affine-transformer-text": dict(
    early_fusion=False, fusion_mode="affine", text_encoder="transformer"), "twin": dict(mixer="attention")}


def tiny_model(**overrides) -> HieraMamba:
    torch.manual_seed(0)
    return with_visible_layer_scale(HieraMamba(HieraMambaConfig(**{**MODEL_TINY, **overrides})).eval())


def make_batch(lengths, queries, seed=1):
    """Videos of ``lengths`` clips (pads hold NaN), queries[b] = list of (n_tokens, (st, ed)) of video b."""
    g = torch.Generator().manual_seed(seed)
    video, vmask = padded_batch(lengths, MODEL_TINY["video_dim"], seed)
    flat = [(b, n, seg) for b, qs in enumerate(queries) for n, seg in qs]
    tlen = max(n for _, n, _ in flat)
    text = torch.randn(len(flat), tlen, MODEL_TINY["text_dim"], generator=g)
    tmask = lengths_to_mask(torch.tensor([n for _, n, _ in flat]), tlen)
    return {"video": video, "video_mask": vmask, "text": text.masked_fill(~tmask[..., None], float("nan")),
            "text_mask": tmask, "query_index": torch.tensor([b for b, _, _ in flat]),
            "segments_grid": torch.tensor([seg for _, _, seg in flat], dtype=torch.float32),
            "vid": [f"v{b}" for b in range(len(lengths))], "text_ids": [f"q{i}" for i in range(len(flat))]}


def select(batch, b):
    """Video b alone (unpadded) with its queries."""
    t = int(batch["video_mask"][b].sum())
    q = (batch["query_index"] == b).nonzero().flatten()
    n = int(batch["text_mask"][q].sum(1).max())
    return {"video": batch["video"][b:b + 1, :t], "video_mask": batch["video_mask"][b:b + 1, :t],
            "text": batch["text"][q, :n], "text_mask": batch["text_mask"][q, :n],
            "query_index": torch.zeros(len(q), dtype=torch.long), "segments_grid": batch["segments_grid"][q],
            "text_ids": [batch["text_ids"][i] for i in q.tolist()]}


# lengths: longer than max_seq_len, odd, shorter than the total stride (4 clips); several queries per video
LENGTHS = [13, 6, 3]
QUERIES = [[(4, (2.0, 7.5)), (2, (0.2, 1.6)), (6, (5.0, 12.0))], [(3, (1.0, 4.0))], [(5, (0.0, 2.0)), (1, (1.0, 2.5))]]


@pytest.mark.parametrize("mode", list(MODES))
def test_model_padded_batch_matches_each_video_alone(mode):
    """Per-query accounting: the padded batch's losses are the query-weighted mean of each video's (official: see
    test_official_accounting_sums_cls_reg_and_averages_acc_spc)."""
    model = tiny_model(**MODES[mode], loss_normalization="per_query")
    batch = make_batch(LENGTHS, QUERIES)
    with torch.no_grad():
        preds = model.detect(batch)
        losses = model(batch)
    assert len(preds) == batch["text"].shape[0]
    expected = {k: 0.0 for k in losses}
    for b in range(len(LENGTHS)):
        alone = select(batch, b)
        with torch.no_grad():
            alone_preds = model.detect(alone)
            alone_losses = model(alone)
        for i, q in enumerate((batch["query_index"] == b).nonzero().flatten().tolist()):
            assert preds[q].shape == alone_preds[i].shape and preds[q].shape[1] == 3
            torch.testing.assert_close(preds[q], alone_preds[i], atol=1e-4, rtol=1e-4)
        for k, v in alone_losses.items():
            expected[k] += float(v) * len(alone["query_index"]) / len(batch["query_index"])
    for k, v in losses.items():  # the batch loss is the mean over queries of each video's per-query losses
        assert v.dim() == 0 and math.isclose(float(v), expected[k], rel_tol=1e-4, abs_tol=1e-6), (k, float(v))
    assert all(float(losses[k]) > 0 for k in ("loss_cls", "loss_reg", "loss_acc", "loss_spc"))
    assert float(model.loss_norm()) == MODEL_TINY["loss_norm_init"]  # eval mode: the normaliser is not updated
    # official accounting: cls and reg are sums over the batch, so the padded batch gives the sum over its videos
    official = tiny_model(**MODES[mode])
    with torch.no_grad():
        total = official(batch)
        alone = [official(select(batch, b)) for b in range(len(LENGTHS))]
    for k in ("loss_cls", "loss_reg"):
        assert math.isclose(float(total[k]), sum(float(a[k]) for a in alone), rel_tol=1e-4), k


NO_DROP = dict(dropout=0.0, drop_path=0.0, fusion_dropout=0.0, fusion_drop_path=0.0, text_dropout=0.0)


def repeated(batch, videos: int, queries: int):
    """``videos`` copies of the one-video, one-query ``batch``, each with ``queries`` copies of its query."""
    return {"video": batch["video"].repeat(videos, 1, 1), "video_mask": batch["video_mask"].repeat(videos, 1),
            "text": batch["text"].repeat(videos * queries, 1, 1),
            "text_mask": batch["text_mask"].repeat(videos * queries, 1),
            "query_index": torch.arange(videos).repeat_interleave(queries),
            "segments_grid": batch["segments_grid"].repeat(videos * queries, 1)}


@pytest.mark.parametrize("mode", ["early-adaln", "late-affine-transformer-text"])
def test_official_accounting_sums_cls_reg_and_averages_acc_spc(mode):
    """Official trainer (libs/worker.py TrainerAuxiliary): cls / reg summed over the batch, ACC / SPC averaged (ACC
    times the mean queries per video with late fusion), all over the same normaliser. With k identical copies of one
    query the sums grow k-fold and the averages stay; per-query accounting keeps every term."""
    one = make_batch([13], [[(4, (2.0, 7.5))]])
    late = mode.startswith("late")
    for accounting in ("official", "per_query"):
        model = tiny_model(**MODES[mode], loss_normalization=accounting)
        with torch.no_grad():
            base = model(one)
            for videos, queries in ((1, 3), (2, 1), (2, 2)):
                out = model(repeated(one, videos, queries))
                k = videos * queries
                sums = k if accounting == "official" else 1
                acc = (queries if late else 1) if accounting == "official" else 1
                expected = {"loss_cls": sums, "loss_reg": sums, "loss_acc": acc, "loss_spc": 1}
                for name, factor in expected.items():
                    assert float(base[name]) > 0
                    assert math.isclose(float(out[name]), factor * float(base[name]), rel_tol=1e-4), \
                        (accounting, videos, queries, name)


@pytest.mark.parametrize("mode", ["early-adaln", "late-affine-transformer-text"])
def test_official_accounting_is_the_official_trainers_on_the_same_outputs(mode):
    """The official trainer's loss (``tests/oracles.py``: point labels, focal, IoU, ACC, SPC and their accounting
    rewritten from ``libs/worker.py`` and the loss modules) on the model's own encoded batch. Unpadded videos of even
    level lengths (the official ACC gap is a fraction of the padded length) and every negative drawn."""
    from oracles import official_hieramamba_losses

    model = tiny_model(**MODES[mode], reg_loss="diou" if mode.startswith("late") else "iou")
    batch = make_batch([16, 16], [[(4, (2.0, 7.5)), (2, (0.2, 1.6)), (6, (5.0, 12.0))], [(3, (1.0, 14.0))]])
    with torch.no_grad():
        enc = model.encode(batch)
        got = model.losses(enc, batch)
        expected = official_hieramamba_losses(model, enc, batch["segments_grid"], float(model.loss_norm()))
    for name, value in expected.items():
        assert value > 0 and math.isclose(float(got[name]), value, rel_tol=1e-5), (name, float(got[name]), value)


def test_official_normaliser_counts_positives_per_batch_and_lags_one_step():
    one = make_batch([13], [[(4, (2.0, 7.5))]])
    init = MODEL_TINY["loss_norm_init"]
    for accounting, factor in (("official", 3), ("per_query", 1)):
        values = []
        for batch in (one, repeated(one, 1, 3)):
            model = tiny_model(**NO_DROP, loss_normalization=accounting)
            with torch.no_grad():
                evaluated = model(batch)
                trained = model.train()(batch)
            # the training forward divides by the normaliser from before its own update (as the official trainer)
            torch.testing.assert_close(trained["loss_cls"], evaluated["loss_cls"])
            values.append(float(model.loss_norm()) - 0.9 * init)          # = 0.1 * (number of positives)
        assert values[0] >= 0.1 and math.isclose(values[1], factor * values[0], rel_tol=1e-5), accounting


def test_predictions_are_sorted_grid_segments():
    model = tiny_model()
    batch = make_batch(LENGTHS, QUERIES)
    for p in model.detect(batch):
        assert p.dtype == torch.float32 and 0 < p.shape[0] <= model.cfg.max_num_segs
        assert torch.all(p[1:, 2] <= p[:-1, 2]) and torch.all(p[:, 1] > p[:, 0])


@pytest.mark.parametrize("mode", ["early-adaln", "late-affine-transformer-text"])
def test_model_gradients_reach_every_parameter(mode):
    no_drop = dict(dropout=0.0, drop_path=0.0, fusion_dropout=0.0, fusion_drop_path=0.0, text_dropout=0.0)
    model = tiny_model(**MODES[mode], **no_drop).train()
    long_events = [(3, (0.5, 12.5)), (2, (1.0, 9.0))]  # positives (and active ReLUs) on every level
    out = model(make_batch(LENGTHS, [QUERIES[0] + long_events] + QUERIES[1:]))
    out["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert model.vid_proj is None if mode.startswith("late") else model.vid_proj is not None


def test_loss_normaliser_updates_in_training_only():
    model = tiny_model(dropout=0.0, drop_path=0.0, fusion_dropout=0.0, fusion_drop_path=0.0)
    batch = make_batch([13], [[(4, (2.0, 7.5))]])
    model.train()
    labels_before = float(model.loss_norm())
    model(batch)
    assert float(model.loss_norm()) != labels_before
    value = float(model.loss_norm())
    model.eval()
    model(batch)
    assert float(model.loss_norm()) == value


def test_nothing_left_after_nms_gives_empty_predictions():
    model = tiny_model(pre_nms_thresh=0.999)
    preds = model.detect(make_batch(LENGTHS, QUERIES))
    assert len(preds) == 6 and all(p.shape == (0, 3) for p in preds)


def test_short_video_single_clip():
    """One clip, three pyramid levels (total stride 4): levels of one step each; loss finite, predictions decoded."""
    model = tiny_model()
    batch = make_batch([1], [[(3, (0.0, 0.5))]])
    out = model(batch)
    assert all(torch.isfinite(v) for v in out.values())
    enc = model.encode(batch)
    assert [m.shape[1] for m in enc.masks] == [1, 1, 1]
    assert model.detect(batch)[0].shape[1] == 3


def test_event_without_positive_points_gives_finite_loss():
    """[2.2, 2.4] contains no grid point: no positive anywhere, so no regression or SPC term, but a finite cls loss."""
    model = tiny_model()
    with torch.no_grad():
        out = model(make_batch([9], [[(3, (2.2, 2.4))]]))
    assert float(out["loss_reg"]) == 0.0 and float(out["loss_spc"]) == 0.0
    assert torch.isfinite(out["loss"]) and float(out["loss_cls"]) > 0


def test_training_query_without_positive_points_warns():
    """One level regresses reaches below regression_range only (the official PtGenerator raises only a later last
    level to max_seq_len + 1), so a 12-step event (reach 6 or 7 at every point of its centre window) gets no positive
    point and would train as background unnoticed: training warns. A raised range, or three levels, assign it."""
    batch = make_batch([16], [[(3, (2.0, 14.0))]])
    with pytest.warns(UserWarning, match=r"no positive point.*\[0, 4\)"):
        tiny_model(num_blocks=1, **NO_DROP).train()(batch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_model(num_blocks=1, regression_range=8.0, **NO_DROP).train()(batch)
        tiny_model(**NO_DROP).train()(batch)


def test_long_query_is_truncated_with_warning():
    model = tiny_model()
    long = make_batch([9], [[(9, (1.0, 4.0))]])                    # 9 tokens > max_text_len 6
    short = dict(long, text=long["text"][:, :6], text_mask=long["text_mask"][:, :6])
    with pytest.warns(UserWarning, match=r"q0.*max_text_len = 6"):
        got = model.detect(long)
    torch.testing.assert_close(got[0], model.detect(short)[0])


def test_zero_length_ground_truth_is_an_error_naming_it():
    model = tiny_model()
    batch = make_batch([9, 5], [[(3, (1.0, 4.0))], [(2, (2.0, 2.0))]])
    with pytest.raises(ValueError, match=r"q1 \[2\.0, 2\.0\]"):
        model(batch)
    del batch["segments_grid"]
    with pytest.raises(KeyError, match="segments_grid"):
        model(batch)


def test_bad_inputs_are_named():
    model = tiny_model()
    batch = make_batch([9, 5], [[(3, (1.0, 4.0))], [(2, (1.0, 2.0))]])
    with pytest.raises(ValueError, match=r"\(B, T, 6\)"):
        model.detect(dict(batch, video=batch["video"][..., :4]))
    empty = batch["text_mask"].clone()
    empty[1] = False
    with pytest.raises(ValueError, match="q1"):
        model.detect(dict(batch, text_mask=empty))
    vmask = batch["video_mask"].clone()
    vmask[1] = False
    with pytest.raises(ValueError, match="v1"):
        model.detect(dict(batch, video_mask=vmask))


def test_registry_presets_and_twin():
    model = create_model("hieramamba", **MODEL_TINY)
    twin = create_model("hieramamba-transformer", **MODEL_TINY)
    assert all(isinstance(b.mixer, Hydra) for b in model.backbone.blocks)
    assert all(isinstance(b.mixer, MaskedMHA) for b in twin.backbone.blocks)
    assert (len(twin.backbone.blocks), twin.cfg.embd_dim) == (len(model.backbone.blocks), model.cfg.embd_dim)
    with pytest.raises(ValueError, match="conflicts"):
        create_model("hieramamba-transformer", mixer="hydra", **MODEL_TINY)
    with pytest.raises(TypeError, match="unknown key"):
        create_model("hieramamba", bogus=1)
    with pytest.raises(ValueError, match="in_dim is derived"):
        HieraMambaConfig(in_dim=7)
    cfg = HieraMambaConfig(**MODEL_TINY)
    assert HieraMambaConfig.from_dict(cfg.to_dict()) == cfg
    assert HieraMamba(cfg, embd_dim=48).backbone.cfg.in_dim == 48                      # early fusion: in_dim = embd_dim
    assert HieraMamba(cfg, early_fusion=False).backbone.cfg.in_dim == MODEL_TINY["video_dim"]
    tacos = HieraMambaConfig.preset("tacos")
    assert (tacos.video_dim, tacos.text_dim, tacos.text_embd_dim, tacos.text_encoder, tacos.early_fusion,
            tacos.fusion_mode, tacos.in_dim, tacos.embd_dim, tacos.reg_loss, tacos.w_acc, tacos.acc_neg_ratio,
            tacos.acc_gap_ratio, tacos.w_spc) == (4096, 300, 128, "transformer", False, "affine", 4096, 256, "diou",
                                                   10.0, 4.0, 0.3, 1.0)
    mad = HieraMambaConfig.preset("mad", num_blocks=4)
    assert (mad.in_dim, mad.stride, mad.num_blocks, mad.w_acc, mad.w_spc, mad.pre_nms_topk, mad.max_num_segs,
            mad.max_text_len) == (512, 2, 4, 0.0, 0.0, 200, 50, 75)
    assert (HieraMambaConfig().loss_norm_init, mad.loss_norm_init, tacos.loss_norm_init) == (10.0, 250.0, 100.0)
    assert HieraMambaConfig().loss_normalization == "official"
    with pytest.raises(ValueError, match="loss_normalization must be one of"):
        HieraMambaConfig(loss_normalization="mean")
    ego = HieraMambaConfig()
    assert (ego.video_dim, ego.text_dim, ego.embd_dim, ego.reg_loss, ego.w_acc, ego.w_spc, ego.max_text_len,
            ego.nms_sigma, ego.voting_thresh, ego.max_num_segs) == (256, 768, 384, "iou", 100.0, 10.0, 24, 0.9, 0.95, 5)
    m = create_model("hieramamba", preset="mad", **{**MODEL_TINY, "w_acc": 0.0, "w_spc": 0.0})
    assert m.acc_proj is None and m.spc_proj is None and m.backbone.cfg.stride == 2


@pytest.mark.slow
def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    model = HieraMamba(HieraMambaConfig(**{**MODEL_TINY, "num_blocks": 2, "dropout": 0.0, "drop_path": 0.0,
                                           "fusion_dropout": 0.0, "fusion_drop_path": 0.0, "w_acc": 1.0,
                                           "w_spc": 1.0})).train()
    batch = make_batch([16, 10], [[(4, (2.0, 7.5)), (3, (9.0, 14.0))], [(5, (4.0, 8.0))]])
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(30):
        out = model(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    last = model(batch)["loss"].item()
    assert last < 0.2 * losses[0], losses + [last]
    model.eval()
    for p, gt in zip(model.detect(batch), batch["segments_grid"]):  # the top detection now hits the ground truth
        top = p[0, :2]
        inter = (torch.minimum(top[1], gt[1]) - torch.maximum(top[0], gt[0])).clamp(min=0)
        assert inter / ((top[1] - top[0]) + (gt[1] - gt[0]) - inter) > 0.5, (p[0], gt)


def test_position_table_is_interpolated_with_align_corners_true():
    """Past max_seq_len the table is resampled as the official backbone (F.interpolate, linear, align_corners=True):
    output step i reads the table at x = i (L - 1) / (n - 1), so both ends are the table's ends."""
    model = tiny()
    L, n, d = TINY["max_seq_len"], 13, TINY["embd_dim"]
    table = sinusoid_encoding(L, d) / math.sqrt(d)
    got = model.position_encoding(torch.zeros(1, n, d), torch.tensor([n]))[0]
    for i in range(n):
        x = i * (L - 1) / (n - 1)
        lo = min(int(math.floor(x)), L - 2)
        w = x - lo
        torch.testing.assert_close(got[i], (1 - w) * table[lo] + w * table[lo + 1], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[-1], table[-1], atol=1e-6, rtol=1e-5)     # align_corners=False would not hit it
    short = model.position_encoding(torch.zeros(1, 5, d), torch.tensor([5]))[0]
    torch.testing.assert_close(short, table[:5])                           # within the table: no resampling


@pytest.mark.parametrize("decay", [True, False])
def test_hydra_a_log_and_d_take_weight_decay_as_the_official_optimiser(decay):
    from vidmamba.engine.optim import param_groups

    model = HieraMamba(HieraMambaConfig(**MODEL_TINY, hydra_weight_decay=decay))
    groups = {g["group"]: {id(p) for p in g["params"]} for g in param_groups(model, 0.05)}
    names = {id(p): n for n, p in model.named_parameters()}
    hydra = [n for n, p in model.named_parameters() if n.endswith(("mixer.A_log", "mixer.D"))]
    assert len(hydra) == 2 * MODEL_TINY["num_blocks"]
    decayed = {names[i] for i in groups["decay"]}
    assert all((n in decayed) == decay for n in hydra)
    # the official rules otherwise: biases (dt_bias too), norms and LayerScales are not decayed; Linear weights are
    assert not any(n.endswith(("dt_bias", "bias", "gamma")) or ".norm" in n for n in decayed)
    assert "backbone.blocks.0.mixer.in_proj.weight" in decayed and "backbone.blocks.0.mixer.fc_D.weight" in decayed


@pytest.mark.parametrize("train_projectors", [True, False])
def test_projectors_are_optimised_only_when_asked(train_projectors):
    """train_projectors=False is the official trainer: its optimiser is built before the ACC / SPC loss modules create
    their projectors, so they keep their initial weights while everything else learns."""
    from vidmamba.engine.optim import build_optimizer

    model = tiny_model(**NO_DROP, train_projectors=train_projectors).train()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.05)
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    projectors = {n: p.detach().clone() for n, p in params.items() if n.startswith(("acc_proj", "spc_proj"))}
    assert len(projectors) == 2 * 5                          # per projector: Linear w, LayerNorm w + b, Linear w + b
    backbone = {n: p.detach().clone() for n, p in params.items() if n.startswith("backbone.embd_fc")}
    model(make_batch(LENGTHS, QUERIES))["loss"].backward()
    optimizer.step()
    for name, before in projectors.items():
        assert (id(params[name]) in in_optimizer) == train_projectors, name
        assert (not torch.equal(params[name].detach(), before)) == train_projectors, name
    assert backbone and all(not torch.equal(params[n].detach(), before) for n, before in backbone.items())


def test_predict_answers_the_grounding_contract_in_seconds():
    """``predict``: each query's detections (``detect``, grid units) mapped to ``g * clip_length + clip_offset``
    seconds of its own video and clamped to its duration; saliency = the finest level's foreground probability per
    valid grid step."""
    model = tiny_model()
    batch = make_batch(LENGTHS, QUERIES)
    n_videos = batch["video"].shape[0]
    timing = {"clip_length": [2.0 + v for v in range(n_videos)], "clip_offset": [0.5] * n_videos,
              "duration": [float(n) for n in LENGTHS]}
    rows, grid = model.predict({**batch, **timing}), model.detect(batch)
    enc = model.encode(batch)
    for q, (row, det) in enumerate(zip(rows, grid)):
        v = int(batch["query_index"][q])
        expected = [[min(max(s * timing["clip_length"][v] + 0.5, 0.0), timing["duration"][v]),
                     min(max(e * timing["clip_length"][v] + 0.5, 0.0), timing["duration"][v]), c]
                    for s, e, c in det.tolist()]
        np.testing.assert_allclose(row["pred_relevant_windows"], expected, rtol=1e-6, atol=1e-6)
        valid = int(enc.masks[0][q].sum())
        np.testing.assert_allclose(row["pred_saliency_scores"],
                                   torch.sigmoid(enc.logits[0][q, :valid]).tolist(), rtol=1e-5, atol=1e-6)
    # without timing keys the contract is in grid units (a window still cannot start before the video)
    plain = grid[0].clone()
    plain[:, :2] = plain[:, :2].clamp(min=0)
    np.testing.assert_allclose(model.predict(batch)[0]["pred_relevant_windows"], plain.tolist(), rtol=1e-6)
