"""The whole config is checked before any file is read or written (every section's keys and types, "did you mean" for
a typo, the key named in the message), the data before the first step, and ``vidmamba`` reports only the project's
own errors as one line: a bug keeps its traceback. Through the installed entry point for first contact, in process
(:func:`vidmamba.cli.main`) otherwise."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_data import write_umt_youtube

from vidmamba.cli import main
from vidmamba.errors import ConfigError, ConfigTypeError, VidmambaError
from vidmamba.tasks import get_task
from vidmamba.tasks.data_config import ActionData, GroundingData, SnagData

ENTRY_POINT = Path(sys.executable).parent / "vidmamba"
# a grounding config whose data files do not exist: any file access would be the error, not the config's mistake
CONFIG = {"task": "qvhighlights", "model": {"name": "mlvtg", "hidden_dim": 16, "num_layers": 1},
          "data": {"dataset": "qvhighlight", "feature_root": "nowhere", "train": "nowhere/train.jsonl",
                   "val": "nowhere/val.jsonl", "video_features": ["clip"], "text_features": "text"},
          "train": {"epochs": 1, "progress": False}}


def write_config(tmp_path, config=CONFIG) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def entry_point_error(argv, cwd) -> str:
    """The one stderr line of the installed ``vidmamba`` (exit status 2), without its prefix."""
    proc = subprocess.run([str(ENTRY_POINT), *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, lines)
    prefix = f"vidmamba {argv[0]}: error: "
    assert lines[0].startswith(prefix), lines[0]
    return lines[0][len(prefix):]


@pytest.mark.parametrize("override, expected", [
    ("model.hiden_dim=3", "model.hiden_dim: unknown key; did you mean 'hidden_dim'?"),
    ("model.hidden_dim=abc", "model.hidden_dim: expected int, got 'abc' (str)"),
    ("model.name=mlvgt", "model.name: unknown model 'mlvgt'; did you mean 'mlvtg'?"),
    ("model.hidden_dim=-4", "model: MLVTGConfig.hidden_dim must be >= 1, got -4"),  # the model config's own check
    ("data.normalize_vidoe=false", "data.normalize_vidoe: unknown key; did you mean 'normalize_video'?"),
    ("data.max_text_len=many", "data.max_text_len: expected int or null, got 'many' (str)"),
    ("data.video_features=clip", "data.video_features: expected a list of str or null, got 'clip' (str)"),
    ("train.lr=fast", "train.lr: expected float, got 'fast' (str)"),
    ("train.epoch=3", "train.epoch: unknown key; did you mean 'epochs'?"),
])
def test_config_mistakes_are_named_before_any_file_is_touched(tmp_path, cli_error, override, expected):
    config = write_config(tmp_path)
    out = tmp_path / "run"
    message = cli_error(["train", config, "--set", override, "--set", f"train.out_dir={out}"])
    assert message.startswith(f"{config}: ") and expected in message, message
    assert "nowhere" not in message  # the missing data files were never opened
    assert not out.exists()  # nothing written


def test_first_contact_config_mistakes_through_the_entry_point(tmp_path):
    config = write_config(tmp_path)
    assert "model.hiden_dim: unknown key; did you mean 'hidden_dim'?" in entry_point_error(
        ["train", config, "--set", "model.hiden_dim=3"], tmp_path)
    # a YAML error in an override: one line naming the override
    assert entry_point_error(["train", config, "--set", "train.lr=[1,2"], tmp_path).startswith(
        "override 'train.lr=[1,2': the value is not valid YAML")
    # a folder given as the config
    assert entry_point_error(["train", tmp_path], tmp_path) == f"config {tmp_path} is a folder; expected a YAML file " \
                                                               "such as configs/mlvtg_qvhighlights.yaml"


@pytest.mark.parametrize("section, options, match", [
    (GroundingData, {"normalize_video": "yes"}, "data.normalize_video: expected bool, got 'yes'"),
    (GroundingData, {"video_dims": [512, "x"]}, "data.video_dims: expected a list of int or null"),
    (SnagData, {"vid_strid": 2}, "data.vid_strid: unknown key; did you mean 'vid_stride'"),
    (SnagData, {"downsample": 1.5}, "data.downsample: expected int, got 1.5"),
    (ActionData, {"tau_a": "soon"}, "data.tau_a: expected float, got 'soon'"),
])
def test_data_sections_are_strict(section, options, match):
    with pytest.raises(ConfigTypeError, match=match):
        section.from_dict(options)


@pytest.mark.parametrize("options, match", [
    ({"negative_queries": -2}, r"data.negative_queries: must be >= 0 \(got -2\)"),
    ({"max_clips": 0}, r"data.max_clips: must be >= 1 or null \(got 0\)"),
    ({"vid_stride": 0}, r"data.vid_stride: must be >= 1 \(got 0\)"),
    ({"trunc_thresh": 1.5}, r"data.trunc_thresh: must be in \[0, 1\) \(official 0.5\) or null \(got 1.5\)"),
    ({"crop_ratio": [0.9, 0.5]}, r"data.crop_ratio: must be \[lo, hi\] with 0 < lo <= hi <= 1"),
])
def test_snag_data_ranges_are_config_errors(options, match):
    """Values the long-video readers would refuse are named as ``data.key`` when the config is checked."""
    with pytest.raises(ConfigError, match=match):
        SnagData.from_dict(options)
    edges = {"negative_queries": 0, "max_clips": 1, "vid_stride": 1, "trunc_thresh": 0.0, "crop_ratio": [1.0, 1.0]}
    assert SnagData.from_dict(edges).negative_queries == 0      # the bounds themselves are accepted


def test_data_defaults_are_filled_once_and_stored_in_the_checkpoint_config():
    """The completed section carries each default of the family's dataclass, so no reader repeats one."""
    grounding = get_task("qvhighlights").check_config(CONFIG)["data"]
    assert grounding["normalize_video"] is True and grounding["window_tol"] == 0.5 and "max_text_len" not in grounding
    snag = SnagData.complete({"clip_size": 32, "clip_stride": 8})
    assert (snag["downsample"], snag["vid_stride"], snag["train_split"], snag["clip_size"]) == (1, 1, "train", 32.0)
    assert ActionData.complete({})["action_mode"] == "outer"
    # explicit values win and keep their type after coercion (YAML ints for floats)
    assert SnagData.complete({"clip_size": 16, "downsample": 2.0})["downsample"] == 2


def test_youtube_feature_errors_come_before_the_first_step_or_any_write(tmp_path, cli_error):
    root = write_umt_youtube(tmp_path / "yt")
    bad = root / "video_features" / "a2nj7XCo2Rk_rgb.npy"  # the val video's rgb stream
    config = {"task": "youtube", "model": {"name": "mlvtg", "hidden_dim": 16, "num_layers": 1},
              "data": {"dataset": "youtube_umt", "feature_root": str(root), "domain": "dog", "text_dim": 6},
              "train": {"epochs": 1, "batch_size": 1, "progress": False, "out_dir": str(tmp_path / "run")}}
    path = write_config(tmp_path, config)
    cases = {"rows": np.zeros((5, 1024)), "width": np.zeros((3, 512)), "NaN": np.full((3, 1024), np.nan)}
    for kind, array in cases.items():
        np.save(bad, array)
        message = cli_error(["train", path])
        assert str(bad) in message, (kind, message)
        assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir()), kind
    bad.unlink()
    assert str(bad) in cli_error(["train", path])
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "last").exists()


def test_only_the_projects_errors_become_one_line(tmp_path, monkeypatch, capsys):
    """A bug (here a KeyError / TypeError raised inside a command) keeps its traceback; a VidmambaError is one line."""
    config = write_config(tmp_path)
    from vidmamba.tasks.grounding import GroundingTask

    for bug in (KeyError("video_dims"), TypeError("unsupported operand")):
        def broken(self, config, resume=None, bug=bug):
            raise bug

        monkeypatch.setattr(GroundingTask, "train", broken)
        with pytest.raises(type(bug)):
            main(["train", str(config)])

    def refused(self, config, resume=None):
        raise VidmambaError("the data says no")

    monkeypatch.setattr(GroundingTask, "train", refused)
    capsys.readouterr()
    assert main(["train", str(config)]) == 2
    assert capsys.readouterr().err.strip() == "vidmamba train: error: the data says no"


def test_config_errors_are_value_errors_and_type_errors():
    """Callers of the library may catch the built-in types: a wrong key or type is both, a bad value a ValueError."""
    assert issubclass(ConfigTypeError, TypeError) and issubclass(ConfigTypeError, ValueError)
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, VidmambaError)


def test_unreadable_checkpoint_and_a_file_as_checkpoint(tmp_path, grounding_run, cli_error):
    run = grounding_run[0] / "run"
    # a file where a checkpoint folder is expected
    (tmp_path / "model.bin").write_bytes(b"\0" * 8)
    message = cli_error(["predict", "--ckpt", tmp_path / "model.bin", "--video-features", "a.npz",
                         "--query-features", "b.npz"])
    assert message == f"{tmp_path / 'model.bin'} is a file; expected a checkpoint folder (a run folder, its best/ " \
                      "or last/, or a pretrained folder)"
    # a checkpoint whose weights cannot be read (a folder where the file should be)
    copy = shutil.copytree(run / "best", tmp_path / "ckpt")
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").mkdir()
    message = cli_error(["predict", "--ckpt", copy, "--video-features", "a.npz", "--query-features", "b.npz"])
    assert "model.safetensors" in message
