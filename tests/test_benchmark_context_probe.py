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


def short_run_args(**settings) -> argparse.Namespace:
    """The settings run() reads, for a run of 4 steps of 2 sequences scored every 2 steps; ``settings`` replace them."""
    return argparse.Namespace(**{**dict(types=8, sep=64, event=4, batch=2, steps=4, eval_every=2, loss="softmax",
                                        inputs="tokens", obs_noise=None, query="learned", text_encoder="identity",
                                        train_pool=None, model={}, detach=None, loss_norm_scale=1.0,
                                        init_levels=None), **settings})


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
    args = short_run_args(loss=loss, inputs=inputs, query=query, text_encoder=text_encoder or "identity")
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
    args = short_run_args(train_pool=8)
    row = cp.run("hydra", "query", 640, 0, args)
    assert row["train_pool"] == 8 and all(len(p["train_acc"]) == 4 for p in row["curve"])


def test_a_query_text_is_the_benchmarks_sentence_encoded_word_by_word():
    world, rng = cp.BenchmarkWorld(8), np.random.default_rng(0)
    anchored, ordinal = world.query_text((0, 1, 2), rng), world.query_text((2, 3, 0), rng)
    assert anchored.shape[1] == ordinal.shape[1] == world.text_dim
    # "the first time <x phrase> after <y phrase>": two event phrases (>= 4 words each) and 4 words of the template
    assert anchored.shape[0] >= 12 and 7 <= ordinal.shape[0] < anchored.shape[0]


def test_the_whole_model_reads_the_benchmarks_grid_and_a_hit_on_the_answer_is_a_hit_on_x():
    """``--mixers hieramamba``: an event of clips [64, 68) is the span the SnAG pipeline gives it in grid units
    (seconds_to_grid, the benchmark's 1 clip per second); a short run scores every kind, and since the answer is a
    copy of X, no kind's hit rate exceeds its x_found."""
    from vidmamba.data.snag import seconds_to_grid
    world = cp.BenchmarkWorld(8)
    net = cp.FullModel(8, 640, world.text_dim, None, "identity")
    text = torch.zeros(2, 5, world.text_dim)
    batch = net.batch(torch.zeros(2, 640, dtype=torch.long), text, torch.ones(2, 5, dtype=torch.bool),
                      torch.tensor([64, 128]), 4)
    expected = seconds_to_grid(np.array([[64.0, 68.0], [128.0, 132.0]]), fps=1.0, clip_size=1, stride=1)
    assert batch["video"].shape == (2, 640, 9) and torch.allclose(batch["segments_grid"], torch.tensor(expected).float())
    assert torch.allclose(cp.segment_iou(torch.tensor([[64.0, 68.0], [0.0, 4.0]]), torch.tensor([[66.0, 70.0],
                                                                                                  [8.0, 12.0]])),
                          torch.tensor([2 / 6, 0.0]))
    args = short_run_args(steps=2, query="text")
    row = cp.run("hieramamba", "query", 640, 0, args)
    point = row["curve"][-1]
    assert row["loss"] == "model" and np.isfinite(point["loss"]) and len(point["acc"]) == len(point["x_found"]) == 4
    assert all(a <= x for a, x in zip(point["acc"], point["x_found"]))
    with pytest.raises(SystemExit):
        cp.main(["--mixers", "hieramamba", "--steps", "1"])  # needs --query text


def test_detach_stops_exactly_the_named_gradient_of_the_upper_levels():
    """``--detach``: the level-1 outputs' gradient reaches block 0 (through the anchors), the fusion (through the
    level-1 features) and the heads, and each option stops its part of it only."""
    world = cp.BenchmarkWorld(8)
    reached = {}
    for detach in (None, "anchors", "features", "outputs"):
        torch.manual_seed(0)
        net = cp.FullModel(8, 256, world.text_dim, None, "identity", {"num_blocks": 2}, detach)
        enc = net.model.encode(net.batch(torch.randint(0, 9, (2, 256)), torch.randn(2, 5, world.text_dim),
                                         torch.ones(2, 5, dtype=torch.bool)))
        upper = enc.logits[1].sum() + enc.offsets[1].sum()
        if upper.requires_grad:  # "outputs": no graph behind the level-1 outputs at all
            upper.backward()
        reached[detach] = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
                           for name, module in (("block 0", net.model.backbone.blocks[0]), ("block 1",
                                                net.model.backbone.blocks[1]), ("fusion", net.model.fusion),
                                                ("heads", net.model.head))}
    assert reached == {None: {"block 0": True, "block 1": True, "fusion": True, "heads": True},
                       "anchors": {"block 0": False, "block 1": True, "fusion": True, "heads": True},
                       "features": {"block 0": False, "block 1": False, "fusion": False, "heads": True},
                       "outputs": {"block 0": False, "block 1": False, "fusion": False, "heads": False}}


def test_loss_norm_scale_multiplies_the_positives_the_normaliser_counts():
    """The normaliser's EMA (momentum 0.9, the config's init 5) takes in twice the positives with scale 2."""
    world = cp.BenchmarkWorld(8)
    moved = []
    for scale in (1.0, 2.0):
        torch.manual_seed(0)
        net = cp.FullModel(8, 256, world.text_dim, None, "identity", {"num_blocks": 1}, loss_norm_scale=scale)
        net.loss(torch.randint(0, 9, (2, 256)), torch.tensor([64, 128]), 4, torch.randn(2, 5, world.text_dim),
                 torch.ones(2, 5, dtype=torch.bool))
        moved.append(float(net.model.loss_norm()) - 0.9 * 5.0)
    assert moved == pytest.approx([0.1 * 2, 0.1 * 4], abs=1e-5)  # 2 positives per query at level 0


def test_init_levels_starts_from_the_weights_a_deeper_model_draws():
    world = cp.BenchmarkWorld(8)

    def build(**kwargs):
        torch.manual_seed(0)
        return cp.FullModel(8, 256, world.text_dim, None, "identity", **kwargs).model.state_dict()

    one, two = build(overrides={"num_blocks": 1}), build(overrides={"num_blocks": 2})
    one_as_two = build(overrides={"num_blocks": 1}, init_levels=2)
    assert set(one_as_two) == set(one)
    assert all(torch.equal(one_as_two[k], two[k]) for k in one_as_two)
    fusion = [k for k in one if k.startswith("fusion.") and k.endswith("weight")]
    assert fusion and any(not torch.equal(one[k], two[k]) for k in fusion)  # drawn after block 1's in two levels


def test_scores_count_hits_on_the_answer_and_on_any_copy_of_x_by_hand():
    """One sequence per case: X (token 3) at clips 0, 64, 128 (4 clips each), Y (token 5) at 32, the answer the copy
    at 64; kinds 0 and 1 side by side."""
    tokens = torch.zeros(4, 256, dtype=torch.long)
    for start in (0, 64, 128):
        tokens[:, start:start + 4] = 3
    tokens[:, 32:36] = 5
    query = torch.tensor([[0, 3, 5], [0, 3, 5], [1, 3, 5], [1, 3, 5]])
    answer = torch.full((4,), 64)
    by_clip = cp.score(torch.tensor([[66, 67], [129, 130], [200, 201], [3, 4]]), answer, query, tokens, 4,
                       by_iou=False, kinds=2)
    assert by_clip == {"acc": [50.0, 0.0], "x_found": [100.0, 50.0]}
    # IoU with [64, 68): [63, 67) 3/5 hit; [66, 70) 2/6 miss, but [129, 132) with [128, 132) 3/4 finds X; [1, 5) with
    # [0, 4) 3/5 finds X; [32, 36) is Y
    by_iou = cp.score(torch.tensor([[63, 67], [129, 132], [1, 5], [32, 36]]), answer, query, tokens, 4,
                      by_iou=True, kinds=2)
    assert by_iou == {"acc": [50.0, 0.0], "x_found": [100.0, 50.0]}
