"""benchmarks/context_probe.py: its sequences hold what their query says (answers recomputed from the tokens alone),
and a short run reports its learning curve."""
import argparse
import importlib.util
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "context_probe.py"
_spec = importlib.util.spec_from_file_location("bench_context_probe", _PATH)
cp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cp)


def _runs(tokens, token):
    """Start clips of the maximal runs of ``token``."""
    hit = np.concatenate([[False], tokens == token])
    return [int(i) for i in np.flatnonzero(hit[1:] & ~hit[:-1])]


def test_answers_follow_the_query_read_from_the_tokens():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        tokens, answer, (kind, x, y) = cp.sample(rng, "query", 1024, 64, 4, 8)
        xs = _runs(tokens, x)
        assert 4 <= len(xs) <= 6 and all(s % 64 == 0 for s in xs)
        if cp.KINDS[kind] in ("first_after", "last_before"):
            (ys,) = _runs(tokens, y)
            expected = min(s for s in xs if s > ys) if kind == 0 else max(s for s in xs if s < ys)
        else:
            assert y == 0
            expected = xs[kind - 1]  # kind 2 (second) -> xs[1], kind 3 (third) -> xs[2]
        assert answer == expected
        seen.add(cp.KINDS[kind])
    assert seen == set(cp.KINDS)
    tokens, answer, query = cp.sample(rng, "fixed", 1024, 64, 4, 8)
    assert query == (0, 1, 2) and answer == min(s for s in _runs(tokens, 1) if s > _runs(tokens, 2)[0])


@pytest.mark.parametrize("loss", ["softmax", "focal"])
def test_a_short_run_reports_its_curve(loss):
    args = argparse.Namespace(types=8, sep=64, event=4, batch=2, steps=4, eval_every=2, loss=loss)
    row = cp.run("hydra", "query", 640, 0, args)
    assert row["loss"] == loss and all(np.isfinite(p["loss"]) for p in row["curve"])
    assert [p["step"] for p in row["curve"]] == [2, 4] and len(row["final_acc"]) == 4
    assert all(0 <= a <= 100 for a in row["final_acc"]) and row["steps_to_90"] in (None, 2, 4)
