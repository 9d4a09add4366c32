"""benchmarks/context_probe.py: its sequences hold what their query says (answers recomputed from the tokens alone),
and a short run reports its learning curve."""
import argparse
import importlib.util
import pathlib

import numpy as np
import pytest
import torch

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


def test_rendered_features_keep_each_event_kind_apart():
    """Two sequences rendered independently (each its own scene and background): each event kind's mean feature
    minus the background's is nearest (cosine) to the same kind's in the other sequence, among all 8 kinds."""
    render = cp.BenchmarkWorld(8)
    rng = np.random.default_rng(1)
    means = []
    for _ in range(2):
        tokens = np.zeros(8192, dtype=np.int64)
        for i, start in enumerate(range(0, 8192 - 4, 32)):  # every kind 32 times, 4 clips each
            tokens[start:start + 4] = 1 + i % 8
        features = render(tokens, rng)
        assert features.shape == (8192, render.dim) and features.dtype == np.float32
        m = np.stack([features[tokens == t].mean(0) for t in range(1, 9)]) - features[tokens == 0].mean(0)
        means.append(m / np.linalg.norm(m, axis=1, keepdims=True))
    similar = means[0] @ means[1].T
    assert (np.argmax(similar, axis=1) == np.arange(8)).all()
    assert (np.sort(similar, axis=1)[:, -1] - np.sort(similar, axis=1)[:, -2]).min() > 0.05  # by a margin
    assert len(set(render.pairs)) == 8


@pytest.mark.parametrize("loss, inputs, query, text_encoder", [
    ("softmax", "tokens", "learned", None), ("focal", "tokens", "learned", None), ("softmax", "features", "learned", None),
    ("softmax", "tokens", "text", "identity"), ("softmax", "tokens", "text", "transformer")])
def test_a_short_run_reports_its_curve(loss, inputs, query, text_encoder):
    args = argparse.Namespace(types=8, sep=64, event=4, batch=2, steps=4, eval_every=2, loss=loss, inputs=inputs,
                              obs_noise=None, query=query, text_encoder=text_encoder or "identity", train_pool=None)
    row = cp.run("hydra", "query", 640, 0, args)
    assert (row["loss"], row["inputs"], row["query"], row["text_encoder"]) == (loss, inputs, query, text_encoder)
    assert all(np.isfinite(p["loss"]) for p in row["curve"])
    assert [p["step"] for p in row["curve"]] == [2, 4] and len(row["final_acc"]) == 4
    assert all(0 <= a <= 100 for a in row["final_acc"]) and row["steps_to_90"] in (None, 2, 4)


def test_a_training_pool_is_visited_once_per_epoch_and_scored():
    batches = cp.pool_batches(np.random.default_rng(0), 6, 4)
    seen = torch.cat([next(batches) for _ in range(6)]).tolist()  # four epochs of six sequences
    assert all(sorted(seen[e * 6:(e + 1) * 6]) == list(range(6)) for e in range(4))
    assert seen[:6] != seen[6:12]  # a fresh order each epoch
    args = argparse.Namespace(types=8, sep=64, event=4, batch=2, steps=4, eval_every=2, loss="softmax",
                              inputs="tokens", obs_noise=None, query="learned", text_encoder="identity",
                              train_pool=8)
    row = cp.run("hydra", "query", 640, 0, args)
    assert row["train_pool"] == 8 and all(len(p["train_acc"]) == 4 for p in row["curve"])


def test_a_query_text_is_the_benchmarks_sentence_encoded_word_by_word():
    world, rng = cp.BenchmarkWorld(8), np.random.default_rng(0)
    anchored, ordinal = world.query_text((0, 1, 2), rng), world.query_text((2, 3, 0), rng)
    assert anchored.shape[1] == ordinal.shape[1] == world.text_dim
    # "the first time <x phrase> after <y phrase>": two event phrases (>= 4 words each) and 4 words of the template
    assert anchored.shape[0] >= 12 and 7 <= ordinal.shape[0] < anchored.shape[0]
