"""Checkpoint error paths: format version, the ``.best.old`` fallback of a run, stale temp folders, corrupt state."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from vidmamba.engine.checkpoint import (FORMAT_VERSION, Checkpoint, CheckpointError, backup_path, run_checkpoint,
                                        save_checkpoint, sweep_stale_temps)


def _model(value: float) -> nn.Module:
    m = nn.Linear(3, 2)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m


def _dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_future_format_is_refused_with_one_clear_line(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _model(1.0))
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["format"] == FORMAT_VERSION
    (folder / "meta.json").write_text(json.dumps({**meta, "format": FORMAT_VERSION + 1}))
    with pytest.raises(CheckpointError) as exc:
        Checkpoint(folder)
    msg = str(exc.value)
    assert str(folder) in msg and f"has format {FORMAT_VERSION + 1}, newer than" in msg
    assert f"format {FORMAT_VERSION} or older" in msg and "upgrade vidmamba" in msg and "\n" not in msg
    (folder / "meta.json").write_text(json.dumps({**meta, "format": "1"}))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint metadata .*meta.json: 'format' is '1'"):
        Checkpoint(folder)
    del meta["format"]
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint metadata .*meta.json: KeyError\('format'\)"):
        Checkpoint(folder)


def test_run_without_best_reads_the_best_backup(tmp_path):
    run = tmp_path / "run"
    save_checkpoint(run / "best", _model(1.0), info={"epoch": 4})
    save_checkpoint(run / "last", _model(2.0), info={"epoch": 6})
    os.replace(run / "best", backup_path(run / "best"))     # a crash between the two renames of the next best save
    assert not (run / "best").exists()
    assert run_checkpoint(run) == run / ".best.old" and Checkpoint(run_checkpoint(run)).meta["epoch"] == 4
    save_checkpoint(run / "best", _model(3.0), info={"epoch": 7})     # the next save replaces it cleanly
    assert run_checkpoint(run) == run / "best" and not backup_path(run / "best").exists()


def test_stale_temp_folders_of_killed_writes_are_swept_at_the_next_save(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead, live = _dead_pid(), os.getppid()
    stale_dir = run / f".last.tmp-{dead}-0a1b2c3d"
    stale_dir.mkdir()
    (stale_dir / "model.safetensors").write_bytes(b"half")
    stale_file = run / f".best.tmp-{dead}-deadbeef"
    stale_file.write_bytes(b"x")
    keep = [run / f".last.tmp-{live}-0123abcd",          # a live writer's temp folder
            run / f".last.tmp-{dead}-xyz",               # not our pattern (8 hex digits)
            run / "notes.tmp-1-00000000",                # not hidden: not ours
            run / "metrics.jsonl", run / ".best.old"]
    for path in keep:
        path.mkdir() if path.name.startswith(".last") or path.name == ".best.old" else path.write_text("keep")
    save_checkpoint(run / "last", _model(1.0))
    assert not stale_dir.exists() and not stale_file.exists()
    assert all(p.exists() for p in keep)
    assert sweep_stale_temps(run) == [] and sweep_stale_temps(tmp_path / "missing") == []


def test_corrupt_training_state_gets_our_message(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _model(1.0), training_state={"epoch": 2})
    state = folder / "trainer_state.pt"
    state.write_bytes(b"\x00" * state.stat().st_size)         # same size: passes the size check, unreadable
    with pytest.raises(CheckpointError, match=f"{state} is corrupt or was modified: its sha256 differs"):
        Checkpoint(folder).training_state()
    meta = json.loads((folder / "meta.json").read_text())      # an older folder, without checksums: read, and named
    (folder / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    with pytest.raises(CheckpointError) as exc, pytest.warns(UserWarning, match="records no sha256 checksums"):
        Checkpoint(folder).training_state()
    msg = str(exc.value)
    assert msg.startswith(f"cannot read the training state {state}: the file is corrupt") and "\n" not in msg
    assert "weights_only" not in msg and exc.value.__cause__ is None


class _Opaque:
    """An object weights_only loading refuses (what PyTorch's own message suggests an unsafe load for)."""


def test_training_state_with_arbitrary_objects_is_refused_without_unsafe_advice(tmp_path):
    folder = save_checkpoint(tmp_path / "ck", _model(1.0), training_state={"epoch": 2, "x": _Opaque()})
    with pytest.raises(CheckpointError) as exc:
        Checkpoint(folder).training_state()
    msg = str(exc.value)
    assert "holds objects other than tensors and plain Python values" in msg
    assert "weights_only" not in msg and "\n" not in msg
