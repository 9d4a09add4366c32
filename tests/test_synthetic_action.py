"""The synthetic action benchmark: deterministic, in the EK100 format, designed as documented, and learnable."""
import json
from pathlib import Path

import numpy as np
import pytest

from vidmamba.data.ek100 import EK100Dataset, read_ek100_annotations, read_ek100_classes
from vidmamba.data.questions import QuestionGenerator, leaked_words, tokenize
from vidmamba.data.synthetic_action import PLACES, ensure_action_benchmark, generate_action_benchmark, read_meta
from vidmamba.tasks import get_task

SMALL = dict(num_train=300, num_val=150, num_verbs=4, num_groups=3, group_size=3, min_frames=6, max_frames=10,
             video_dim=24, latent_dim=8, hidden_dim=24, seed=5)


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_action_benchmark(tmp_path_factory.mktemp("sa") / "b", **SMALL)


def test_same_parameters_same_bytes_other_seed_other_data(tmp_path):
    params = {**SMALL, "num_train": 40, "num_val": 10}
    first = _tree(generate_action_benchmark(tmp_path / "first", **params))
    assert first == _tree(generate_action_benchmark(tmp_path / "again", **params))
    other = _tree(generate_action_benchmark(tmp_path / "other", **{**params, "seed": 6}))
    assert other["EPIC_100_train.csv"] != first["EPIC_100_train.csv"]
    assert len(first) == 40 + 10 + 5  # features + 2 annotation CSVs + 2 class CSVs + meta.json


def test_ensure_reuses_a_matching_cache_and_regenerates_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path))
    params = {**SMALL, "num_train": 10, "num_val": 5}
    root = ensure_action_benchmark(**params)
    assert root.parent == tmp_path / "synthetic_action"
    marker = root / "features" / "marker"
    marker.write_text("x")
    assert ensure_action_benchmark(**params) == root and marker.exists()  # re-used
    meta = json.loads((root / "meta.json").read_text())
    meta["params"]["obs_noise"] = 9.0
    (root / "meta.json").write_text(json.dumps(meta))
    assert ensure_action_benchmark(root, **params) == root and not marker.exists()  # regenerated


def test_bad_parameters_are_named():
    with pytest.raises(TypeError, match="num_trian"):
        generate_action_benchmark("/nonexistent/x", num_trian=3)
    with pytest.raises(ValueError, match="num_verbs must be even"):
        generate_action_benchmark("/nonexistent/x", num_verbs=3)


def test_ek100_readers_serve_it_and_the_design_holds(small):
    verbs = read_ek100_classes(small / "EPIC_100_verb_classes.csv")
    nouns = read_ek100_classes(small / "EPIC_100_noun_classes.csv")
    ds = EK100Dataset(small / "EPIC_100_train.csv", small / "features", verb_classes=verbs, noun_classes=nouns)
    assert len(ds) == SMALL["num_train"] and len(verbs) == 4 and len(nouns) == 9
    lengths = {ds[i]["video"].shape[0] for i in range(40)}
    assert min(lengths) >= 6 and max(lengths) <= 10 and len(lengths) > 1
    meta = read_meta(small)
    # opposite verbs: the same two primitives in reverse order
    prims = [tuple(v["primitives"]) for v in meta["verbs"]]
    assert prims[1] == prims[0][::-1] and prims[3] == prims[2][::-1]
    # look-alike nouns have distinct homes, so (group, place) names the noun
    homes = {(n["group"], n["home"]) for n in meta["nouns"]}
    assert len(homes) == len(meta["nouns"])
    actions = read_ek100_annotations(small / "EPIC_100_train.csv")
    at_home = np.mean([a.narration.endswith(meta["nouns"][a.noun_class]["home"]) for a in actions])
    assert 0.8 < at_home < 0.98  # context_reliability 0.9
    # the masked question keeps the place and loses both label words
    gen = QuestionGenerator([v.key for v in verbs], [n.key for n in nouns])
    places = {p for _, p in PLACES}
    for a in actions[:50]:
        pair = gen.generate(a.verb_class, a.noun_class, key=a.narration_id, context=a.narration)
        for q in (pair.verb_question, pair.noun_question):
            assert not leaked_words(q, [verbs[a.verb_class].key, nouns[a.noun_class].key])
            assert places & set(tokenize(q)) == {a.narration.split()[-1]}


def test_a_tiny_run_clearly_beats_chance(small, tmp_path):
    """MLP fusion (the fastest). It cannot read the verb order (a verb and its reverse look alike to it), so the
    check is on nouns (chance 1/9) and actions (chance 1/36); the verb order is what the benchmark script compares."""
    config = {"task": "action", "model": {"name": "mambavl", "d_model": 32, "fusion": "mlp", "dropout": 0.0},
              "data": {"train": str(small / "EPIC_100_train.csv"), "val": str(small / "EPIC_100_validation.csv"),
                       "verb_classes": str(small / "EPIC_100_verb_classes.csv"),
                       "noun_classes": str(small / "EPIC_100_noun_classes.csv"), "features": str(small / "features"),
                       "text_encoder": {"kind": "words", "dim": 16}, "question_context": "narration"},
              "train": {"epochs": 3, "eval_every": 3, "batch_size": 16, "lr": 1e-2, "progress": False,
                        "tensorboard": False, "out_dir": str(tmp_path / "run")}}
    ev = get_task("action").train(config)["eval"]
    assert ev["noun_top1"] > 3 * 100 / 9
    assert ev["action_top1"] > 3 * 100 / 36
