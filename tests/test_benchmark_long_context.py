"""Scoring helpers of benchmarks/long_context.py: hits against hand-made windows, the flip rate, the curriculum's
stages, the baselines on a small generated benchmark."""
import argparse
import importlib.util
import json
import pathlib

import pytest

from vidmamba.data.synthetic_long_context import generate_long_context_benchmark

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "long_context.py"
_spec = importlib.util.spec_from_file_location("bench_long_context", _PATH)
lc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lc)


def _ceiling():
    """Two queries, each with three copies of X (clips); the answers, their counterfactuals and the position
    rule's picks by hand (the rule is right on the first query, wrong on the second)."""
    q = dict(kind="second", gap=1, T=900, K=3, windowed=1 / 3, position=0.0, context=[0, 4], y=None, cf_y=None,
             cf_deleted=0)
    return {"queries": [{**q, "qid": 0, "cf_qid": 10, "candidates": [[0, 4], [300, 306], [600, 603]], "answer": 1,
                         "cf_answer": 2, "position_best": [1]},
                        {**q, "qid": 1, "cf_qid": 11, "kind": "third", "gap": 4,
                         "candidates": [[10, 14], [200, 204], [500, 510]], "answer": 1, "cf_answer": 2,
                         "position_best": [0, 2]}]}


def test_hits_and_flip_rate_by_hand():
    c = _ceiling()
    truth = lc.truths(c)
    assert truth["val"]["qid0"] == [[600.0, 612.0]] and truth["val_cf"]["qid10"] == [[1200.0, 1206.0]]
    rows = [{"qid": "qid0", "pred_relevant_windows": [[601.0, 612.0, 0.9], [0.0, 8.0, 0.1]]},  # IoU 11/12: hit
            {"qid": "qid1", "pred_relevant_windows": [[20.0, 28.0, 0.9]]}]  # the first copy: a copy, not the answer
    val, any_copy = lc.hits(rows, truth["val"]), lc.hits(rows, truth["any"])
    assert val == {"qid0": True, "qid1": False} and any_copy == {"qid0": True, "qid1": True}
    cf_rows = [{"qid": "qid10", "pred_relevant_windows": [[1200.0, 1206.0, 1.0]]},
               {"qid": "qid11", "pred_relevant_windows": [[1000.0, 1020.0, 1.0]]}]
    s = lc.score(c, val, lc.hits(cf_rows, truth["val_cf"]), any_copy)
    assert (s["R1@0.5"], s["cf_R1@0.5"], s["flip"], s["any_copy"]) == (50.0, 100.0, 50.0, 100.0)
    assert s["by_gap"]["4"] == {"R1@0.5": 0.0, "flip": 0.0, "any_copy": 100.0}
    assert lc.score(c, val, None, any_copy)["flip"] is None  # windowed models: no counterfactual pass


def test_stay_and_misled_by_hand(tmp_path):
    """From saved prediction files: query 0 answered right, then at the same place on the counterfactual (stays,
    wrong there); query 1 (its position rule picks copies 0 or 2) answered at copy 0 (follows the rule), then at
    its counterfactual answer (moved)."""
    c = _ceiling()
    lines = {"val": [{"qid": "qid0", "pred_relevant_windows": [[600.0, 612.0, 0.9]]},
                     {"qid": "qid1", "pred_relevant_windows": [[20.0, 28.0, 0.8]]}],
             "val_cf": [{"qid": "qid10", "pred_relevant_windows": [[602.0, 612.0, 0.7]]},   # IoU 10/12 with qid0's
                        {"qid": "qid11", "pred_relevant_windows": [[1000.0, 1020.0, 0.9]]}]}
    for split, rows in lines.items():
        (tmp_path / f"{split}_preds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = lc.scored_predictions(c, lc.read_predictions(tmp_path, windowed=False))
    assert (s["R1@0.5"], s["cf_R1@0.5"], s["flip"], s["stay"]) == (50.0, 50.0, 0.0, 50.0)
    # the rule misses query 1's answer: the top-1 took its pick; a uniform pick would take one of its 2 of 3 copies
    assert s["misled"] == {"queries": 1, "follows": 100.0, "right": 0.0, "chance": 66.67}
    windowed = lc.scored_predictions(c, lc.read_predictions(tmp_path, windowed=True))
    assert windowed["stay"] is None and windowed["misled"]["follows"] == 100.0
    old = {"queries": [{k: v for k, v in q.items() if k != "position_best"} for q in c["queries"]]}
    assert lc.scored_predictions(old, lc.read_predictions(tmp_path, windowed=False))["misled"] is None


def test_rescore_reads_each_rows_last_stage(tmp_path):
    c = _ceiling()
    for stage, top in ((0, 20.0), (1, 600.0), (10, 1200.0)):  # stage 10 is the last (sorted as a number)
        d = tmp_path / "runs" / f"hieramamba-s2-stage{stage}" / "eval"
        d.mkdir(parents=True)
        for split, qids in (("val", ("qid0", "qid1")), ("val_cf", ("qid10", "qid11"))):
            (d / f"{split}_preds.jsonl").write_text("".join(
                json.dumps({"qid": q, "pred_relevant_windows": [[top, top + 12.0, 1.0]]}) + "\n" for q in qids))
    result = {"data_sizes": {"val_queries": 2}, "rows": [{"model": "hieramamba", "seed": 2, "eval_window": None,
                                                          "scores": {}}]}
    lc.rescore(result, c, {"val_queries": 2}, tmp_path / "runs")
    assert (result["rows"][0]["scores"]["R1@0.5"], result["rows"][0]["scores"]["cf_R1@0.5"]) == (0.0, 50.0)
    with pytest.raises(ValueError, match="data_sizes"):
        lc.rescore(result, c, {"val_queries": 3}, tmp_path / "runs")
    with pytest.raises(ValueError, match="no hieramamba-s2-stage"):
        lc.rescore(result, c, {"val_queries": 2}, tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="--runs"):
        lc.rescore(result, c, {"val_queries": 2}, None)


def test_curriculum_stages():
    config = {"model": {"name": "hieramamba", "embd_dim": 32}, "data": {"max_clips": None, "max_queries": 2},
              "train": {"epochs": 5, "batch_size": 2}}
    first, last = lc.stages("hieramamba", config, [(128, 3)])
    assert (first["train"]["epochs"], last["train"]["epochs"]) == (3, 2)
    assert first["data"]["max_clips"] == 128 and last["data"]["max_clips"] is None and "eval_window" not in last["data"]
    assert (first["train"]["batch_size"], first["data"]["max_queries"]) == (4, 8)  # the 128-clip windows' batch
    (twin,) = lc.stages("hieramamba-transformer", config, [(128, 3)])
    assert twin["model"] == {"name": "hieramamba-transformer", "embd_dim": 32}
    assert (twin["train"]["epochs"], twin["data"]["max_clips"], twin["data"]["eval_window"]) == (5, 128, 128)
    assert lc.stages("mlvtg", config, [])[0]["data"]["max_clips"] is None  # no first stage
    # short to long: 128-clip windows, then 1,024-clip windows with the config's batch, then whole videos
    stages = lc.stages("hieramamba", config, [(128, 2), (1024, 2)])
    assert [(s["data"]["max_clips"], s["train"]["epochs"], s["train"]["batch_size"], s["data"]["max_queries"])
            for s in stages] == [(128, 2, 4, 8), (1024, 2, 2, 2), (None, 1, 2, 2)]
    for bad in ([(128, 5)], [(128, 3), (512, 2)], [(128, 0)], [(0, 1)]):
        with pytest.raises(ValueError, match="curriculum"):
            lc.stages("hieramamba", config, bad)
    assert lc._stage_arg("512:3") == (512, 3)
    with pytest.raises(argparse.ArgumentTypeError, match="CLIPS:EPOCHS"):
        lc._stage_arg("512")


def test_baselines_score_near_zero(tmp_path):
    root = generate_long_context_benchmark(tmp_path / "b", num_train=3, val_videos_per_gap=2, gaps=[1, 2],
                                           train_gaps=[1], queries_per_video=4, window=16, max_event_clips=4,
                                           video_dim=8, text_dim=8, latent_dim=8, hidden_dim=8, ceiling_draws=10)
    ceiling = json.loads((root / "ceiling.json").read_text())
    rows = {r["model"]: r["scores"] for r in lc.baselines(root, ceiling, draws=3)}
    assert set(rows) == {"random", "position-only", "text-only"}
    for s in rows.values():  # a blind 2-4 clip span in a few hundred clips
        assert s["R1@0.5"] <= 100 * ceiling["overall"]["windowed"] and s["flip"] <= s["R1@0.5"]


def test_merge_keeps_each_runs_setting_and_refuses_other_data(tmp_path):
    def part(name, overrides, sizes, seed):
        path = tmp_path / name
        path.write_text(json.dumps({"config": "configs/x.yaml", "overrides": overrides, "synthetic": {"seed": 0},
                                    "data_sizes": sizes, "command": f"run {name}", "machine": {"cpu": "c"},
                                    "baselines": [name], "rows": [{"model": name, "seed": seed}]}))
        return path

    a = part("a.json", ["train.epochs=16"], {"val_queries": 64}, 0)
    b = part("b.json", [], {"val_queries": 64}, 1)
    merged = lc.merge([a, b])
    assert [r["model"] for r in merged["rows"]] == ["a.json", "b.json"] and merged["baselines"] == ["a.json"]
    assert [(r["command"], r["overrides"]) for r in merged["runs"]] == [("run a.json", ["train.epochs=16"]),
                                                                        ("run b.json", [])]
    assert "overrides" not in merged and "config" not in merged
    (tmp_path / "ab.json").write_text(json.dumps(merged))          # a merged file merges again, settings kept
    again = lc.merge([tmp_path / "ab.json", part("c.json", ["x=1"], {"val_queries": 64}, 2)])
    assert [r["overrides"] for r in again["runs"]] == [["train.epochs=16"], [], ["x=1"]]
    with pytest.raises(ValueError, match="data_sizes"):
        lc.merge([a, part("d.json", [], {"val_queries": 8}, 0)])


def test_a_merge_is_scored_against_the_data_its_runs_used(tmp_path, monkeypatch):
    """The ceiling of a merge comes from the runs' recorded generator settings, not from the config's defaults."""
    seen = []
    monkeypatch.setattr(lc, "benchmark_root", lambda config: seen.append(config["data"]["synthetic"]) or tmp_path)
    monkeypatch.setattr(lc, "finish", lambda result, out: None)
    (tmp_path / "ceiling.json").write_text("{}")
    run = {"synthetic": {"generator": "long_context", "obs_noise": 0.0}, "data_sizes": {}, "rows": [],
           "baselines": [], "command": "c", "machine": {}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    assert lc.main(["--merge", str(tmp_path / "run.json"), "--out", str(tmp_path / "m.json")]) == 0
    assert seen == [run["synthetic"]]
