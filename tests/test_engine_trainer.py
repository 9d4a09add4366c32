"""Trainer tests on a tiny regression task: exact resume, best-checkpoint selection, resume errors, DDP == 1 process.

The DDP worker also runs under torchrun: ``torchrun --nproc_per_node 2 tests/test_engine_trainer.py OUT``.
"""
import json
import multiprocessing
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from vidmamba.engine import Checkpoint, CheckpointError, Trainer, TrainerConfig


class Regression(Dataset):
    """y = x . w + 0.1 * noise; ``jitter`` adds input noise drawn from the global torch RNG at read time."""

    def __init__(self, n, seed=0, jitter=0.0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)
        self.jitter = jitter

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.jitter:
            x = x + self.jitter * torch.randn(4)
        return {"x": x, "y": self.y[i]}


class LengthRegression(Regression):
    """Regression whose samples have a length (for length-grouped batches)."""

    def sample_lengths(self):
        return [int(v) for v in torch.randint(1, 50, (len(self),), generator=torch.Generator().manual_seed(7))]


class TinyRegressor(nn.Module):
    def __init__(self, hidden=8, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, batch):
        pred = self.net(batch["x"]).squeeze(-1)
        err = pred - batch["y"]
        return {"loss": err.pow(2).mean(), "mae": err.abs().mean(), "pred": pred}


def evaluate_mse(model, loader):
    device = next(model.parameters()).device
    sq, n = 0.0, 0
    for batch in loader:
        pred = model.net(batch["x"].to(device)).squeeze(-1)
        sq += (pred - batch["y"].to(device)).pow(2).sum().item()
        n += len(pred)
    return {"mse": sq / n, "rmse": (sq / n) ** 0.5}


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    return TinyRegressor(**kw)


def run_config(out_dir, **overrides):
    options = dict(epochs=4, lr=0.05, weight_decay=0.01, warmup_epochs=1, schedule="cosine", grad_clip=1.0,
                   ema=True, ema_decay=0.9, batch_size=8, seed=3, metric="mse", higher_is_better=False,
                   out_dir=str(out_dir), progress=False)
    options.update(overrides)
    return TrainerConfig.from_dict(options)


def _log_records(out_dir):
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in lines]


class Stop(Exception):
    pass


def stop_after(epoch):
    def callback(trainer, record):
        if record["epoch"] == epoch:
            raise Stop(f"killed after epoch {epoch}")

    return callback


def _check_exact_resume(tmp_path, num_workers, length_pool_batches=0):
    data = dict(train_data=LengthRegression(48, seed=1, jitter=0.05), val_data=Regression(16, seed=2))
    common = dict(evaluate_fn=evaluate_mse, **data)
    options = dict(num_workers=num_workers, length_pool_batches=length_pool_batches)

    full = Trainer(make_model(0, dropout=0.2), run_config(tmp_path / "a", **options), **common)
    want = full.fit()

    cfg = run_config(tmp_path / "b", **options)
    first = Trainer(make_model(0, dropout=0.2), cfg, callbacks=[stop_after(2)], **common)
    with pytest.raises(Stop):
        first.fit()
    first.close()  # releases the run folder's lock for the next writer
    assert Checkpoint(tmp_path / "b" / "last").meta["epoch"] == 2
    # a different initialisation proves the weights come from the checkpoint
    resumed = Trainer(make_model(123, dropout=0.2), cfg, resume=True, **common)
    assert (resumed.epoch, resumed.step) == (2, 12)
    got = resumed.fit()

    assert got == want and got["eval"]["mse"] < 10.0  # var(y) is about 14: it learned something
    for name, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    for name, value in full.ema.shadow.items():
        assert torch.equal(value, resumed.ema.shadow[name]), name
    assert _log_records(tmp_path / "b") == _log_records(tmp_path / "a")


def test_exact_resume_after_kill(tmp_path):
    _check_exact_resume(tmp_path, num_workers=0)


@pytest.mark.slow
def test_exact_resume_with_loader_workers(tmp_path):
    _check_exact_resume(tmp_path, num_workers=1)


def test_exact_resume_with_length_grouped_batches(tmp_path):
    _check_exact_resume(tmp_path, num_workers=0, length_pool_batches=2)


def test_length_grouping_needs_sample_lengths(tmp_path):
    with pytest.raises(TypeError, match="sample_lengths"):
        Trainer(make_model(0), run_config(tmp_path, length_pool_batches=2), Regression(16), None)


def test_best_checkpoint_follows_metric_direction(tmp_path):
    scores = [0.5, 0.9, 0.7, 0.8]

    def scripted(model, loader):
        return {"score": scores.pop(0) if scores else 0.0}

    for higher, best_epoch in ((True, 2), (False, 1)):
        scores[:] = [0.5, 0.9, 0.7, 0.8]
        out = tmp_path / f"higher_{higher}"
        cfg = run_config(out, metric="score", higher_is_better=higher, ema=False)
        result = Trainer(make_model(), cfg, Regression(16), Regression(8), evaluate_fn=scripted).fit()
        assert result["best_epoch"] == best_epoch and result["best_metric"] == [0.5, 0.9][best_epoch - 1]
        best = Checkpoint(out / "best")
        assert best.meta["epoch"] == best_epoch and best.training_state()["best_epoch"] == best_epoch
        assert Checkpoint(out / "last").meta["epoch"] == 4
        flags = [r["is_best"] for r in _log_records(out) if r["split"] == "val"]
        assert flags == ([True, True, False, False] if higher else [True, False, False, False])


def test_eval_every_and_default_evaluation(tmp_path):
    cfg = run_config(tmp_path, epochs=5, eval_every=2, metric="loss", ema=False)
    trainer = Trainer(make_model(), cfg, Regression(16), Regression(8))  # default: averaged forward outputs
    result = trainer.fit()
    val_epochs = [r["epoch"] for r in _log_records(tmp_path) if r["split"] == "val"]
    assert val_epochs == [2, 4, 5]  # every 2 epochs and after the last one
    assert set(result["eval"]) == {"loss", "mae"} and set(result["train"]) == {"loss", "mae", "grad_norm"}


def test_how_often_val_is_scored_does_not_change_training(tmp_path):
    """Evaluation that draws random numbers (a dropout model scored in train mode would; here evaluate_fn itself)
    leaves the training stream untouched: the same final weights whether val is scored every epoch or once."""
    def noisy_evaluate(model, loader):
        torch.rand(7)
        return evaluate_mse(model, loader)

    data = dict(train_data=Regression(48, seed=1), val_data=Regression(16, seed=2), evaluate_fn=noisy_evaluate)
    every = Trainer(make_model(0, dropout=0.2), run_config(tmp_path / "a", eval_every=1), **data)
    every.fit()
    last = Trainer(make_model(0, dropout=0.2), run_config(tmp_path / "b", eval_every=4), **data)
    last.fit()
    for name, value in every.model.state_dict().items():
        assert torch.equal(value, last.model.state_dict()[name]), name


class Crash(Exception):
    pass


@pytest.mark.parametrize("crash_in_epoch", [1, 2])
def test_an_epoch_redone_after_a_crash_is_logged_once(tmp_path, crash_in_epoch):
    """A crash after an epoch's train row was logged but before its checkpoint: the resumed run redoes the epoch, and
    metrics.jsonl ends as the uninterrupted run's (the crashed attempt's row is gone, not repeated)."""
    data = dict(train_data=Regression(48, seed=1), val_data=Regression(16, seed=2))

    def crash_at(epoch):
        def evaluate(model, loader):
            calls.append(1)
            if len(calls) == epoch:
                raise Crash(f"killed in epoch {epoch}, before its checkpoint")
            return evaluate_mse(model, loader)
        calls = []
        return evaluate

    with Trainer(make_model(0), run_config(tmp_path / "full", epochs=3), evaluate_fn=evaluate_mse, **data) as full:
        full.fit()
    cfg = run_config(tmp_path / "run", epochs=3)
    with Trainer(make_model(0), cfg, evaluate_fn=crash_at(crash_in_epoch), **data) as first, pytest.raises(Crash):
        first.fit()
    log = _log_records(tmp_path / "run")
    assert (log[-1]["split"], log[-1]["epoch"]) == ("train", crash_in_epoch)  # logged, then the crash
    with Trainer(make_model(0), cfg, evaluate_fn=evaluate_mse, resume=True, **data) as resumed:
        assert resumed.epoch == crash_in_epoch - 1
        resumed.fit()
    log = _log_records(tmp_path / "run")
    assert [(r["split"], r["epoch"]) for r in log] == [(s, e) for e in (1, 2, 3) for s in ("train", "val")]
    assert log == _log_records(tmp_path / "full")


def test_resume_errors(tmp_path):
    data = (Regression(16), Regression(8))
    with pytest.raises(FileNotFoundError, match="missing"):
        Trainer(make_model(), run_config(tmp_path / "x", metric="loss"), *data, resume=tmp_path / "missing")
    cfg = run_config(tmp_path / "y", metric="loss", epochs=1)
    fresh = Trainer(make_model(), cfg, *data, resume=True)  # nothing to resume from yet: a fresh run
    assert fresh.epoch == 0
    fresh.fit()
    fresh.close()
    with pytest.raises(CheckpointError) as info:
        Trainer(make_model(hidden=6), cfg, *data, resume=tmp_path / "y")
    message = str(info.value)
    assert "model.safetensors" in message and "net.0.weight (expected (6, 4), found (8, 4))" in message
    with pytest.raises(TypeError, match="map-style dataset"):
        Trainer(make_model(), cfg, torch.utils.data.DataLoader(data[0]))


def test_bad_forward_output_is_explained(tmp_path):
    class NoLoss(TinyRegressor):
        def forward(self, batch):
            return {"mse": super().forward(batch)["loss"]}

    with pytest.raises(TypeError, match=r"must return a dict with a 'loss' entry.*\['mse'\]"):
        Trainer(NoLoss(), run_config(tmp_path), Regression(16)).fit()


def test_bf16_autocast_and_warmup_in_epochs(tmp_path):
    seen = []

    class Recording(TinyRegressor):
        def forward(self, batch):
            seen.append(self.net[0](batch["x"]).dtype)
            return super().forward(batch)

    trainer = Trainer(Recording(), run_config(tmp_path, amp="bf16", epochs=1, warmup_epochs=0.5), Regression(16),
                      Regression(8), evaluate_fn=evaluate_mse)
    assert trainer.steps_per_epoch == 2 and trainer.schedule.warmup_steps == 1
    result = trainer.fit()
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)  # training and evaluation ran under autocast
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # weights stay float32
    assert torch.isfinite(torch.tensor(result["eval"]["mse"]))


def test_non_finite_loss_stops_with_a_clear_error(tmp_path):
    class Diverging(TinyRegressor):
        def forward(self, batch):
            out = super().forward(batch)
            return {**out, "loss": out["loss"] * float("nan")}

    with pytest.raises(FloatingPointError, match="non-finite loss nan at epoch 1, step 1"):
        Trainer(Diverging(), run_config(tmp_path), Regression(16)).fit()
    assert not (tmp_path / "last").exists()  # nothing was checkpointed from the diverged step


# --------------------------------------------------------------------------------------------------- DDP
DDP_OPTIONS = dict(epochs=3, ema=True, ema_decay=0.8, grad_clip=0.5, warmup_epochs=1, seed=5)


def _ddp_data():
    return LengthRegression(32, seed=11), Regression(12, seed=12)


def _ddp_worker(rank, port, out_dir, length_pool_batches=0):
    # The environment torchrun would set; the trainer reads it (init_distributed) like in a real launch.
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train, val = _ddp_data()
    cfg = run_config(out_dir, batch_size=2, length_pool_batches=length_pool_batches, **DDP_OPTIONS)
    with Trainer(make_model(0), cfg, train, val, evaluate_fn=evaluate_mse) as trainer:
        assert trainer.dist.world_size == 2 and trainer.global_batch_size == 4
        result = trainer.fit()
        # every rank reports what it got: the metrics are all-reduced / broadcast, so they must agree
        (Path(out_dir) / f"rank{trainer.dist.rank}.json").write_text(json.dumps(result))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("length_pool_batches", [0, 2])
def test_ddp_two_processes_match_one_process(tmp_path, length_pool_batches):
    train, val = _ddp_data()
    single = Trainer(make_model(0), run_config(tmp_path / "one", batch_size=4, length_pool_batches=length_pool_batches,
                                               **DDP_OPTIONS), train, val, evaluate_fn=evaluate_mse)
    want = single.fit()

    # Two CPU ranks on the gloo backend. Forked (not spawned) so they reuse this process's imports: a fresh
    # interpreter spends seconds importing torch. Launching with torchrun works the same way (see the __main__ block).
    ctx = multiprocessing.get_context("fork")
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(rank, port, str(tmp_path / "two"), length_pool_batches))
             for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    assert [proc.exitcode for proc in procs] == [0, 0]

    got = json.loads((tmp_path / "two" / "rank0.json").read_text())
    assert json.loads((tmp_path / "two" / "rank1.json").read_text()) == got
    assert (got["epoch"], got["step"]) == (want["epoch"], want["step"]) == (3, 24)
    for split in ("train", "eval"):
        assert got[split].keys() == want[split].keys()
        for key, value in want[split].items():
            assert abs(got[split][key] - value) < 1e-5, (split, key, got[split][key], value)
    two = make_model(99)
    Checkpoint(tmp_path / "two" / "last").load_model(two)
    for name, value in single.model.state_dict().items():
        assert torch.allclose(two.state_dict()[name], value, atol=1e-5), name
    records = _log_records(tmp_path / "two")
    assert len(records) == 6 and records[0]["global_batch_size"] == 4  # rank 0 logs alone, once per event


if __name__ == "__main__":  # manual check: torchrun --nproc_per_node 2 tests/test_engine_trainer.py OUT_DIR
    _ddp_worker(int(os.environ["RANK"]), int(os.environ["MASTER_PORT"]), sys.argv[1])
