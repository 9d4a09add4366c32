"""run_demo end to end on a cut budget (one model, one epoch): the table, the per-model seconds and results.json."""
import json

import pytest

from vidmamba import demo


@pytest.mark.slow
def test_run_demo_one_model_one_epoch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "MODELS", {"mlvtg": demo.MODELS["mlvtg"]})
    monkeypatch.setattr(demo, "DEMO_TRAIN", {**demo.DEMO_TRAIN, "epochs": 1, "eval_every": 1})
    results = demo.run_demo(tmp_path / "out", threads=1)
    assert set(results["models"]) == {"mlvtg", "random"} and results["train_seconds"]["mlvtg"] > 0
    assert results["seconds"] >= results["train_seconds"]["mlvtg"]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["models"] == results["models"]
    assert "MLVTG (Mamba aligner)" in capsys.readouterr().out
