"""Unit tests of the training engine: optimizer groups, lr schedule, clipping, EMA, config, RNG, checkpoints."""
import json
import math
import os
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from vidmamba.engine import (EMA, Checkpoint, CheckpointError, LRSchedule, TrainerConfig, WarmupScheduler,
                             build_optimizer, clip_gradients, get_rng_state, load_weights, param_groups,
                             save_checkpoint, set_rng_state)
from vidmamba.engine import checkpoint as ckpt_module


class MyRMSNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class TinyLM(nn.Module):
    """Embedding tied to the output head, a norm, a 2-D ``A_log`` marked no-decay, a frozen layer."""

    def __init__(self, vocab=7, d=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.proj = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.rms = MyRMSNorm(d)
        self.A_log = nn.Parameter(torch.zeros(d, 3))
        self.A_log._no_weight_decay = True
        self.mix = nn.Parameter(torch.randn(d, d))
        self.frozen = nn.Linear(d, d)
        self.frozen.requires_grad_(False)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight
        self.register_buffer("steps", torch.zeros(()))


def _ids(params):
    return {id(p) for p in params}


def test_no_weight_decay_groups():
    model = TinyLM()
    groups = {g["group"]: g for g in param_groups(model, weight_decay=0.05)}
    assert groups["decay"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert _ids(groups["decay"]["params"]) == _ids([model.proj.weight, model.mix])
    expected_no_decay = [model.embed.weight, model.proj.bias, model.norm.weight, model.norm.bias, model.rms.weight,
                         model.A_log]
    assert _ids(groups["no_decay"]["params"]) == _ids(expected_no_decay)
    # the tied head weight is listed once, frozen parameters not at all
    all_params = groups["decay"]["params"] + groups["no_decay"]["params"]
    assert len(all_params) == len(_ids(all_params)) == 8
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_cosine_schedule_values_by_hand():
    s = LRSchedule(total_steps=10, warmup_steps=2, kind="cosine", min_lr_ratio=0.0)
    # warmup (s + 1) / 2; then progress (s - 2) / 8 through a half cosine
    assert [s(0), s(1)] == [0.5, 1.0]
    assert s(2) == pytest.approx(1.0)
    assert s(4) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))  # 0.853553...
    assert s(6) == pytest.approx(0.5)
    assert s(10) == pytest.approx(0.0, abs=1e-12)
    assert s(15) == pytest.approx(0.0, abs=1e-12)  # clamped past the end
    m = LRSchedule(total_steps=10, warmup_steps=2, kind="cosine", min_lr_ratio=0.1)
    assert m(6) == pytest.approx(0.55) and m(10) == pytest.approx(0.1)


def test_step_and_constant_schedules():
    s = LRSchedule(total_steps=12, warmup_steps=2, kind="step", milestones=(4, 8), gamma=0.1)
    assert [s(0), s(1), s(3)] == [0.5, 1.0, 1.0]
    assert s(4) == pytest.approx(0.1) and s(7) == pytest.approx(0.1) and s(8) == pytest.approx(0.01)
    c = LRSchedule(total_steps=12, warmup_steps=4, kind="constant")
    assert [c(0), c(1), c(3), c(4), c(11)] == [0.25, 0.5, 1.0, 1.0, 1.0]


def test_scheduler_sets_lr_per_step_and_restores():
    model = nn.Linear(2, 1)
    opt = build_optimizer(model, lr=0.2, weight_decay=0.0)
    sched = WarmupScheduler(opt, LRSchedule(total_steps=10, warmup_steps=4, kind="cosine"))
    seen = []
    for _ in range(6):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2, 0.2 * 0.5 * (1 + math.cos(math.pi / 6))])
    opt2 = build_optimizer(model, lr=0.2, weight_decay=0.0)
    sched2 = WarmupScheduler(opt2, sched.schedule)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_grad_clipping():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])
    norm = clip_gradients([a, b], max_norm=0.0)  # off: reports the norm, leaves gradients alone
    assert norm.item() == pytest.approx(5.0) and a.grad.tolist() == [3.0, 0.0]
    norm = clip_gradients([a, b], max_norm=1.0)
    assert norm.item() == pytest.approx(5.0)
    assert a.grad.tolist() == pytest.approx([0.6, 0.0], abs=1e-6)
    assert b.grad.tolist() == pytest.approx([0.0, 0.8], abs=1e-6)
    assert torch.cat([a.grad, b.grad]).norm().item() == pytest.approx(1.0, abs=1e-5)
    a.grad = torch.tensor([float("nan"), 0.0])
    assert not torch.isfinite(clip_gradients([a, b], max_norm=1.0))


def test_ema_update_formula_and_swap():
    model = nn.Linear(1, 1, bias=False)
    frozen = nn.Linear(1, 1)
    frozen.requires_grad_(False)
    model.frozen = frozen
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.9)
    assert set(ema.shadow) == {"weight"}  # frozen parameters are not tracked
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # 0.9 * 1 + 0.1 * 3
    assert ema.shadow["weight"].item() == pytest.approx(1.2)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.update(model)  # 0.9 * 1.2 + 0.1 * 0
    assert ema.shadow["weight"].item() == pytest.approx(1.08)
    with ema.applied(model):
        assert model.weight.item() == pytest.approx(1.08)
    assert model.weight.item() == 0.0
    other = EMA(model, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.num_updates == 2 and other.shadow["weight"].item() == pytest.approx(1.08)
    with pytest.raises(KeyError, match="bias"):
        EMA(nn.Linear(1, 1)).load_state_dict(ema.state_dict())


def test_config_from_dict_checks_keys_and_types():
    cfg = TrainerConfig.from_dict({"lr": "1e-4", "epochs": 3, "betas": [0.9, 0.98], "lr_drop_epochs": [2]})
    assert cfg.lr == 1e-4 and cfg.betas == (0.9, 0.98) and cfg.lr_drop_epochs == (2,)
    assert TrainerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match=r"train.warmup_epoch: unknown key; did you mean 'warmup_epochs'"):
        TrainerConfig.from_dict({"warmup_epoch": 1})
    with pytest.raises(ValueError, match="train.schedule: must be one of"):
        TrainerConfig.from_dict({"schedule": "linear"})
    with pytest.raises(TypeError, match="train.epochs: expected int, got 'ten'"):
        TrainerConfig.from_dict({"epochs": "ten"})
    with pytest.raises(ValueError, match="not both"):
        TrainerConfig.from_dict({"warmup_epochs": 1, "warmup_steps": 5})


def test_rng_state_roundtrip():
    state = get_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


# ---------------------------------------------------------------------------------------------- checkpoints
def _filled(value):
    model = TinyLM()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)
    return model


def test_checkpoint_roundtrip_with_tied_weights(tmp_path):
    model = _filled(1.5)
    ema = EMA(model)
    save_checkpoint(tmp_path / "ck", model, config={"model": {"d": 4}}, training_state={"epoch": 3},
                    ema_state=ema.state_dict(), info={"epoch": 3})
    ck = Checkpoint(tmp_path / "ck")
    assert ck.meta["epoch"] == 3 and ck.config["model"] == {"d": 4}
    assert ck.training_state()["epoch"] == 3
    with safe_open(tmp_path / "ck" / "model.safetensors", framework="pt") as f:
        stored = set(f.keys())
    assert "head.weight" not in stored and "embed.weight" in stored  # tied tensor stored once
    fresh = _filled(0.0)
    ck.load_model(fresh)
    assert fresh.head.weight is fresh.embed.weight and torch.all(fresh.embed.weight == 1.5)
    assert torch.all(fresh.frozen.weight == 1.5)
    with torch.no_grad():
        model.mix.fill_(9.0)
    save_checkpoint(tmp_path / "ck2", model, ema_state=ema.state_dict())
    target = _filled(0.0)
    load_weights(tmp_path / "ck2", target, use_ema=True)  # EMA weights (1.5) override the raw ones (9.0)
    assert torch.all(target.mix == 1.5)
    load_weights(tmp_path / "ck2", target, use_ema=False)
    assert torch.all(target.mix == 9.0)


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "last"
    save_checkpoint(folder, _filled(1.0), training_state={"epoch": 1}, info={"epoch": 1})
    real_write = ckpt_module.atomic_write_bytes

    def failing_write(path, data):
        if path.name == "trainer_state.pt":
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(ckpt_module, "atomic_write_bytes", failing_write)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(folder, _filled(2.0), training_state={"epoch": 2}, info={"epoch": 2})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp folder left behind
    ck = Checkpoint(folder)
    assert ck.meta["epoch"] == 1 and ck.training_state()["epoch"] == 1
    model = _filled(0.0)
    ck.load_model(model)
    assert torch.all(model.mix == 1.0)


def test_crash_between_renames_falls_back_to_backup(tmp_path, monkeypatch):
    folder = tmp_path / "last"
    save_checkpoint(folder, _filled(1.0), info={"epoch": 1})
    real_replace = os.replace

    def crash_on_commit(src, dst):
        if ".tmp-" in os.path.basename(src) and os.path.isdir(src):
            raise KeyboardInterrupt("killed between the renames (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_module.os, "replace", crash_on_commit)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, _filled(2.0), info={"epoch": 2})
    monkeypatch.undo()
    assert not folder.exists()
    ck = Checkpoint(folder)  # resolves to the .old backup
    assert ck.path.name == ".last.old" and ck.meta["epoch"] == 1
    save_checkpoint(folder, _filled(3.0), info={"epoch": 3})
    assert Checkpoint(folder).meta["epoch"] == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_checkpoint_errors_name_file_and_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        Checkpoint(tmp_path / "nowhere")
    folder = tmp_path / "ck"
    save_checkpoint(folder, TinyLM(d=4), training_state={"epoch": 1})

    class Other(TinyLM):
        def __init__(self):
            super().__init__(d=5)
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError) as info:
        Checkpoint(folder).load_model(Other())
    message = str(info.value)
    assert "model.safetensors" in message and "extra.weight" in message and "missing keys" in message
    assert "proj.weight (expected (5, 5), found (4, 4))" in message

    # same size, garbage content: the sha256 recorded in meta.json differs
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt or was modified: its sha256 differs"):
        Checkpoint(folder).load_model(TinyLM(d=4))
    # the same in a folder without checksums (an older vidmamba's): the unreadable safetensors header is named
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    with pytest.warns(UserWarning, match="records no sha256 checksums"), \
            pytest.raises(CheckpointError, match="cannot read .*model.safetensors"):
        Checkpoint(folder).load_model(TinyLM(d=4))
    # truncated file
    weights.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors is truncated"):
        Checkpoint(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint metadata .*meta.json"):
        Checkpoint(folder)
    (folder / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="meta.json is missing"):
        Checkpoint(folder)
