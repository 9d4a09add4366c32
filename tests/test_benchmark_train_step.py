"""benchmarks/train_step.py: the demo's own batches in the trainer's order, and the per-band summary (hand-computed)."""
import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "train_step.py"
_spec = importlib.util.spec_from_file_location("bench_train_step", _PATH)
ts = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ts)


def test_summary_is_the_median_over_rounds_of_each_bands_mean_step():
    def row(variant, r, wall, cpu=0.5):
        return {"variant": variant, "round": r, "per_step": [[n, t, cpu] for n, t in wall]}

    rows = [row("mlvtg", 0, [[50, 1.0], [50, 3.0], [140, 4.0]]),       # band means: 42-60 2.0, 131-150 4.0
            row("mlvtg-transformer", 0, [[50, 1.0], [50, 1.0], [140, 8.0]], cpu=1.0),
            row("mlvtg", 1, [[50, 2.0], [50, 2.0], [140, 5.0]]),
            row("mlvtg-transformer", 1, [[50, 1.0], [50, 2.0], [140, 9.0]], cpu=1.0),
            row("mlvtg", 2, [[50, 9.0], [50, 9.0], [140, 6.0]]),
            row("mlvtg-transformer", 2, [[50, 4.0], [50, 4.0], [140, 7.0]], cpu=1.0)]
    summary = ts.summarize(rows, ["mlvtg", "mlvtg-transformer"])
    # all steps: mlvtg means 8/3, 3, 8 -> median 3; twin 10/3, 4, 5 -> median 4; CPU 0.5 against 1.0
    assert summary["all"] == {"steps": 3, "mlvtg_step_s": 3.0, "mlvtg-transformer_step_s": 4.0,
                              "mlvtg_over_transformer": 0.75, "mlvtg_cpu_step_s": 0.5,
                              "mlvtg-transformer_cpu_step_s": 1.0, "mlvtg_over_transformer_cpu": 0.5}
    # 42-60: mlvtg 2, 2, 9 -> 2; twin 1, 1.5, 4 -> 1.5
    assert summary["42-60"]["steps"] == 2 and summary["42-60"]["mlvtg_over_transformer"] == 1.333
    assert (summary["42-60"]["mlvtg_step_s"], summary["42-60"]["mlvtg-transformer_step_s"]) == (2.0, 1.5)
    # 131-150: mlvtg 4, 5, 6 -> 5; twin 8, 9, 7 -> 8
    assert summary["131-150"]["mlvtg_over_transformer"] == 0.625
    assert summary["61-95"] == {"steps": 0}                     # no step of that length: no ratio


def test_summary_skips_failed_workers():
    rows = [{"variant": "mlvtg", "round": 0, "error": "boom"},
            {"variant": "mlvtg-transformer", "round": 0, "per_step": [[100, 2.0, 1.5]]}]
    summary = ts.summarize(rows, ["mlvtg", "mlvtg-transformer"])
    assert summary["all"] == {"steps": 1, "mlvtg-transformer_step_s": 2.0, "mlvtg-transformer_cpu_step_s": 1.5}


@pytest.mark.slow
def test_the_demos_batches_in_the_trainers_order():
    from vidmamba.demo import DEMO_TRAIN

    config, batches = ts.demo_setup("mlvtg", DEMO_TRAIN["batch_size"])
    assert config["model"]["train_clips"] == 150 and config["model"]["video_dim"] == 128
    assert len(batches) == 1500 // DEMO_TRAIN["batch_size"]
    lengths = [b["video"].shape[1] for b in batches]
    assert min(lengths) >= 32 and max(lengths) == 150 and len(set(lengths)) > 10
    assert all(b["video"].shape[0] == DEMO_TRAIN["batch_size"] for b in batches)
