"""The inference edge, declared once: one registry of tasks; every task that finds moments implements each
one-video inference step of :class:`~vidmamba.tasks.base.MomentTask` with its declared signature; the lists of
names (metric protocols, exportable tasks, the CLI help) agree with the registry; models declare their batches."""
import inspect
import json
import re

import pytest

from vidmamba.cli import build_parser
from vidmamba.errors import ConfigError
from vidmamba.metrics.evaluate import PROTOCOLS
from vidmamba.models import MODELS
from vidmamba.tasks import TASKS, get_task, predict_features
from vidmamba.tasks.base import MomentTask

MOMENT_TASKS = [name for name, task in TASKS.items() if isinstance(task, MomentTask)]
STEPS = ("conventions", "prepare_inputs", "read_feature_files", "predict_clips")


def test_the_registry_holds_every_task_and_the_moment_tasks_are_the_grounding_and_nlq_ones():
    assert set(TASKS) == {"qvhighlights", "moment_retrieval", "tvsum", "youtube", "nlq", "action", "anticipation"}
    assert set(MOMENT_TASKS) == {"qvhighlights", "moment_retrieval", "tvsum", "youtube", "nlq"}
    assert all(task.name == name for name, task in TASKS.items())


def test_the_declared_steps_are_abstract():
    assert set(STEPS) == MomentTask.__abstractmethods__


def _shape(fn) -> list[tuple]:
    """(name, kind, default) of each parameter: the call signature without annotations."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", MOMENT_TASKS)
@pytest.mark.parametrize("step", STEPS)
def test_every_moment_task_implements_each_step_with_the_declared_signature(name, step):
    cls = type(TASKS[name])
    assert not inspect.isabstract(cls)
    own, declared = getattr(cls, step), getattr(MomentTask, step)
    assert own is not declared and not getattr(own, "__isabstractmethod__", False)
    assert _shape(own) == _shape(declared)


def test_a_moment_task_that_misses_a_step_cannot_be_built():
    class NoAnswer(MomentTask):
        def conventions(self, config):
            return 1.0, True

    with pytest.raises(TypeError, match="predict_clips"):
        NoAnswer("x", "metric")


def test_exportable_tasks_declare_their_export():
    assert [name for name, task in TASKS.items() if task.exportable] == ["qvhighlights", "moment_retrieval", "tvsum"]
    for task in TASKS.values():
        if task.exportable:
            assert type(task).pretrained_data is not MomentTask.pretrained_data


def test_metric_protocols_are_the_moment_tasks_and_the_evaluate_help_lists_exactly_them(capsys):
    assert sorted(PROTOCOLS) == sorted(MOMENT_TASKS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    listed = re.search(r"metric protocol \(([^)]*)\) or a config file", text).group(1).split(", ")
    assert listed == list(PROTOCOLS)


def test_every_model_declares_its_batches_and_nlq_refuses_a_model_that_finds_no_moments():
    assert {name: cls.batch_format for name, (cls, _) in MODELS.items()} == {
        "mlvtg": "lighthouse", "mlvtg-transformer": "lighthouse", "mlvtg-perclip": "lighthouse",
        "hieramamba": "snag", "hieramamba-transformer": "snag", "mambavl": "ek100"}
    config = {"model": {"name": "mambavl", "video_dim": 8, "text_dim": 8, "d_model": 8}, "data": {"vid_stride": 1}}
    with pytest.raises(ConfigError, match="model.name: mambavl does not find moments"):
        get_task("nlq").build_model(config)


def test_a_grounding_checkpoint_takes_the_timing_arguments_of_the_one_signature(grounding_run):
    """``fps`` is not needed by clips of fixed seconds (the answer is unchanged); ``duration`` is the video's length:
    the answer reports it and its windows end within it."""
    tmp, bench, _ = grounding_run
    row = json.loads((bench / "val.jsonl").read_text().splitlines()[0])
    args = (tmp / "run", bench / "video" / f"{row['vid']}.npz", bench / "text" / f"qid{row['qid']}.npz")
    plain = predict_features(*args)
    assert predict_features(*args, fps=30.0) == plain
    short = predict_features(*args, duration=plain["duration"] / 2)
    assert short["duration"] == plain["duration"] / 2 and short["windows"]
    assert all(0 <= s <= e <= short["duration"] for s, e, _ in short["windows"])
