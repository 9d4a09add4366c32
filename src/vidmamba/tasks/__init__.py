"""The recipes: one registry, task name -> :class:`Task` (datasets, model, train, evaluate, predict, metric).

- ``grounding``: "qvhighlights", "moment_retrieval", "tvsum", "youtube" (lighthouse-style data, MLVTG and its twins);
- ``long_grounding``: "nlq" (Ego4D-NLQ / MAD / TACoS in the SnAG format; HieraMamba, or MLVTG through an adapter);
- ``action``: "action", "anticipation" (EK100; MambaVL);
- ``pretrained``: self-contained pretrained folders of grounding models (``vidmamba export``);
- ``base``: the :class:`Task` skeleton, :class:`MomentTask` (the one-video inference every grounding and nlq task
  declares, used by predict, serve and export), the registry :data:`TASKS` and the loading of trained checkpoints.

``get_task(config["task"]).train(config)``; ``load_trained(ckpt) -> (model, config, task)`` for any checkpoint.
"""
from vidmamba.tasks import action, grounding, long_grounding  # noqa: F401  (importing registers their tasks)
from vidmamba.tasks.base import (DEFAULT_TASK, TASKS, MomentTask, Task, TaskMismatchError, experiment_of,
                                 export_pretrained, get_task, load_trained, predict_features, task_of, write_evaluation)

__all__ = ["DEFAULT_TASK", "TASKS", "MomentTask", "Task", "TaskMismatchError", "experiment_of", "export_pretrained",
           "get_task", "load_trained", "predict_features", "task_of", "write_evaluation"]
