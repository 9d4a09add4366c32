"""Nothing lost: ``export --out`` replaces only what vidmamba wrote, one writer per run folder, checksummed weights,
hub ids only on request, a resumed run's log without repeated rows. Data-loss cases check that the victim files are
still there afterwards, byte for byte."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_data import GROUNDING_BENCH, TINY_MLVTG, tiny_mlvtg
from vidmamba.cli import main
from vidmamba.engine.checkpoint import Checkpoint, CheckpointError, save_checkpoint

ENTRY_POINT = Path(sys.executable).parent / "vidmamba"
EXPERIMENT = {"task": "qvhighlights", "model": TINY_MLVTG,
              "data": {"dataset": "qvhighlight", "feature_root": "f", "train": "t.jsonl", "val": "v.jsonl",
                       "video_features": ["clip", "slowfast"], "video_dims": [4, 2], "text_features": "clip_text",
                       "text_dim": 5, "max_text_len": 8},
              "train": {}}


def snapshot(root: Path) -> dict:
    """{relative path: bytes} of every file under ``root`` (and {'.': bytes} for a file)."""
    if root.is_file():
        return {".": root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def make_run(run: Path) -> Path:
    """A run folder as ``vidmamba train`` leaves it: best/ and last/ (with training state) and metrics.jsonl."""
    for name in ("best", "last"):
        save_checkpoint(run / name, tiny_mlvtg(), config={"trainer": {}, "experiment": EXPERIMENT},
                        training_state={"epoch": 1})
    (run / "metrics.jsonl").write_text('{"split": "train", "epoch": 1, "step": 3, "loss": 1.5}\n')
    return run


@pytest.fixture
def runs(tmp_path):
    """runs/a and runs/b (two runs side by side), and a folder of a user's files."""
    make_run(tmp_path / "runs" / "a")
    make_run(tmp_path / "runs" / "b")
    user = tmp_path / "mine"
    (user / "sub").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes\n")
    (user / "sub" / "data.bin").write_bytes(bytes(range(256)))
    return tmp_path


def test_export_refuses_a_folder_of_other_files_unless_forced(runs, cli_error):
    before = snapshot(runs / "mine")
    message = cli_error(["export", runs / "runs" / "a", "--out", runs / "mine"])
    assert message.startswith(f"{runs / 'mine'} exists and is not a vidmamba-pretrained checkpoint folder written by "
                              "vidmamba (no readable meta.json") and message.endswith("or pass --force to replace it")
    assert snapshot(runs / "mine") == before
    assert main(["export", str(runs / "runs" / "a"), "--out", str(runs / "mine"), "--force"]) == 0
    assert sorted(snapshot(runs / "mine")) == ["config.json", "meta.json", "model.safetensors"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_never_replaces_a_run_a_parent_of_runs_or_a_file(runs, cli_error, force):
    """Not even with --force: the run itself, its parent (siblings), its checkpoint folder, a file."""
    afile = runs / "model.bin"
    afile.write_bytes(b"\x00weights\xff")
    before = {p: snapshot(p) for p in (runs / "runs", afile)}
    run = runs / "runs" / "a"
    for out, says in ((run, f"{run} is or holds a training run ({run}/"),
                      (runs / "runs", f"{runs / 'runs'} is or holds a training run ("),
                      (run / "best", f"{run / 'best'} is or holds a training run ({run / 'best' / 'trainer_state.pt'})"),
                      (afile, f"{afile} is a file, not a folder; vidmamba replaces only folders it wrote")):
        assert cli_error(["export", run, "--out", out, *force]).startswith(says)
    assert {p: snapshot(p) for p in before} == before


def test_export_replaces_its_own_export_only(runs, cli_error):
    out = runs / "pre"
    assert main(["export", str(runs / "runs" / "a"), "--out", str(out)]) == 0
    assert main(["export", str(runs / "runs" / "b"), "--out", str(out)]) == 0  # ours, same kind: replaced
    (out / "README.md").write_text("my model card\n")  # a user's file inside: no longer only ours
    before = snapshot(out)
    message = cli_error(["export", runs / "runs" / "a", "--out", out])
    assert "it holds entries vidmamba did not write there: README.md" in message
    (out / "README.md").unlink()
    backup = runs / ".pre.old"  # a user's folder where the replace would park the old export
    backup.mkdir()
    (backup / "keep.txt").write_text("keep\n")
    message = cli_error(["export", runs / "runs" / "a", "--out", out, "--force"])
    assert message.startswith(f"{backup} exists and is not a vidmamba-pretrained") and message.endswith("move it away")
    assert snapshot(backup) == {"keep.txt": b"keep\n"}
    assert {k: v for k, v in snapshot(out).items()} == {k: v for k, v in before.items() if k != "README.md"}


@pytest.mark.slow
def test_export_refusal_through_the_installed_entry_point(runs):
    before = snapshot(runs / "runs")
    proc = subprocess.run([str(ENTRY_POINT), "export", "runs/a", "--out", "runs", "--force"], cwd=runs,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("vidmamba export: error: runs is or holds a training run")
    assert len(proc.stderr.strip().splitlines()) == 1 and snapshot(runs / "runs") == before


def tiny_config(tmp_path: Path, out: Path, epochs: int = 1) -> Path:
    """A config training a tiny MLVTG on a tiny synthetic benchmark into ``out``."""
    from vidmamba.data.synthetic import generate_grounding_benchmark

    bench = generate_grounding_benchmark(tmp_path / "bench", **GROUNDING_BENCH)
    config = tmp_path / "tiny.json"  # JSON is YAML
    config.write_text(json.dumps({
        "task": "qvhighlights", "model": {"name": "mlvtg", "hidden_dim": 16, "num_layers": 1},
        "data": {"dataset": "qvhighlight", "feature_root": str(bench), "train": str(bench / "train.jsonl"),
                 "val": str(bench / "val.jsonl"), "video_features": ["video"], "text_features": "text"},
        "train": {"epochs": epochs, "batch_size": 8, "progress": False, "out_dir": str(out)}}))
    return config


def test_training_refuses_a_users_folder_named_last_before_the_first_step(tmp_path, cli_error):
    out = tmp_path / "out"
    (out / "last").mkdir(parents=True)
    (out / "last" / "todo.txt").write_text("mine\n")
    message = cli_error(["train", tiny_config(tmp_path, out)])
    assert message == (f"{out / 'last'} exists and is not a training checkpoint folder written by vidmamba (no "
                       "readable meta.json of a vidmamba checkpoint); choose another output folder")
    assert snapshot(out / "last") == {"todo.txt": b"mine\n"}


def _wait_for(path: Path, proc, timeout=240.0):
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


@pytest.mark.slow
def test_one_writer_per_run_folder_even_after_kill_9(tmp_path):
    """Two real `vidmamba train` processes into one out_dir: the second gets one line and exit 2 and changes
    nothing; the lock dies with its holder (kill -9), so a resume afterwards goes ahead."""
    import signal

    out = tmp_path / "run"
    config = tiny_config(tmp_path, out, epochs=1000)
    first = subprocess.Popen([str(ENTRY_POINT), "train", str(config)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        _wait_for(out / "last" / "meta.json", first)  # an epoch is done: the first run holds the lock
        first.send_signal(signal.SIGSTOP)  # frozen, so the folder cannot change under the comparison
        before = snapshot(out)
        second = subprocess.run([str(ENTRY_POINT), "train", str(config)], capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"vidmamba train: error: {out} is being written by another training (pid {first.pid}, lock "
            f"{out / '.train.lock'}); wait for it to end, or choose another train.out_dir"]
        assert snapshot(out) == before
    finally:
        first.kill()  # SIGKILL: no clean-up runs in the first process
        first.wait()
    done = Checkpoint(out / "last").meta["epoch"]  # (its .old backup if the kill fell between two renames)
    resumed = subprocess.run([str(ENTRY_POINT), "train", str(config), "--resume", "--set",
                              f"train.epochs={done + 1}"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert Checkpoint(out / "last").meta["epoch"] == done + 1


def test_weights_carry_a_sha256_and_a_flipped_byte_is_named(runs, cli_error):
    import hashlib

    from vidmamba.tasks.pretrained import from_pretrained

    run, pre = runs / "runs" / "a", runs / "pre"
    assert main(["export", str(run), "--out", str(pre)]) == 0
    for folder in (run / "best", run / "last", pre):
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["sha256"] == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                                  for name in meta["files"]}

    def flip_a_bit(folder: Path) -> str:
        """Flip a bit of the last tensor's data (same size, still a valid safetensors file); the expected error."""
        weights = folder / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0x10
        weights.write_bytes(bytes(data))
        return f"{weights} is corrupt or was modified: its sha256 differs from the one recorded in {folder / 'meta.json'}"

    expected = flip_a_bit(run / "best")
    assert cli_error(["export", run, "--out", runs / "pre2"]) == expected
    assert not (runs / "pre2").exists()
    expected = flip_a_bit(pre)
    with pytest.raises(CheckpointError) as info:
        from_pretrained(pre)
    assert str(info.value) == expected
    # a folder from before checksums (sizes only) still loads, and says that its files are checked by size only
    meta = json.loads((pre / "meta.json").read_text())
    del meta["sha256"]
    (pre / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match=f"checkpoint {pre} records no sha256 checksums .* checked by size only"):
        from_pretrained(pre)


def test_hub_ids_only_when_asked_for_ckpt(runs, monkeypatch, cli_error):
    """--ckpt: hf://owner/name[@revision] goes to the hub (pinned); a plain owner/name is a local path, and a missing
    one is 'no such folder' without asking the hub."""
    import numpy as np

    hub = pytest.importorskip("huggingface_hub")
    pre = runs / "pre"
    assert main(["export", str(runs / "runs" / "a"), "--out", str(pre)]) == 0
    calls = []
    monkeypatch.setattr(hub, "snapshot_download",
                        lambda repo_id, revision=None, **kw: calls.append((repo_id, revision)) or str(pre))
    rng = np.random.default_rng(0)
    files = []
    for name, shape in (("clip.npz", (9, 4)), ("slowfast.npz", (9, 2)), ("q.npz", (3, 5))):
        np.savez(runs / name, **{"last_hidden_state" if name == "q.npz" else "features":
                                 rng.standard_normal(shape).astype(np.float32)})
        files.append(str(runs / name))
    argv = ["--video-features", *files[:2], "--query-features", files[2]]
    assert main(["predict", "--ckpt", "hf://someone/tiny@v2", *argv]) == 0
    assert calls == [("someone/tiny", "v2")]
    monkeypatch.chdir(runs)  # runs/ exists here, runs/x does not: a mistyped run, never a hub download
    for ckpt in ("someone/tiny", "runs/x"):
        assert cli_error(["predict", "--ckpt", ckpt, *argv]) == \
            f"checkpoint {ckpt}: no such folder (to fetch it from the Hugging Face hub, write hf://{ckpt})"
    assert cli_error(["predict", "--ckpt", "hf://someone", *argv]) == \
        "hub id 'hf://someone': expected hf://owner/name or hf://owner/name@revision"
    assert calls == [("someone/tiny", "v2")]


def test_hub_ids_only_when_asked_for_the_encoder_and_the_llm(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    hub = pytest.importorskip("huggingface_hub")
    from vidmamba.models.llm_refiner import LLMRefiner
    from vidmamba.video import encoders
    from vidmamba.video.encoders import ClipEncoder, encoder_source

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"^encoder openai/clip-vit-base-patch32: no such folder \(to fetch "
                                                r"it from the Hugging Face hub, write hf://openai/clip-vit-base-patch32"):
        ClipEncoder("openai/clip-vit-base-patch32")
    asked = []
    monkeypatch.setattr(encoders, "hub_reachable", lambda: False)
    monkeypatch.setattr(hub, "try_to_load_from_cache",
                        lambda repo, name, revision=None, **kw: asked.append((repo, name, revision)) or "/cached")
    assert encoder_source("hf://openai/clip-vit-base-patch32@3d74acf") == \
        ("openai/clip-vit-base-patch32", True, "3d74acf")
    assert asked == [("openai/clip-vit-base-patch32", "config.json", "3d74acf")]

    torch.manual_seed(0)
    lm = transformers.MambaForCausalLM(transformers.MambaConfig(vocab_size=16, hidden_size=8, state_size=4,
                                                                num_hidden_layers=2, expand=2, conv_kernel=4))
    lm.save_pretrained(tmp_path / "lm", safe_serialization=True)
    fetched = []

    def download(repo, filename, revision=None):  # the hub's behaviour: the cached file, or an error when absent
        fetched.append((repo, filename, revision))
        if not (tmp_path / "lm" / filename).is_file():
            raise FileNotFoundError(f"{repo} has no {filename}")
        return str(tmp_path / "lm" / filename)

    monkeypatch.setattr(hub, "hf_hub_download", download)
    with pytest.raises(FileNotFoundError, match=r"^LLM folder someone/tiny-lm: no such folder \(to fetch it from "
                                                r"the Hugging Face hub, write hf://someone/tiny-lm\)$"):
        LLMRefiner(8, "someone/tiny-lm", layer=1)
    assert fetched == []
    refiner = LLMRefiner(8, "hf://someone/tiny-lm@main", layer=1)
    assert {(repo, rev) for repo, _, rev in fetched} == {("someone/tiny-lm", "main")}
    assert "config.json" in {name for _, name, _ in fetched}
    expected = lm.backbone.layers[1].state_dict()
    assert all(torch.equal(refiner.layer.state_dict()[k], v) for k, v in expected.items())


def test_clip_load_prints_no_torchvision_warning(tmp_path):
    """`vidmamba extract` loads CLIP: without torchvision, transformers used to warn on every load."""
    pytest.importorskip("av")
    pytest.importorskip("transformers")
    from vidmamba.video.encoders import save_tiny_clip
    from vidmamba.video.synthetic import write_video

    clip = save_tiny_clip(tmp_path / "clip")
    video = write_video(tmp_path / "v.mp4", [i / 2 for i in range(8)])
    proc = subprocess.run([str(ENTRY_POINT), "extract", str(video), "--out", str(tmp_path / "feats"), "--model",
                           str(clip), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and (tmp_path / "feats" / "clip_features" / "v.npz").is_file(), proc.stderr
    assert proc.stderr == ""


def test_serve_errors_name_the_upload_not_its_temp_path(tmp_path):
    pytest.importorskip("gradio")
    pytest.importorskip("av")
    import socket

    from gradio_client import Client, handle_file

    from vidmamba.serve import serve
    from vidmamba.video.decode import VideoDecodeError
    from vidmamba.video.synthetic import write_video

    seen = []

    def predict_fn(video, queries):  # as a video that fails to decode: the error names the file it was given
        seen.append(video)
        raise VideoDecodeError(video, "cannot decode frame 3")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve(predict_fn, port=port, prevent_thread_lock=True, quiet=True)
    try:
        video = write_video(tmp_path / "holiday.mp4", [i / 2 for i in range(8)])
        with pytest.raises(Exception) as info:
            Client(app.local_url, verbose=False).predict(handle_file(str(video)), "", "a dog",
                                                         api_name="/analyse")
    finally:
        app.close()
    [upload] = seen
    message = str(info.value)
    assert Path(upload).parent != video.parent  # gradio's copy, in its temp folder
    assert "holiday.mp4: cannot decode frame 3" in message and str(Path(upload).parent) not in message
