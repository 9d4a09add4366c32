"""MambaVL train / evaluate through the CLI on tiny EK100-format data (recognition and anticipation), resume, errors."""
import csv
import re
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidmamba.cli import main
from vidmamba.data.ek100 import read_ek100_annotations
from vidmamba.data.synthetic_action import generate_action_benchmark
from vidmamba.tasks import action, experiment_of, get_task
from vidmamba.engine.checkpoint import Checkpoint
from vidmamba.models import create_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = dict(num_train=48, num_val=16, num_verbs=4, num_groups=2, group_size=2, min_frames=4, max_frames=8,
            video_dim=12, latent_dim=6, hidden_dim=12, segments_per_video=8, seed=1)
SMALL_MODEL = ["--set", "model.d_model=16", "--set", "data.text_encoder={kind: words, dim: 8}",
               "--set", "train.amp=none", "--set", "train.batch_size=8", "--set", "train.progress=false",
               "--set", "train.tensorboard=false", "--set", "train.warmup_epochs=0"]


def _files(root: Path) -> list[str]:
    return ["--set", f"data.train={root / 'EPIC_100_train.csv'}",
            "--set", f"data.val={root / 'EPIC_100_validation.csv'}",
            "--set", f"data.verb_classes={root / 'EPIC_100_verb_classes.csv'}",
            "--set", f"data.noun_classes={root / 'EPIC_100_noun_classes.csv'}",
            "--set", f"data.features={root / 'features'}"]


def _train_argv(config: str, args: list[str], out: Path, epochs: int = 2) -> list[str]:
    return ["train", str(CONFIGS / config), *args, *SMALL_MODEL, "--set", f"train.epochs={epochs}",
            "--set", f"train.out_dir={out}"]


def _train(config: str, args: list[str], out: Path, epochs: int = 2, resume: bool = False) -> int:
    return main(_train_argv(config, args, out, epochs) + (["--resume"] if resume else []))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return generate_action_benchmark(tmp_path_factory.mktemp("ek") / "bench", **TINY)


@pytest.fixture(scope="module")
def recognition_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "run"
    assert _train("mambavl_ek100.yaml", _files(bench), out) == 0
    return out


def test_recognition_train_selects_by_action_top1_and_stores_resolved_config(recognition_run, bench):
    log = [json.loads(line) for line in (recognition_run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in log if r["split"] == "val"]
    assert [r["epoch"] for r in evals] == [1, 2]
    best = max(evals, key=lambda r: r["action_top1"])  # first of equals, as the trainer keeps the first best
    assert Checkpoint(recognition_run / "best").meta["epoch"] == best["epoch"]
    stored = experiment_of(Checkpoint(recognition_run / "last"))
    assert stored["train"]["metric"] == "action_top1"
    model = stored["model"]
    assert (model["video_dim"], model["text_dim"], model["num_verbs"], model["num_nouns"]) == (12, 8, 4, 4)
    assert "<mask>" in stored["data"]["vocab"]


def test_evaluate_writes_top5_predictions_consistent_with_metrics(recognition_run, bench, tmp_path):
    args = ["evaluate", str(CONFIGS / "mambavl_ek100.yaml"), "--ckpt", str(recognition_run), "--out", str(tmp_path),
            *_files(bench)]
    assert main(args) == 0
    rows = [json.loads(line) for line in (tmp_path / "val_preds.jsonl").read_text().splitlines()]
    actions = read_ek100_annotations(bench / "EPIC_100_validation.csv")
    assert [r["narration_id"] for r in rows] == [a.narration_id for a in actions]
    for r in rows:
        for part, n in (("verb", 4), ("noun", 4)):
            scores = r[part]["scores"]
            assert len(r[part]["classes"]) == min(5, n) and sorted(set(r[part]["classes"])) == list(range(n))
            assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-4  # all classes: softmax
    metrics = json.loads((tmp_path / "val_metrics.json").read_text())
    verb_hit = np.mean([r["verb"]["classes"][0] == a.verb_class for r, a in zip(rows, actions)])
    noun_hit = np.mean([r["noun"]["classes"][0] == a.noun_class for r, a in zip(rows, actions)])
    both = np.mean([r["verb"]["classes"][0] == a.verb_class and r["noun"]["classes"][0] == a.noun_class
                    for r, a in zip(rows, actions)])
    assert metrics["verb"]["top1"] == pytest.approx(100 * verb_hit, abs=0.01)
    assert metrics["noun"]["top1"] == pytest.approx(100 * noun_hit, abs=0.01)
    assert metrics["brief"]["action_top1"] == pytest.approx(100 * both, abs=0.01)
    # evaluation questions are fixed per narration id: a second evaluation gives the same file
    first = (tmp_path / "val_preds.jsonl").read_bytes()
    assert main(args) == 0 and (tmp_path / "val_preds.jsonl").read_bytes() == first


def test_evaluate_an_unlabelled_split_writes_predictions_only(recognition_run, bench, tmp_path):
    timing = ["narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp", "start_frame",
              "stop_frame"]
    with open(bench / "EPIC_100_validation.csv", newline="") as f:
        rows = [[r[c] for c in timing] for r in csv.DictReader(f)]
    with open(tmp_path / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([timing, *rows])
    assert main(["evaluate", str(CONFIGS / "mambavl_ek100.yaml"), "--ckpt", str(recognition_run), "--split", "test",
                 "--out", str(tmp_path), *_files(bench), "--set", f"data.test={tmp_path / 'test.csv'}"]) == 0
    preds = (tmp_path / "test_preds.jsonl").read_text().splitlines()
    assert [json.loads(line)["narration_id"] for line in preds] == [r[0] for r in rows]
    assert json.loads((tmp_path / "test_metrics.json").read_text()) == {}


def test_training_questions_vary_evaluation_questions_do_not(bench, recognition_run):
    config = experiment_of(Checkpoint(recognition_run / "last"))
    train_ds = action.build_dataset(config["data"], "train", "action", train=True)
    val_ds = action.build_dataset(config["data"], "train", "action")
    torch.manual_seed(0)
    drawn = {(train_ds[0]["verb_question_text"], train_ds[0]["noun_question_text"]) for _ in range(30)}
    fixed = {(val_ds[0]["verb_question_text"], val_ds[0]["noun_question_text"]) for _ in range(5)}
    assert len(drawn) > 3 and len(fixed) == 1


def test_resume_continues_exactly(bench, tmp_path):
    """1 epoch, then --resume to 2 epochs == 2 epochs straight (constant lr: the schedule does not depend on epochs);
    training questions are random, so this also proves their RNG is restored."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    files = [*_files(bench), "--set", "train.schedule=constant"]
    assert _train("mambavl_ek100.yaml", files, straight, epochs=2) == 0
    assert _train("mambavl_ek100.yaml", files, resumed, epochs=1) == 0
    with pytest.warns(UserWarning, match="changed trainer options"):  # epochs 1 -> 2 is a changed option
        assert _train("mambavl_ek100.yaml", files, resumed, epochs=2, resume=True) == 0
    ta = load_file(Checkpoint(straight / "last").path / "model.safetensors")
    tb = load_file(Checkpoint(resumed / "last").path / "model.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        torch.testing.assert_close(ta[k], tb[k], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------- errors
def _copy_bench(bench: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(bench, dst)
    return dst


def test_class_id_out_of_range_fails_before_any_checkpoint(bench, tmp_path, cli_error):
    root = _copy_bench(bench, tmp_path / "data")
    path = root / "EPIC_100_train.csv"
    lines = path.read_text().splitlines()
    head, first = lines[0].split(","), next(csv.reader([lines[3]]))
    first[head.index("verb_class")] = "97"
    lines[3] = ",".join(f'"{c}"' if "," in c else c for c in first)
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    assert re.search(r"EPIC_100_train\.csv.*line 4.*verb_class.*class id out of range", cli_error(_train_argv("mambavl_ek100.yaml", _files(root), out)))
    assert not (out / "last").exists() and not (out / "best").exists()


def test_missing_feature_file_fails_before_any_checkpoint(bench, tmp_path, cli_error):
    root = _copy_bench(bench, tmp_path / "data")
    nid = read_ek100_annotations(root / "EPIC_100_validation.csv")[-1].narration_id
    (root / "features" / f"{nid}.npy").unlink()
    out = tmp_path / "run"
    assert re.search(f"feature file not found.*{nid}", cli_error(_train_argv("mambavl_ek100.yaml", _files(root), out)))
    assert not (out / "last").exists() and not (out / "best").exists()


def test_unknown_data_key_is_named(bench, tmp_path, cli_error):
    assert re.search("data.featurs: unknown key; did you mean 'features'", cli_error(_train_argv("mambavl_ek100.yaml", [*_files(bench), "--set", "data.featurs=x"], tmp_path / "run")))


# ---------------------------------------------------------------------------------------------------- anticipation
def _anticipation_data(root: Path) -> Path:
    """4 videos of 40 rows at 2 fps (20 s), one action every 3 s from 0.5 s; 3 verbs, 4 nouns."""
    rng = np.random.default_rng(0)
    (root / "features").mkdir(parents=True)
    for name, keys in (("verb", ["take", "put", "open"]), ("noun", ["cup", "pan", "tap", "knife"])):
        with open(root / f"EPIC_100_{name}_classes.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "key", "instances", "category"])
            w.writerows([i, k, repr([k]), "c"] for i, k in enumerate(keys))
    header = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
              "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class",
              "all_nouns", "all_noun_classes"]
    for split, videos in (("train", ["P01_01", "P01_02", "P01_03"]), ("validation", ["P02_01"])):
        rows = []
        for vid in videos:
            np.save(root / "features" / f"{vid}.npy", rng.standard_normal((40, 10)).astype(np.float32))
            for j in range(6):
                s = 0.5 + 3 * j
                v, n = int(rng.integers(3)), int(rng.integers(4))
                ts = lambda x: f"00:00:{x:06.3f}"  # noqa: E731
                rows.append([f"{vid}_{j}", vid[:3], vid, ts(s), ts(s), ts(s + 2), int(s * 60), int((s + 2) * 60),
                             "x", "v", v, "n", n, "['n']", f"[{n}]"])
        with open(root / f"EPIC_100_{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    return root


def test_anticipation_train_and_evaluate(tmp_path):
    root = _anticipation_data(tmp_path / "data")
    predicted = {"P02_01_1": [2, 3], "P01_01_2": [0, 1]}
    (root / "predicted.json").write_text(json.dumps(predicted))
    files = [*_files(root), "--set", "data.fps=2.0", "--set", "data.obs_seconds=2.0",
             "--set", f"data.predicted_actions={root / 'predicted.json'}"]
    out = tmp_path / "run"
    assert _train("mambavl_ek100_anticipation.yaml", files, out, epochs=1) == 0
    assert experiment_of(Checkpoint(out / "last"))["train"]["metric"] == "action_mean_top5_recall"
    assert main(["evaluate", str(CONFIGS / "mambavl_ek100_anticipation.yaml"), "--ckpt", str(out),
                 "--out", str(tmp_path / "ev"), *files]) == 0
    rows = [json.loads(line) for line in (tmp_path / "ev" / "val_preds.jsonl").read_text().splitlines()]
    # the first action (start 0.5 s) has nothing observable before start - tau_a: dropped
    assert [r["narration_id"] for r in rows] == [f"P02_01_{j}" for j in range(1, 6)]
    metrics = json.loads((tmp_path / "ev" / "val_metrics.json").read_text())
    assert set(metrics) == {"verb", "noun", "action", "brief"} and "action_mean_top5_recall" in metrics["brief"]
    # questions: the predicted action's for listed ids, the generic ones otherwise
    config = experiment_of(Checkpoint(out / "last"))
    ds = action.build_dataset(config["data"], "val", "anticipation")
    texts = {ds[i]["narration_id"]: ds[i]["noun_question_text"] for i in range(len(ds))}
    assert texts["P02_01_2"] == texts["P02_01_3"] == "what is the object in the video ?"
    assert "<mask>" in texts["P02_01_1"] or texts["P02_01_1"] == "what is the object in the video ?"


def test_bad_predicted_actions_file_is_named(tmp_path, cli_error):
    root = _anticipation_data(tmp_path / "data")
    (root / "predicted.json").write_text(json.dumps({"P02_01_1": [7, 0]}))
    files = [*_files(root), "--set", "data.fps=2.0", "--set", "data.obs_seconds=2.0",
             "--set", f"data.predicted_actions={root / 'predicted.json'}"]
    assert re.search(r"predicted\.json.*P02_01_1.*verb < 3", cli_error(_train_argv("mambavl_ek100_anticipation.yaml", files, tmp_path / "run", epochs=1)))


# ------------------------------------------------------------------------------------------------------- synthetic
def test_synthetic_config_trains_and_evaluates_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path / "cache"))
    synth = "data.synthetic={" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}"
    out = tmp_path / "run"
    assert _train("mambavl_synthetic.yaml", ["--set", synth], out, epochs=1) == 0
    assert len(list((tmp_path / "cache" / "synthetic_action").iterdir())) == 1
    assert main(["evaluate", str(CONFIGS / "mambavl_synthetic.yaml"), "--ckpt", str(out), "--set", synth,
                 "--out", str(tmp_path / "ev")]) == 0
    assert len((tmp_path / "ev" / "val_preds.jsonl").read_text().splitlines()) == TINY["num_val"]
    # the context (the place) reaches the questions; the label words do not
    data = experiment_of(Checkpoint(out / "last"))["data"]
    sample = action.build_dataset(data, "val", "action")[0]
    assert sample["verb_question_text"].endswith(sample["narration"].split(" ", 2)[2])
    assert sample["narration"].split()[1] not in sample["noun_question_text"].split()


@pytest.mark.parametrize("name", ["mambavl_ek100", "mambavl_ek100_anticipation", "mambavl_synthetic"])
def test_shipped_configs_are_valid(name):
    from vidmamba.config import load_config
    from vidmamba.engine import TrainerConfig

    config = load_config(CONFIGS / f"{name}.yaml")
    task = get_task(config["task"])
    assert task.family == "action"
    task.check_config(config)  # model, data and train sections: keys and types
    TrainerConfig.from_dict(config["train"])
    model = create_model(**{**config["model"], "video_dim": 8, "text_dim": 8, "d_model": 16})
    assert model.cfg.fusion == "shared_a"


def test_hf_text_encoder_from_a_local_folder(bench, tmp_path):
    """The EK100 config's default text encoder (a transformers checkpoint folder), here a tiny random one."""
    from tiny_data import tiny_hf_checkpoint

    action_words = action.question_generator(action.data_options(
        {"train": "-", "verb_classes": bench / "EPIC_100_verb_classes.csv",
         "noun_classes": bench / "EPIC_100_noun_classes.csv", "features": "-"})).vocabulary_words()
    tiny_hf_checkpoint(tmp_path / "hf", action_words)
    argv = ["train", str(CONFIGS / "mambavl_ek100.yaml"), *_files(bench), *SMALL_MODEL,
            "--set", f"data.text_encoder={{kind: hf, path: {tmp_path / 'hf'}, max_length: 12}}",
            "--set", "train.epochs=1", "--set", f"train.out_dir={tmp_path / 'run'}"]
    assert main(argv) == 0
    config = experiment_of(Checkpoint(tmp_path / "run" / "last"))
    assert config["model"]["text_dim"] == 8 and "vocab" not in config["data"]
    sample = action.build_dataset(config["data"], "val", "action")[0]
    assert sample["verb_question"].shape[1] == 8 and sample["verb_question_ids"][0] == 2  # [CLS]


def test_an_action_checkpoint_asked_for_moments_says_so(recognition_run, tmp_path, cli_error):
    np.savez(tmp_path / "v.npz", features=np.zeros((4, 12), np.float32))
    np.savez(tmp_path / "q.npz", last_hidden_state=np.zeros((3, 8), np.float32))
    message = cli_error(["predict", "--ckpt", recognition_run, "--video-features", tmp_path / "v.npz",
                         "--query-features", tmp_path / "q.npz"])
    assert f"{recognition_run}: a checkpoint of task 'action' (mambavl) does not find moments" in message
