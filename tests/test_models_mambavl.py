"""MambaVL: shared-A tying and its gradients, padding invariance for every fusion, losses, overfitting, registry,
the released code's initialisation."""
import math

import pytest
import torch

from vidmamba.models import create_model
from vidmamba.models.mambavl import FUSIONS, MambaVL, MambaVLConfig, MLPFusion, MambaFusion, TransformerFusion

TINY = dict(video_dim=12, text_dim=10, d_model=16, d_state=4, expand=2, num_verbs=5, num_nouns=7, dropout=0.0,
            n_heads=2)


def make_model(fusion="shared_a", seed=0, **kw):
    torch.manual_seed(seed)
    return MambaVL(MambaVLConfig(**{**TINY, "fusion": fusion, **kw}))


def ragged(lengths, dim, gen):
    """Right-padded (b, max, dim) with NaN in the pads (they must be ignored) and the (b, max) mask."""
    x = torch.full((len(lengths), max(lengths), dim), float("nan"))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, dim, generator=gen)
        mask[i, :n] = True
    return x, mask


def make_batch(vlens=(7, 3, 5), vq=(4, 6, 2), nq=(3, 2, 5), seed=0, labels=True):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for key, lens, dim in (("video", vlens, 12), ("verb_question", vq, 10), ("noun_question", nq, 10)):
        batch[key], batch[f"{key}_mask"] = ragged(lens, dim, g)
    if labels:
        batch["verb"] = torch.randint(0, 5, (len(vlens),), generator=g)
        batch["noun"] = torch.randint(0, 7, (len(vlens),), generator=g)
    return batch


def sample(batch, i):
    out = {}
    for key in ("video", "verb_question", "noun_question"):
        n = int(batch[f"{key}_mask"][i].sum())
        out[key], out[f"{key}_mask"] = batch[key][i:i + 1, :n], batch[f"{key}_mask"][i:i + 1, :n]
    return out


def a_log_params(model):
    return [(n, p) for n, p in model.named_parameters() if n.endswith("A_log")]


def test_shared_a_is_one_parameter_and_separate_a_two():
    shared = make_model("shared_a")
    params = a_log_params(shared)
    assert len(params) == 1
    assert params[0][1] is shared.fusion.a_logs[0].A_log
    assert not hasattr(shared.fusion.video_layers[0], "A_log") and not hasattr(shared.fusion.text_layers[0], "A_log")
    separate = make_model("separate_a")
    params = a_log_params(separate)
    assert len(params) == 2 and params[0][1] is not params[1][1]
    assert {p for _, p in params} == {separate.fusion.video_layers[0].A_log, separate.fusion.text_layers[0].A_log}
    # two layers: one shared A per layer
    assert len(a_log_params(make_model("shared_a", num_layers=2))) == 2


def _a_log_grad(model, batch, detach_in=None):
    """Gradient of the loss wrt the shared A_log, with the A_log fed to ``detach_in`` (a mixer) detached."""
    model.zero_grad()
    handle = None
    if detach_in is not None:
        handle = detach_in.register_forward_pre_hook(
            lambda mod, args, kwargs: (args, {**kwargs, "A_log": kwargs["A_log"].detach()}), with_kwargs=True)
    try:
        model(batch)["loss"].backward()
    finally:
        if handle is not None:
            handle.remove()
    return model.fusion.a_logs[0].A_log.grad.clone()


def test_shared_a_gets_gradient_from_both_modalities():
    model = make_model("shared_a").double()
    batch = {k: v.double() if v.is_floating_point() else v for k, v in make_batch().items()}
    full = _a_log_grad(model, batch)
    from_text = _a_log_grad(model, batch, detach_in=model.fusion.video_layers[0])
    from_video = _a_log_grad(model, batch, detach_in=model.fusion.text_layers[0])
    # a branch cut off from A_log would contribute exactly 0 (float64: real contributions are far above rounding)
    scale = full.abs().max()
    assert scale > 0 and from_text.abs().max() > 1e-6 * scale and from_video.abs().max() > 1e-6 * scale
    assert not torch.allclose(from_text, from_video)
    torch.testing.assert_close(full, from_text + from_video, rtol=1e-9, atol=1e-9 * float(scale))


@pytest.mark.parametrize("fusion", FUSIONS)
def test_padded_batch_equals_each_sample_alone_and_questions_feed_their_head(fusion):
    model = make_model(fusion).eval()
    batch = make_batch(labels=False)
    with torch.no_grad():
        out = model(batch)
        assert torch.isfinite(out["verb_logits"]).all() and torch.isfinite(out["noun_logits"]).all()
        for i in range(3):
            alone = model(sample(batch, i))
            for name in ("verb_logits", "noun_logits"):
                torch.testing.assert_close(out[name][i:i + 1], alone[name], rtol=1e-4, atol=1e-5)
        # the verb question feeds the verb head only
        changed = model({**batch, "verb_question": batch["verb_question"] * 2})
    assert not torch.allclose(out["verb_logits"], changed["verb_logits"])
    torch.testing.assert_close(out["noun_logits"], changed["noun_logits"])


def smoothed_ce_closed_form(logits: list[float], target: int, eps: float) -> float:
    """Cross-entropy against (1 - eps) onehot + eps / C, in closed form: logsumexp(z) - (1 - eps) z_y - eps mean(z)."""
    lse = math.log(sum(math.exp(z) for z in logits))
    return lse - (1 - eps) * logits[target] - eps * sum(logits) / len(logits)


def test_label_smoothing_closed_form_by_hand():
    # all-equal logits: log C whatever the smoothing; C = 4, z = (0, log 2, 0, 0), y = 1, eps = 0.2:
    # lse = log 5, loss = log 5 - 0.8 log 2 - 0.2 log 2 / 4 = log 5 - 0.85 log 2
    assert math.isclose(smoothed_ce_closed_form([1.5] * 4, 2, 0.3), math.log(4), rel_tol=1e-12)
    assert math.isclose(smoothed_ce_closed_form([0.0, math.log(2), 0.0, 0.0], 1, 0.2),
                        math.log(5) - 0.85 * math.log(2), rel_tol=1e-12)


def test_losses_are_smoothed_cross_entropy_and_skip_unlabelled():
    model = make_model(label_smoothing=0.2)
    batch = make_batch()
    batch["noun"] = torch.tensor([2, -1, 6])
    out = model(batch)
    assert out["loss"].dim() == 0
    verb_logits, noun_logits = out["verb_logits"].detach().tolist(), out["noun_logits"].detach().tolist()
    exp_v = sum(smoothed_ce_closed_form(z, y, 0.2) for z, y in zip(verb_logits, batch["verb"].tolist())) / 3
    exp_n = sum(smoothed_ce_closed_form(noun_logits[i], int(batch["noun"][i]), 0.2) for i in (0, 2)) / 2
    for key, expected in (("loss_verb", exp_v), ("loss_noun", exp_n), ("loss", exp_v + exp_n)):
        assert math.isclose(out[key].item(), expected, rel_tol=1e-5), key
    assert "loss" not in model(make_batch(labels=False))
    with pytest.raises(ValueError, match="class id"):
        model({**batch, "verb": torch.tensor([0, 5, 1])})


def test_predict_probabilities_and_logits():
    model = make_model().eval()
    batch = make_batch(labels=False)
    p, logits = model.predict(batch), model.predict(batch, probs=False)
    assert p["verb"].shape == (3, 5) and p["noun"].shape == (3, 7)
    torch.testing.assert_close(p["verb"].sum(-1), torch.ones(3))
    torch.testing.assert_close(p["noun"], logits["noun"].softmax(-1))


def test_bad_inputs_and_config():
    with pytest.raises(TypeError, match="model.hidden: unknown key"):
        MambaVLConfig.from_dict({"hidden": 3})
    with pytest.raises(ValueError, match="fusion"):
        MambaVLConfig(fusion="concat")
    with pytest.raises(ValueError, match="init must be one of"):
        MambaVLConfig(init="xavier")
    model = make_model()
    batch = make_batch(labels=False)
    with pytest.raises(KeyError, match="noun_question"):
        model({k: v for k, v in batch.items() if not k.startswith("noun_question")})
    with pytest.raises(ValueError, match="no valid token"):
        model({**batch, "video_mask": torch.zeros_like(batch["video_mask"])})
    with pytest.raises(ValueError, match=r"\(b, l, 12\)"):
        model({**batch, "video": batch["video"][..., :4]})


def test_overfits_a_tiny_batch():
    model = make_model("shared_a", seed=1)
    batch = make_batch(seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    pred = model.eval().predict(batch)
    assert torch.equal(pred["verb"].argmax(-1), batch["verb"]) and torch.equal(pred["noun"].argmax(-1), batch["noun"])


def test_registry_builds_mambavl_and_ablations():
    kinds = {"shared_a": MambaFusion, "separate_a": MambaFusion, "transformer": TransformerFusion, "mlp": MLPFusion}
    for fusion, cls in kinds.items():
        model = create_model("mambavl", **{**TINY, "fusion": fusion})
        assert isinstance(model, MambaVL) and isinstance(model.fusion, cls) and model.cfg.fusion == fusion
    assert create_model("mambavl", **TINY).fusion.shared_a
    assert not create_model("mambavl", **{**TINY, "fusion": "separate_a"}).fusion.shared_a
    with pytest.raises(TypeError, match="unknown key"):
        create_model("mambavl", aligner="mamba")


# ---------------------------------------------------------------------------------------------------------------------
# initialisation: S4D (default) and the released code's re-initialisation
# ---------------------------------------------------------------------------------------------------------------------
def test_default_init_is_s4d_real_and_head_dropout_is_the_released_zero():
    model = make_model()
    a_log = model.fusion.a_logs[0].A_log
    expected = torch.log(torch.arange(1, TINY["d_state"] + 1, dtype=torch.float32)).expand_as(a_log)
    torch.testing.assert_close(a_log.detach(), expected)      # A = -(1, 2, ..., d_state) for every channel
    assert MambaVLConfig().dropout == 0.0                     # MF.HEAD_DROPOUT of the released configs


@pytest.mark.parametrize("fusion", FUSIONS)
def test_released_init_is_the_released_code_run_on_the_same_module_and_seed(fusion):
    """``init: released`` equals, bit for bit, the released code's own procedure (rewritten in tests/oracles.py from
    the AVION class: xavier on every >1-d parameter in named_parameters order, then Module.apply's children-first
    trunc-normal / zero / LayerNorm reset) run on the same module built from the same seed."""
    from oracles import mambavl_released_init

    cfg = dict(TINY, fusion=fusion)
    torch.manual_seed(11)
    ours = MambaVL(MambaVLConfig(**cfg, init="released"))
    torch.manual_seed(11)
    theirs = MambaVL(MambaVLConfig(**cfg))
    mambavl_released_init(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[name]), name


def test_released_init_matches_the_released_code():
    big = dict(TINY, d_model=64, num_verbs=97, num_nouns=300)
    torch.manual_seed(0)
    model = MambaVL(MambaVLConfig(**big, init="released"))
    d_inner, d_state = 2 * 64, TINY["d_state"]
    # xavier-uniform on A_log (d_inner, d_state): |A_log| <= sqrt(6 / (d_inner + d_state)), so A ~ -1 for every state
    bound = math.sqrt(6 / (d_inner + d_state))
    a_log = model.fusion.a_logs[0].A_log.detach()
    assert float(a_log.abs().max()) <= bound and float(a_log.abs().max()) > 0.5 * bound
    assert abs(float(a_log.mean())) < 0.1 * bound                # centred on 0, not on log(1..d_state)
    # depthwise conv weight (d_inner, 1, k): xavier with fan_in = k, fan_out = d_inner * k
    k = model.cfg.d_conv
    conv = model.fusion.video_layers[0].conv1d.weight.detach()
    assert float(conv.abs().max()) <= math.sqrt(6 / (k + d_inner * k))
    # every Linear: bias 0 (dt_proj's too: no dt offset), weight trunc-normal std 0.02
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and m.bias is not None:
            assert float(m.bias.detach().abs().max()) == 0.0, name
    w = model.noun_head.weight.detach()                          # 300 x 64 = 19200 draws
    assert abs(float(w.std()) - 0.02) < 0.001 and abs(float(w.mean())) < 0.001
    # D (1-d, not in a Linear) keeps its construction value 1
    assert torch.equal(model.fusion.video_layers[0].D.detach(), torch.ones(d_inner))
    # the default build is different (S4D A, non-zero dt bias)
    default = MambaVL(MambaVLConfig(**big))
    assert float(default.fusion.video_layers[0].dt_proj.bias.detach().abs().min()) > 0
