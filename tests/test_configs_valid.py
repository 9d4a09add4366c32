"""Every shipped config is complete: its task is registered, its data keys are known to the task, its trainer
options to the trainer, its model name to the model registry (MLVTG configs also build, at a small width)."""
from pathlib import Path

import pytest

from vidmamba.config import load_config
from vidmamba.engine import TrainerConfig
from vidmamba.models import MODELS, create_model
from vidmamba.tasks import task_of

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_complete(path):
    config = load_config(path)
    task = task_of(config)
    assert task.name == config["task"]
    task.data_config.from_dict(config["data"])  # keys and types
    task.check_config(config)  # every section
    TrainerConfig.from_dict(config["train"])
    assert config["model"]["name"] in MODELS
    if task.family == "grounding":
        options = {**config["model"], "video_dim": 32, "text_dim": 16, "hidden_dim": 16, "llm_refiner": None}
        assert sum(p.numel() for p in create_model(**options).parameters()) > 0


def test_there_are_configs_for_every_family():
    families = {task_of(load_config(p)).family for p in CONFIGS}
    assert families == {"grounding", "nlq", "action"}
