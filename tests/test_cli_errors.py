"""Every expected mistake on the command line is one line, ``vidmamba <command>: error: ...``, and exit status 2;
``--debug`` shows the traceback. Run through the installed ``vidmamba`` entry point (a subprocess) for the first
contact cases, in process (:func:`vidmamba.cli.main`, the same function) for the ones that need a trained run."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_data import data_section, make_snag

from vidmamba.cli import main

ENTRY_POINT = Path(sys.executable).parent / "vidmamba"


def run_cli(*argv, cwd=None, env=None):
    """(exit status, stderr lines) of the installed entry point."""
    proc = subprocess.run([str(ENTRY_POINT), *map(str, argv)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300)
    return proc.returncode, proc.stderr.strip().splitlines()


def one_line_error(argv, cwd=None, env=None) -> str:
    code, err = run_cli(*argv, cwd=cwd, env=env)
    assert code == 2 and len(err) == 1, (code, err)
    prefix = f"vidmamba {argv[0]}: error: "
    assert err[0].startswith(prefix), err[0]
    return err[0][len(prefix):]


@pytest.fixture(scope="module")
def nlq(tmp_path_factory):
    """A tiny trained HieraMamba run on SnAG data, and its config."""
    tmp = tmp_path_factory.mktemp("cli_nlq")
    root = make_snag(tmp, 6, 4)
    model = {"name": "hieramamba", "embd_dim": 16, "num_blocks": 3, "max_seq_len": 64, "d_state": 8, "headdim": 8,
             "text_embd_dim": 16, "text_layers": 1, "proj_dim": 8, "fusion_layers": 1}
    config = tmp / "nlq.json"  # JSON is YAML
    config.write_text(json.dumps({"task": "nlq", "model": model, "data": data_section(root),
                                  "train": {"epochs": 1, "batch_size": 2, "progress": False,
                                            "out_dir": str(tmp / "run")}}))
    assert main(["train", str(config)]) == 0
    return tmp, root, config


@pytest.mark.slow
def test_first_contact_mistakes_are_one_line(tmp_path):
    assert "config file not found: nope.yaml" in one_line_error(["train", "nope.yaml"], cwd=tmp_path)
    (tmp_path / "bad.yaml").write_text("task: bogus\nmodel: {name: mlvtg}\ndata: {}\ntrain: {}\n")
    assert f"{tmp_path / 'bad.yaml'}: unknown task 'bogus'; known tasks: action, anticipation, moment_retrieval, nlq, " \
           "qvhighlights, tvsum, youtube" == one_line_error(["train", tmp_path / "bad.yaml"])
    (tmp_path / "runs").mkdir()
    message = one_line_error(["predict", "--ckpt", "runs/mlvtg_nope", "--video-features", "a.npz",
                              "--query-features", "b.npz"], cwd=tmp_path)
    assert message == ("checkpoint runs/mlvtg_nope: no such folder (to fetch it from the Hugging Face hub, write "
                       "hf://runs/mlvtg_nope)")
    # a hub id, asked for: tried on the hub (offline here) and said so, in one line
    assert "hf://someone/nothing: fetching it from the Hugging Face hub failed" in one_line_error(
        ["predict", "--ckpt", "hf://someone/nothing", "--video-features", "a.npz", "--query-features", "b.npz"],
        cwd=tmp_path)
    assert "video missing.mp4: no such file" in one_line_error(["predict", "missing.mp4", "q", "--ckpt", "x"],
                                                               cwd=tmp_path)


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    for argv, env in ((["--debug", "train", "nope.yaml"], None), (["train", "nope.yaml", "--debug"], None),
                      (["train", "nope.yaml"], {"VIDMAMBA_DEBUG": "1"})):
        code, err = run_cli(*argv, cwd=tmp_path, env=env)
        assert code == 1 and err[0].startswith("Traceback") and err[-1].endswith("config file not found: nope.yaml")


@pytest.mark.slow
def test_a_checkpoint_of_another_task_is_named(grounding_run, nlq, cli_error):
    g_tmp, _, g_config = grounding_run
    n_tmp, _, n_config = nlq
    message = cli_error(["evaluate", n_config, "--ckpt", g_tmp / "run", "--out", n_tmp / "x"])
    assert f"{g_tmp / 'run'}: the checkpoint was trained for task 'qvhighlights' (mlvtg)" in message
    assert "use a config of task 'qvhighlights'" in message
    message = cli_error(["evaluate", g_config, "--ckpt", n_tmp / "run", "--out", g_tmp / "x"])
    assert "trained for task 'nlq' (hieramamba), which cannot be scored with task 'qvhighlights'" in message


@pytest.mark.slow
def test_export_of_a_long_video_checkpoint_says_what_to_use(nlq, tmp_path, cli_error):
    n_tmp, _, _ = nlq
    message = cli_error(["export", n_tmp / "run", "--out", tmp_path / "pre"])
    assert "a checkpoint of task 'nlq'" in message and "use the run folder itself" in message
    assert not (tmp_path / "pre").exists()


def test_damaged_checkpoints_are_named(grounding_run, tmp_path, cli_error):
    g_tmp, _, config = grounding_run
    run = tmp_path / "run"
    shutil.copytree(g_tmp / "run", run)
    meta = run / "best" / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 99}))
    message = cli_error(["evaluate", config, "--ckpt", run, "--out", tmp_path / "eval"])
    assert f"checkpoint {run / 'best'} has format 99, newer than this vidmamba" in message
    # a run whose best was being replaced when the process died: read from the backup, as promised
    shutil.rmtree(run / "best")
    shutil.copytree(g_tmp / "run" / "best", run / ".best.old")
    assert main(["evaluate", str(config), "--ckpt", str(run), "--out", str(tmp_path / "eval")]) == 0
    # an unreadable training state: our message, not PyTorch's advice to unpickle arbitrary code
    state = run / "last" / "trainer_state.pt"
    state.write_bytes(b"\0" * state.stat().st_size)
    message = cli_error(["train", config, "--set", f"train.out_dir={run}", "--set", "train.epochs=2", "--resume"])
    assert str(state) in message and "weights_only" not in message


def test_evaluate_submission_mistakes(grounding_run, tmp_path, cli_error):
    _, bench, _ = grounding_run
    gt = bench / "val.jsonl"
    rows = [{"qid": r["qid"], "pred_saliency_scores": [0.0] * int(r["duration"] // 2)}
            for r in map(json.loads, gt.read_text().splitlines())]
    sub = tmp_path / "hl_only.jsonl"
    sub.write_text("".join(json.dumps(r) + "\n" for r in rows))
    message = cli_error(["evaluate", "qvhighlights", "--submission", sub, "--gt", gt])
    assert str(sub) in message and "pred_relevant_windows" in message and "--highlights-only" in message
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "qvhighlights", "--submission", str(sub), "--gt", str(gt), "--highlights-only",
                 "--out", str(out)]) == 0
    assert "HL-min-VeryGood-mAP" in json.loads(out.read_text())["brief"]
    assert "is a folder" in cli_error(["evaluate", "qvhighlights", "--submission", sub, "--gt", gt, "--out",
                                       tmp_path])


def test_a_training_line_without_windows_is_named(grounding_run, tmp_path, cli_error):
    _, bench, config = grounding_run
    lines = (bench / "train.jsonl").read_text().splitlines()
    broken = json.loads(lines[3])
    del broken["relevant_windows"]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(lines[:3] + [json.dumps(broken)] + lines[4:]) + "\n")
    message = cli_error(["train", config, "--set", f"data.train={train}", "--set", f"train.out_dir={tmp_path}/r"])
    assert str(train) in message and "line 4" in message and "relevant_windows" in message


@pytest.mark.slow
def test_hieramamba_feature_file_with_the_wrong_npz_key_names_the_key(nlq, tmp_path, cli_error):
    n_tmp, root, _ = nlq
    vid = next(p.stem for p in (root / "video").glob("*.npy"))
    np.savez(tmp_path / "v.npz", feats=np.load(root / "video" / f"{vid}.npy"))
    text = next((root / "text").glob("*.npy"))
    message = cli_error(["predict", "--ckpt", n_tmp / "run", "--video-features", tmp_path / "v.npz",
                         "--query-features", text, "--fps", "30"])
    assert str(tmp_path / "v.npz") in message and "'features'" in message and "feats" in message
