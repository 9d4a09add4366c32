"""Every shipped config builds: its model options are known to the model, its trainer options to the trainer."""
from pathlib import Path

import pytest

from vidmamba.config import load_config
from vidmamba.engine import TrainerConfig
from vidmamba.engine.grounding import DATA_KEYS, SELECTION_METRIC, build_grounding_model
from vidmamba.metrics.evaluate import TASKS

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("mlvtg_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path):
    config = load_config(path)
    assert config["task"] in TASKS and config["task"] in SELECTION_METRIC
    assert set(config["data"]) <= DATA_KEYS
    TrainerConfig.from_dict(config["train"])
    model = build_grounding_model({**config["model"], "video_dim": 32, "text_dim": 16, "hidden_dim": 16,
                                   "llm_refiner": None})
    assert sum(p.numel() for p in model.parameters()) > 0


def test_there_are_configs():
    assert {p.stem for p in CONFIGS} >= {"mlvtg_qvhighlights", "mlvtg_charades"}
