"""Which engine module runs a config: the config's ``task`` names a metric protocol, each protocol belongs to one
experiment family, and each family module exposes the same three functions:

* ``train(config: dict, resume=None) -> dict`` (the trainer's summary),
* ``evaluate(ckpt, out_dir, split="val", data=None) -> (metrics: dict, rows: list[dict])`` (writes
  ``<out_dir>/<split>_preds.jsonl`` and ``<split>_metrics.json``),
* ``load_trained(ckpt) -> (model, config)``.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

from vidmamba.utils import atomic_write_text

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
    from vidmamba.engine.checkpoint import Checkpoint, run_checkpoint

    if not Path(ckpt).expanduser().exists():
        return DEFAULT_TASK
    config = Checkpoint(run_checkpoint(ckpt)).config.get("model", {})
    return config.get("task", DEFAULT_TASK) if isinstance(config, dict) else DEFAULT_TASK


def write_evaluation(out_dir, split: str, rows: list[dict], metrics: dict) -> None:
    """The evaluation outputs of every family: ``<out_dir>/<split>_preds.jsonl`` (one row per line) and
    ``<split>_metrics.json``, each written atomically."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / f"{split}_preds.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_text(out_dir / f"{split}_metrics.json", json.dumps(metrics, indent=4))
