"""Which engine module runs a config: the config's ``task`` names a metric protocol, each protocol belongs to one
experiment family, and each family module exposes the same three functions:

* ``train(config: dict, resume=None) -> dict`` (the trainer's summary),
* ``evaluate(ckpt, out_dir, split="val", data=None) -> (metrics: dict, rows: list[dict])`` (writes
  ``<out_dir>/<split>_preds.jsonl`` and ``<split>_metrics.json``),
* ``load_trained(ckpt) -> (model, config)``.
"""
from __future__ import annotations

import importlib
from types import ModuleType

# task (metric protocol) -> engine module
FAMILIES = {
    "qvhighlights": "vidmamba.engine.grounding",
    "moment_retrieval": "vidmamba.engine.grounding",
    "tvsum": "vidmamba.engine.grounding",
    "nlq": "vidmamba.engine.long_grounding",
    "action": "vidmamba.engine.action",
    "anticipation": "vidmamba.engine.action",
}
DEFAULT_TASK = "qvhighlights"


def experiment_for(config: dict) -> ModuleType:
    """The engine module that trains / evaluates ``config`` (by its ``task``, default "qvhighlights")."""
    task = config.get("task", DEFAULT_TASK)
    if task not in FAMILIES:
        raise ValueError(f"config task {task!r} is not known; known tasks: {sorted(FAMILIES)}")
    return importlib.import_module(FAMILIES[task])


def checkpoint_task(ckpt) -> str:
    """The task of the experiment a local run / checkpoint folder was trained for (``DEFAULT_TASK`` for pretrained
    folders and hub ids, which hold grounding models)."""
    from pathlib import Path

    from vidmamba.engine.checkpoint import META_FILE, Checkpoint, resolve_checkpoint

    path = Path(ckpt)
    folder = path / "best" if (path / "best").exists() else path
    if not (folder / META_FILE).is_file():
        return DEFAULT_TASK
    config = Checkpoint(resolve_checkpoint(folder)).config.get("model", {})
    return config.get("task", DEFAULT_TASK) if isinstance(config, dict) else DEFAULT_TASK
