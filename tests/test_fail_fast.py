"""Fail fast, in one line, before any slow step (model loads, network): a missing optional dependency names its extra,
a non-video file or a folder is refused before the encoder loads, a missing encoder folder says so, an offline hub id
that is not cached names ``--encoder PATH`` without the hub client's retries, and ``serve`` checks its address and
folders first. Every case runs the installed ``vidmamba`` entry point."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ENTRY_POINT = Path(sys.executable).parent / "vidmamba"


def run(argv, cwd, env=None, pythonpath=None):
    """(exit status, stderr lines, seconds) of the installed entry point, offline unless ``env`` says otherwise."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.run([str(ENTRY_POINT), *map(str, argv)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)
    return proc.returncode, proc.stderr.strip().splitlines(), time.perf_counter() - t0


def one_line(argv, cwd, **kw) -> str:
    code, err, _ = run(argv, cwd, **kw)
    assert code == 2 and len(err) == 1, (code, err)
    prefix = f"vidmamba {argv[0]}: error: "
    assert err[0].startswith(prefix), err[0]
    return err[0][len(prefix):]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hide_module(root: Path, name: str) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import name`` fail as in an install without it."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(f"raise ImportError(\"No module named '{name}'\")\n")
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    pytest.importorskip("av")
    from vidmamba.video.synthetic import write_video

    return write_video(tmp_path_factory.mktemp("ff") / "v.mp4", [i / 4 for i in range(8)], height=32, width=32)


@pytest.mark.parametrize("module, extra, argv", [
    ("av", "video", ["predict", "{video}", "a dog", "--ckpt", "nowhere"]),
    ("transformers", "video", ["predict", "{video}", "a dog", "--ckpt", "nowhere"]),
    ("av", "video", ["extract", "{video}", "--out", "feats"]),
    ("gradio", "demo", ["serve", "--ckpt", "nowhere", "--port", "{port}"]),
    ("av", "video", ["serve", "--ckpt", "nowhere", "--port", "{port}"]),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, video, module, extra, argv):
    argv = [a.format(video=video, port=free_port()) for a in argv]
    message = one_line(argv, tmp_path, pythonpath=hide_module(tmp_path / "hidden", module))
    assert f"needs {module}, which is not installed: pip install 'vidmamba[{extra}]'" in message
    assert not (tmp_path / "feats").exists()


def test_a_non_video_file_or_a_folder_is_refused_before_the_encoder_loads(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    # the encoder does not exist either: the video is checked first, so its message is the one
    message = one_line(["predict", notes, "a dog", "--ckpt", "nowhere", "--encoder", tmp_path / "no_clip"], tmp_path)
    assert message.startswith(f"{notes}: cannot open the file as a video"), message
    assert one_line(["predict", tmp_path, "a dog", "--ckpt", "nowhere"], tmp_path) == \
        f"video {tmp_path} is a folder; expected a video file"


def test_a_missing_encoder_folder_says_so(tmp_path, video):
    for encoder in ("./models/clip", str(tmp_path / "clip"), "clip-vit"):
        message = one_line(["predict", video, "a dog", "--ckpt", "nowhere", "--encoder", encoder], tmp_path)
        assert message == f"encoder {encoder}: no such folder; pass --encoder PATH, a CLIP folder written by " \
                          "save_pretrained", message
    (tmp_path / "empty").mkdir()
    assert "not a CLIP model folder" in one_line(["extract", video, "--out", tmp_path / "f", "--model",
                                                  tmp_path / "empty"], tmp_path)


@pytest.mark.parametrize("env", [{"HF_HUB_OFFLINE": "1"},                       # told offline
                                 {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}])  # hub unreachable
def test_offline_default_clip_fails_fast_and_names_the_offline_route(tmp_path, video, env):
    """The default CLIP id, not in an empty Hugging Face cache, with no hub: one line in seconds, not the hub
    client's retries (~32 s), naming --encoder PATH."""
    code, err, seconds = run(["predict", video, "a dog", "--ckpt", "nowhere"], tmp_path,
                             env={**env, "HF_HOME": str(tmp_path / "hf")})
    assert code == 2 and len(err) == 1, err
    assert "encoder 'hf://openai/clip-vit-base-patch32' is not in the local Hugging Face cache and the hub cannot be " \
           "reached (offline); pass --encoder PATH" in err[0]
    assert seconds < 20, seconds  # python + torch import on a busy 2-core machine; the retries alone took ~32 s


def test_a_cached_hub_encoder_loads_offline(tmp_path, monkeypatch):
    """A hub id that is in the local cache is loaded with local files only when the hub cannot be reached."""
    from vidmamba.video import encoders

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoders.hub_reachable.cache_clear()
    cache = tmp_path / "hub" / "models--someone--tiny-clip"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("abc")
    (cache / "snapshots" / "abc").mkdir(parents=True)
    (cache / "snapshots" / "abc" / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert encoders.encoder_source("hf://someone/tiny-clip") == ("someone/tiny-clip", True, None)
    with pytest.raises(FileNotFoundError, match="not in the local Hugging Face cache"):
        encoders.encoder_source("hf://someone/other-clip")
    encoders.hub_reachable.cache_clear()


@pytest.mark.parametrize("args, expected", [
    (["--host", "999.1.1.1"], "--host 999.1.1.1: not a valid IPv4 address"),
    (["--port", "99999"], "--port 99999: expected a port number in 1..65535"),
    (["--port", "0"], "--port 0: expected a port number in 1..65535"),
    (["--host", "203.0.113.7"], "cannot listen on 203.0.113.7:7860: Cannot assign requested address"),
    (["--video-dir", "/nonexistent"], "--video-dir /nonexistent: no such folder"),
])
def test_serve_checks_its_address_and_folder_before_loading(tmp_path, args, expected):
    # --ckpt does not exist: each message proves its check ran before the checkpoint was looked at
    message = one_line(["serve", "--ckpt", "nowhere", *args], tmp_path)
    assert message.startswith(expected), message
