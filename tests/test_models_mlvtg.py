"""MLVTG and its baselines (transformer twin, per-clip), the registry, and the LLMRefiner (needs the [llm] extra)."""
from __future__ import annotations

import math

import pytest
import torch

from vidmamba.data.collate import collate_padded
from vidmamba.data.lighthouse import MomentDataset
from vidmamba.models import MLVTG, MLVTGConfig, create_model, list_models
from vidmamba.models.aligners import MambaAligner, PerClipAligner, TransformerAligner, pack_joint, unpack_joint
from vidmamba.models.mlvtg import span_targets

VARIANTS = ["mlvtg", "mlvtg-transformer", "mlvtg-perclip"]
VDIM, TDIM, CL = 12, 8, 2.0
TINY = dict(video_dim=VDIM, text_dim=TDIM, hidden_dim=16, num_layers=2, d_state=4, n_heads=2, mlp_ratio=2.0)
OUT_KEYS = ("logits", "offsets", "spans", "saliency")


def make_sample(T: int, L: int, seed: int, start: int | None = None, length: int = 3, duration: float | None = None):
    g = torch.Generator().manual_seed(seed)
    start = T // 3 if start is None else start
    fg = torch.zeros(T, dtype=torch.bool)
    fg[start:start + length] = True
    w = torch.tensor([[start * CL, (start + length) * CL]])
    dur = T * CL if duration is None else duration
    return {"qid": seed, "vid": f"v{seed}", "query": f"query {seed}", "duration": dur, "clip_length": CL,
            "video": torch.randn(T, VDIM, generator=g), "text": torch.randn(L, TDIM, generator=g),
            "windows": w, "windows_norm": w / dur, "foreground": fg,
            "saliency": fg.float() * (1 + 3 * torch.rand(T, generator=g))}


def collate(samples):
    return collate_padded(samples, MomentDataset.sequence_keys)


def tiny(name: str, **kw) -> MLVTG:
    torch.manual_seed(0)
    return create_model(name, **{**TINY, **kw})


SAMPLES = [make_sample(11, 4, 1), make_sample(6, 7, 2, start=1), make_sample(14, 2, 3, start=9, length=4)]


# ------------------------------------------------------------------------------------------------------------------
# padding invariance
# ------------------------------------------------------------------------------------------------------------------
def _assert_batch_equals_alone(model, samples):
    model.eval()
    batch = collate(samples)
    with torch.no_grad():
        out = model(batch)
    preds = model.predict(batch)
    for i, s in enumerate(samples):
        alone = collate([s])
        with torch.no_grad():
            ref = model(alone)
        T = s["video"].shape[0]
        for k in OUT_KEYS:
            torch.testing.assert_close(out[k][i, :T], ref[k][0], atol=2e-5, rtol=1e-4, msg=f"{k} of sample {i}")
            assert float(out[k][i, T:].abs().sum()) == 0.0, f"{k} not zero at pads"
        p = model.predict(alone)[0]
        assert p["qid"] == s["qid"] and p["vid"] == s["vid"] and p["query"] == s["query"]
        assert len(p["pred_relevant_windows"]) == len(preds[i]["pred_relevant_windows"])
        torch.testing.assert_close(torch.tensor(preds[i]["pred_relevant_windows"]),
                                   torch.tensor(p["pred_relevant_windows"]), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(preds[i]["pred_saliency_scores"]),
                                   torch.tensor(p["pred_saliency_scores"]), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_batch_equals_each_sample_alone(name):
    _assert_batch_equals_alone(tiny(name), SAMPLES)


@pytest.mark.parametrize("name", VARIANTS)
def test_padded_batch_equals_alone_with_tef_and_text_positions(name):
    _assert_batch_equals_alone(tiny(name, use_tef=True, use_txt_pos=True), SAMPLES[::-1])


def test_pack_joint_puts_valid_tokens_first_and_unpacks_exactly():
    text, video = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    tm = torch.tensor([[1, 0, 0], [1, 1, 1]]).bool()
    vm = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]).bool()
    z, zm, perm = pack_joint(text, tm, video, vm)
    assert zm.tolist() == [[True] * 5 + [False] * 3, [True] * 5 + [False] * 3]
    torch.testing.assert_close(z[0, :5], torch.cat([text[0, :1], video[0, :4]]))
    torch.testing.assert_close(z[1, :5], torch.cat([text[1], video[1, :2]]))
    t2, v2 = unpack_joint(z, perm, 3)
    torch.testing.assert_close(t2, text)
    torch.testing.assert_close(v2, video)


# ------------------------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_overfits_one_tiny_batch(name):
    model = tiny(name, input_dropout=0.0, drop_path=0.0)
    batch = collate(SAMPLES)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(batch)
        assert set(out) >= {"loss", "loss_fg", "loss_span", "loss_giou", "loss_sal_intra", "loss_sal_inter"}
        assert torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize("name", VARIANTS)
def test_gradients_reach_every_trainable_parameter(name):
    model = tiny(name, drop_path=0.0)
    model.train()
    model(collate(SAMPLES))["loss"].backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or float(p.grad.abs().sum()) == 0.0)]
    assert not missing


def test_loss_terms_follow_targets_and_weights():
    model = tiny("mlvtg")
    model.eval()
    batch = collate(SAMPLES)
    full = model(batch)
    no_sal = model({k: v for k, v in batch.items() if k not in ("saliency", "saliency_mask")})
    assert "loss_sal_intra" not in no_sal and "loss_fg" in no_sal
    assert "loss" not in model({k: batch[k] for k in ("video", "video_mask", "text", "text_mask")})
    doubled = MLVTG(model.cfg, w_fg=2 * model.cfg.w_fg)
    doubled.load_state_dict(model.state_dict())
    doubled.eval()
    torch.testing.assert_close(doubled(batch)["loss_fg"], 2 * full["loss_fg"])
    focal = MLVTG(model.cfg, fg_loss="focal")
    focal.load_state_dict(model.state_dict())
    focal.eval()
    assert not torch.allclose(focal(batch)["loss_fg"], full["loss_fg"])


def test_loss_terms_and_total_match_hand_computed_univtg_losses():
    """Two 2-clip videos with hand-set outputs; every term from the UniVTG definitions, computed by hand:
    sample 0: fg clip 0, window [0, 2] s, saliency (3, 1); sample 1: fg clip 1, window [2, 4] s, saliency (1, 3);
    logits 0 everywhere; predicted spans (feature-extent units) [0.1, 0.5] and [0.5, 0.9] for the fg clips (targets
    [0, 0.5] and [0.5, 1]); clip features e0, e1 in both videos, sentences e0 and e1; tau 1."""
    model = tiny("mlvtg", tau=1.0)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    out = {"logits": torch.zeros(2, 2), "spans": torch.tensor([[[0.1, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.5, 0.9]]]),
           "video_feats": torch.stack([torch.stack([e0, e1])] * 2), "sentence": torch.stack([e0, e1]),
           "video_mask": torch.ones(2, 2, dtype=torch.bool), "num_clips": torch.tensor([2, 2]),
           "unit": torch.tensor([2.0, 2.0]), "saliency": torch.zeros(2, 2)}
    batch = {"foreground": torch.tensor([[True, False], [False, True]]),
             "windows": torch.tensor([[[0.0, 2.0]], [[2.0, 4.0]]]), "windows_mask": torch.ones(2, 1, dtype=torch.bool),
             "clip_length": [2.0, 2.0], "saliency": torch.tensor([[3.0, 1.0], [1.0, 3.0]])}
    terms = model.losses(out, batch)
    log2, nce = math.log(2), math.log(1 + math.exp(-1))   # BCE at logit 0; -log(e / (e + e^0)) at cosines (1, 0)
    expected = {
        "loss_fg": 10 * (1.0 + 0.1) * 2 * log2 / 4,      # w_fg; fg weight 1, bg 0.1; mean over the 4 clips
        "loss_span": 10 * 0.5 * 0.1 ** 2,                # w_span; smooth-L1 (beta 1) of one 0.1 error per fg clip
        "loss_giou": 1 * (1 - 0.4 / 0.5),                # w_giou; IoU 0.8 = GIoU (enclosing = union)
        "loss_sal_intra": 0.05 * nce,                    # top clip vs the lower one of its own video
        "loss_sal_inter": 0.01 * 2 * nce,                # rows + columns of the 2 x 2 identity cosine matrix
    }
    assert set(terms) == set(expected) | {"loss"}
    for name, value in expected.items():
        assert math.isclose(float(terms[name]), value, rel_tol=1e-5), name
    assert math.isclose(float(terms["loss"]), sum(expected.values()), rel_tol=1e-5)


def test_span_targets_pick_the_overlapping_window_in_feature_units():
    windows = torch.tensor([[[0.0, 4.0], [10.0, 14.0]]])
    wm = torch.tensor([[True, True]])
    tgt = span_targets(windows, wm, torch.tensor([8]), torch.tensor([2.0]), 8)
    assert tgt.shape == (1, 8, 2)
    torch.testing.assert_close(tgt[0, 1], torch.tensor([0.0, 0.25]))
    torch.testing.assert_close(tgt[0, 5], torch.tensor([10 / 16, 14 / 16]))
    torch.testing.assert_close(tgt[0, 6], torch.tensor([10 / 16, 14 / 16]))


# ------------------------------------------------------------------------------------------------------------------
# decoding
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANTS)
def test_predictions_sorted_capped_clamped(name):
    samples = [make_sample(40, 5, 7, duration=40 * CL - 1.3), make_sample(3, 3, 8)]
    model = tiny(name)
    model.train()
    preds = model.predict(collate(samples))
    assert model.training, "predict must restore the training mode"
    assert len(preds) == 2
    for p, s in zip(preds, samples):
        wins = p["pred_relevant_windows"]
        assert 1 <= len(wins) <= 10
        scores = [w[2] for w in wins]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= w[0] <= w[1] <= s["duration"] for w in wins)
        assert len(p["pred_saliency_scores"]) == s["video"].shape[0]
        assert all(math.isfinite(x) for x in p["pred_saliency_scores"])
    no_nms = tiny(name, nms_threshold=1.0).predict(collate(samples))   # 40 distinct candidates, capped at 10
    assert len(no_nms[0]["pred_relevant_windows"]) == 10 and len(no_nms[1]["pred_relevant_windows"]) == 3


def test_nms_removes_overlapping_windows():
    model = tiny("mlvtg")
    preds = model.predict(collate([make_sample(40, 5, 9)]))[0]["pred_relevant_windows"]
    for i, a in enumerate(preds):
        for b in preds[i + 1:]:
            inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
            union = (a[1] - a[0]) + (b[1] - b[0]) - inter
            assert inter / max(union, 1e-8) <= 0.7 + 1e-6


# ------------------------------------------------------------------------------------------------------------------
# temporal context
# ------------------------------------------------------------------------------------------------------------------
def _perturbed_outputs(model, j):
    model.eval()
    s = make_sample(9, 4, 11)
    s2 = dict(s, video=s["video"].clone())
    s2["video"][j] += 3.0 * torch.randn(VDIM, generator=torch.Generator().manual_seed(5))  # not a constant: LN
    with torch.no_grad():
        a, b = model(collate([s])), model(collate([s2]))
    return a, b


def test_perclip_has_no_temporal_context():
    j = 4
    a, b = _perturbed_outputs(tiny("mlvtg-perclip"), j)
    others = [i for i in range(9) if i != j]
    for k in ("logits", "offsets", "saliency"):
        torch.testing.assert_close(a[k][0, others], b[k][0, others], atol=0, rtol=0)
        assert not torch.allclose(a[k][0, j], b[k][0, j])


@pytest.mark.parametrize("name", ["mlvtg", "mlvtg-transformer"])
def test_temporal_variants_do_use_context(name):
    j = 4
    a, b = _perturbed_outputs(tiny(name), j)
    far = [0, 8]  # beyond the heads' receptive field (kernel 3, 3 layers): only the aligner can carry it there
    assert not torch.allclose(a["logits"][0, far], b["logits"][0, far])


# ------------------------------------------------------------------------------------------------------------------
# registry, config, errors
# ------------------------------------------------------------------------------------------------------------------
def test_registry_builds_each_name_and_rejects_unknown():
    assert set(VARIANTS) <= set(list_models())
    kinds = {"mlvtg": MambaAligner, "mlvtg-transformer": TransformerAligner, "mlvtg-perclip": PerClipAligner}
    for name, cls in kinds.items():
        m = create_model(name, **TINY)
        assert isinstance(m, MLVTG) and type(m.aligner) is cls
    assert create_model("mlvtg-perclip", **TINY).head.cls.out.conv.kernel_size == (1,)
    with pytest.raises(TypeError, match="model.name: unknown model 'mlvtg-lstm'; did you mean 'mlvtg"):
        create_model("mlvtg-lstm", **TINY)
    with pytest.raises(ValueError, match="conflicts"):
        create_model("mlvtg", aligner="transformer", **TINY)
    with pytest.raises(TypeError, match="model.hiden_dim: unknown key; did you mean 'hidden_dim'"):
        create_model("mlvtg", hiden_dim=3, **TINY)
    with pytest.raises(ValueError, match="per-clip"):
        MLVTGConfig(aligner="perclip", llm_refiner={"model": "x", "layer": 0})
    with pytest.raises(ValueError, match="fg_loss"):
        MLVTGConfig(fg_loss="hinge")


def test_defaults_follow_univtg():
    c = MLVTGConfig()
    assert (c.w_fg, c.bg_weight, c.w_span, c.w_giou, c.w_sal_intra, c.w_sal_inter, c.tau) == \
        (10.0, 0.1, 10.0, 1.0, 0.05, 0.01, 0.07)
    assert (c.nms_threshold, c.max_windows, c.score_mode, c.num_layers, c.llm_refiner) == (0.7, 10, "add", 4, None)
    # the graded-saliency additions are off by default: the default model (the demo's) has no extra head or loss
    assert (c.post_saliency, c.w_sal_rank) == (False, 0.0)
    assert MLVTG(MLVTGConfig(video_dim=8, text_dim=4, hidden_dim=8, num_layers=1)).post_saliency_head is None


def test_bad_inputs_give_clear_errors():
    model = tiny("mlvtg")
    batch = collate(SAMPLES[:2])
    with pytest.raises(ValueError, match="feature dim"):
        model(dict(batch, video=torch.randn(2, 11, VDIM + 1)))
    bad = batch["video"].clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(dict(batch, video=bad))
    empty = batch["text_mask"].clone()
    empty[1] = False
    with pytest.raises(ValueError, match="empty text"):
        model(dict(batch, text_mask=empty))


# ------------------------------------------------------------------------------------------------------------------
# LLMRefiner (transformers needed)
# ------------------------------------------------------------------------------------------------------------------
def _tiny_llm(kind: str, tmp_path, sharded: bool = False):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    if kind == "llama":
        cfg = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = transformers.LlamaForCausalLM(cfg)
    elif kind == "qwen2":
        cfg = transformers.Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.MambaConfig(vocab_size=32, hidden_size=16, state_size=4, num_hidden_layers=3, expand=2,
                                       conv_kernel=4)
        model = transformers.MambaForCausalLM(cfg)
    path = tmp_path / kind
    kw = {"max_shard_size": "10KB"} if sharded else {}
    model.save_pretrained(path, safe_serialization=True, **kw)
    return model, path


@pytest.mark.parametrize("kind,sharded", [("llama", False), ("qwen2", False), ("mamba", True)])
def test_llm_refiner_loads_exactly_the_chosen_layer(kind, sharded, tmp_path):
    from vidmamba.models.llm_refiner import LLMRefiner
    model, path = _tiny_llm(kind, tmp_path, sharded)
    assert (path / "model.safetensors.index.json").is_file() == sharded
    for k in (0, 2):
        ref = LLMRefiner(8, str(path), k)
        saved = model.base_model.layers[k].state_dict()
        got = ref.layer.state_dict()
        assert set(got) == set(saved)
        for name in saved:
            assert torch.equal(got[name], saved[name]), name
    other = model.base_model.layers[1].state_dict()
    assert any(not torch.equal(got[n], other[n]) for n in other)


@pytest.mark.parametrize("kind", ["llama", "mamba"])
def test_llm_refiner_is_frozen_and_its_projections_train(kind, tmp_path):
    from vidmamba.models.llm_refiner import LLMRefiner
    _, path = _tiny_llm(kind, tmp_path)
    ref = LLMRefiner(8, str(path), 1)
    ref.train()
    assert not ref.layer.training and ref.in_proj.training
    assert all(not p.requires_grad for p in ref.layer.parameters())
    z = torch.randn(2, 6, 8, requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    y = ref(z, mask)
    assert float(y[1, 4:].detach().abs().sum()) == 0.0
    y.pow(2).sum().backward()
    assert all(p.grad is None for p in ref.layer.parameters())
    for p in (*ref.in_proj.parameters(), *ref.out_proj.parameters()):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0
    alone = ref(z[1:2, :4].detach(), mask[1:2, :4])
    torch.testing.assert_close(alone, y[1:2, :4].detach(), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="prefix"):
        ref(z, torch.tensor([[True] * 6, [False] + [True] * 5]))


def test_llm_refiner_causal_option_changes_attention(tmp_path):
    from vidmamba.models.llm_refiner import LLMRefiner
    _, path = _tiny_llm("llama", tmp_path)
    torch.manual_seed(0)
    bi = LLMRefiner(8, str(path), 1)
    causal = LLMRefiner(8, str(path), 1, causal=True)
    causal.load_state_dict(bi.state_dict())
    z, mask = torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool)
    yb, yc = bi(z, mask), causal(z, mask)
    z2 = z.clone()
    z2[0, 4] += 1.0
    torch.testing.assert_close(causal(z2, mask)[0, :4], yc[0, :4])        # the future does not reach the past
    assert not torch.allclose(bi(z2, mask)[0, :4], yb[0, :4])


def test_llm_refiner_errors(tmp_path):
    from vidmamba.models.llm_refiner import LLMRefiner
    _, path = _tiny_llm("llama", tmp_path)
    with pytest.raises(IndexError, match="out of range.*3 layers"):
        LLMRefiner(8, str(path), 3)
    with pytest.raises(FileNotFoundError, match="nowhere: no such folder"):
        LLMRefiner(8, str(tmp_path / "nowhere"), 0)
    (path / "model.safetensors").rename(tmp_path / "moved.safetensors")
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        LLMRefiner(8, str(path), 0)


def test_mlvtg_with_llm_refiner_pads_trains_and_keeps_layer_frozen(tmp_path):
    _, path = _tiny_llm("llama", tmp_path)
    model = tiny("mlvtg", llm_refiner={"model": str(path), "layer": 2}, drop_path=0.0)
    assert model.refiner is not None and model.refiner.layer_index == 2
    _assert_batch_equals_alone(model, SAMPLES)
    model.train()
    assert not model.refiner.layer.training
    frozen = {id(p) for p in model.refiner.layer.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert frozen and not frozen & {id(p) for p in trainable}
    before = {n: p.detach().clone() for n, p in model.refiner.layer.named_parameters()}
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    model(collate(SAMPLES))["loss"].backward()
    opt.step()
    for n, p in model.refiner.layer.named_parameters():
        assert torch.equal(p, before[n]) and p.grad is None
    assert model.refiner.in_proj.weight.grad is not None


# ------------------------------------------------------------------------------------------------------------------
# graded saliency: post-aligner saliency head + ranking loss
# ------------------------------------------------------------------------------------------------------------------
def _rank_grads(post_saliency: bool):
    model = tiny("mlvtg", drop_path=0.0, post_saliency=post_saliency, w_sal_rank=1.0)
    model.train()
    out = model(collate(SAMPLES))
    out["loss_sal_rank"].backward()
    return model, out


def test_rank_loss_reaches_the_aligner_only_through_the_post_aligner_saliency():
    model, out = _rank_grads(post_saliency=True)
    aligner = [p.grad for p in model.aligner.parameters()]
    assert all(g is not None for g in aligner) and sum(float(g.abs().sum()) for g in aligner) > 0
    assert float(model.post_saliency_head.out.conv.weight.grad.abs().sum()) > 0
    # the HD cosine (pre-aligner) still contributes: the input projection gets gradient too
    assert float(model.video_proj[2].weight.grad.abs().sum()) > 0
    # without the post-aligner head the HD score never sees the aligner
    model, _ = _rank_grads(post_saliency=False)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in model.aligner.parameters())


def test_post_saliency_is_hd_cosine_plus_head_and_rank_loss_uses_graded_targets():
    from vidmamba.nn.losses import saliency_rank_loss

    model = tiny("mlvtg", post_saliency=True, w_sal_rank=0.5, rank_margin=0.3)
    model.eval()
    batch = collate(SAMPLES)
    out = model(batch)
    plain = MLVTG(MLVTGConfig(**{**model.cfg.to_dict(), "post_saliency": False}))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("post_saliency_head")})
    plain.eval()
    hd = plain(batch)["saliency"]
    vmask = batch["video_mask"]
    # the same weights without the head give the HD cosine alone; the head adds a score at valid clips only
    diff = (out["saliency"] - hd).detach()
    assert float(diff[vmask].abs().sum()) > 0 and float(diff[~vmask].abs().sum()) == 0
    expected = 0.5 * saliency_rank_loss(out["saliency"], batch["saliency"].masked_fill(~vmask, 0), vmask, 0.3)
    torch.testing.assert_close(out["loss_sal_rank"], expected)
    # padding invariance holds with the extra head
    _assert_batch_equals_alone(model, SAMPLES)
    assert "loss_sal_rank" not in tiny("mlvtg")(batch)            # off by default (UniVTG recipe)
