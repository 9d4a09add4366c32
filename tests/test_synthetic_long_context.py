"""Long-context synthetic benchmark: windows never hold context and answer together (brute force over every window),
both readers read it, ceilings against brute-force counts, the counterfactual edits only what it says, determinism."""
import json

import numpy as np
import pytest

from vidmamba.data.lighthouse import MomentDataset
from vidmamba.data.snag import SnagDataset
from vidmamba.data.synthetic_long_context import (KINDS, _resolve, ensure_synthetic_snag,
                                                  generate_long_context_benchmark, position_rules, read_meta,
                                                  window_conflicts)

from tiny_data import tree_digest

W, E = 16, 4
SMALL = dict(num_train=2, val_videos_per_gap=2, gaps=[1, 4], train_gaps=[1], queries_per_video=4, window=W,
             min_event_clips=2, max_event_clips=E, video_dim=12, text_dim=8, latent_dim=8, hidden_dim=16,
             ceiling_draws=60, seed=3)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return generate_long_context_benchmark(tmp_path_factory.mktemp("lc") / "bench", **SMALL)


@pytest.fixture(scope="module")
def ceiling(bench):
    return json.loads((bench / "ceiling.json").read_text())


def _holds(a, s, e):
    """Whether the window of W clips starting at a overlaps clips [s, e)."""
    return a < e and s < a + W


def _assert_no_window_holds_two_key_events(ceiling):
    for q in ceiling["queries"]:
        events = q["candidates"] + [q["context"]] + ([q["cf_y"]] if q["cf_y"] else [])
        for a in range(q["T"] - W + 1):  # every window of the video
            held = [i for i, (s, e) in enumerate(events) if _holds(a, s, e)]
            if q["cf_y"]:  # Y and its counterfactual slot never exist together
                held = [i for i in held if i != len(events) - 1] if len(events) - 2 in held else held
            assert len(set(tuple(events[i]) for i in held)) <= 1, (q["qid"], a, held)


def test_no_window_holds_the_context_with_a_candidate_brute_force(ceiling):
    _assert_no_window_holds_two_key_events(ceiling)
    # the interval rule of the generator's self-check agrees with the brute force: by hand, then at random
    assert window_conflicts([[0, 4], [3 + W - 1, 30]], W) == [(0, 1)]  # clips 3 and 18 fit in one window
    assert window_conflicts([[0, 4], [3 + W, 30]], W) == []
    rng = np.random.default_rng(0)
    for _ in range(200):
        ev = [[int(s), int(s + rng.integers(1, 6))] for s in rng.integers(0, 60, 3)]
        brute = {(i, j) for a in range(-W, 70) for i in range(3) for j in range(i + 1, 3)
                 if _holds(a, *ev[i]) and _holds(a, *ev[j])}
        assert set(window_conflicts(ev, W)) == brute


def test_queries_follow_their_definition(ceiling):
    kinds = {}
    for q in ceiling["queries"]:
        kinds[q["kind"], q["gap"]] = kinds.get((q["kind"], q["gap"]), 0) + 1
        xs = [s for s, _ in q["candidates"]]
        ans = xs[q["answer"]]
        assert 3 <= q["K"] == len(xs) <= 6 and xs == sorted(xs)
        assert ans - q["context"][0] in (q["gap"] * W + E, -(q["gap"] * W + E))  # the gap knob, start to start
        if q["kind"] == "first_after":
            y = q["y"][0]
            assert xs[q["answer"]] == min(s for s in xs if s > y) and any(s < y for s in xs)
        elif q["kind"] == "last_before":
            y = q["y"][0]
            assert xs[q["answer"]] == max(s for s in xs if s < y) and any(s > y for s in xs)
        else:
            assert q["answer"] == {"second": 1, "third": 2}[q["kind"]] and q["K"] > q["answer"] + 1
    assert kinds == {(k, g): 2 for k in ("first_after", "last_before", "second", "third") for g in (1, 4)}


def test_annotations_name_what_the_answer_depends_on(bench, ceiling):
    """Each annotation's context: Y (anchored; its moved slot in val_cf), or the span from the first copy of X to the
    one before the answer (ordinal; without the deleted copy in val_cf), so that a window holding context and answer
    holds every event the answer is defined by (val from the ceiling rows, train from the gap of its lines)."""
    ann = {a["sentence_id"]: a for split in json.loads((bench / "annotations.json").read_text()).values()
           for v in split.values() for a in v["annotations"]}
    sec = lambda span: [2.0 * t for t in span]  # noqa: E731
    for q in ceiling["queries"]:
        for qid, y, answer, copies in (
                (q["qid"], q["y"], q["answer"], q["candidates"]),
                (q["cf_qid"], q["cf_y"], q["cf_answer"],
                 [c for i, c in enumerate(q["candidates"]) if q["cf_deleted"] is None or i != q["cf_deleted"]])):
            a = ann[f"qid{qid}"]
            if y is not None:
                assert a["context"] == sec(y)
            else:  # the answer's index among the copies left: the ordinal
                ans = q["candidates"][answer]
                before = [c for c in copies if c[0] < ans[0]]
                assert len(before) + 1 == {"second": 2, "third": 3}[q["kind"]]
                assert a["context"] == sec([before[0][0], before[-1][1]])
    for line in (bench / "train.jsonl").read_text().splitlines():
        r = json.loads(line)
        (s, _), (cs, ce) = r["relevant_windows"][0], ann[f"qid{r['qid']}"]["context"]
        distance = 2.0 * (r["gap"] * W + E)  # seconds, start to start, from Y or from the copy before the answer
        if r["kind"] == "first_after":
            assert s - cs == distance
        elif r["kind"] == "last_before":
            assert cs - s == distance
        else:
            assert cs < ce <= s and s - distance < ce <= s - distance + 2.0 * E


def test_both_readers_read_all_splits(bench, ceiling):
    ds = SnagDataset(bench / "annotations.json", "val", [bench / "video"], bench / "text", clip_size=1, clip_stride=1)
    item = ds[0]
    assert item["video"].shape[1] == 12 and item["texts"][0].shape[1] == 8
    by_qid = {f"qid{q['qid']}": q for q in ceiling["queries"]}
    seg = by_qid[item["text_ids"][0]]["candidates"][by_qid[item["text_ids"][0]]["answer"]]
    assert item["segments_grid"][0].tolist() == [seg[0] - 0.5, seg[1] - 0.5]  # grid point i = centre of clip i
    assert sum(len(v.queries) for v in ds.videos) == len(ceiling["queries"]) == 16
    for split in ("train", "val", "val_cf"):
        md = MomentDataset(bench / f"{split}.jsonl", bench, ["video"], "text", dataset="qvhighlight")
        sd = SnagDataset(bench / "annotations.json", split, [bench / "video"], bench / "text", clip_size=1,
                         clip_stride=1)
        assert len(md) == sum(len(v.queries) for v in sd.videos) > 0
        s = md[0]
        assert s["video"].shape[1] == 12 and s["foreground"].sum() == s["saliency"].gt(0).sum() > 0


def test_windowed_ceiling_against_a_brute_force_count(ceiling):
    per_query = []
    for q in ceiling["queries"]:  # candidates that some window can pick out, counted window by window
        seen = {tuple(c) for a in range(q["T"] - W + 1) for c in q["candidates"] if _holds(a, *c)}
        assert len(seen) == q["K"]
        per_query.append(1 / len(seen))
        assert q["windowed"] == pytest.approx(1 / len(seen))
    assert ceiling["overall"]["windowed"] == pytest.approx(np.mean(per_query))
    for g in (1, 4):
        sel = [p for p, q in zip(per_query, ceiling["queries"]) if q["gap"] == g]
        assert ceiling["by_gap"][str(g)]["windowed"] == pytest.approx(np.mean(sel))


def test_position_ceiling_against_a_brute_force_rule(ceiling):
    bins = len(ceiling["position_rules"]["1"]["second"])
    for q in ceiling["queries"]:
        rule = ceiling["position_rules"][str(q["gap"])][q["kind"]]
        scores = [rule[min(int(s * bins // q["T"]), bins - 1)] for s, _ in q["candidates"]]
        best = [i for i, v in enumerate(scores) if v == max(scores)]
        assert q["position"] == pytest.approx(1 / len(best) if q["answer"] in best else 0.0)
        assert q["position_best"] == best
    assert set(ceiling["train_position_mc"]) == {"1"} and set(ceiling["train_position_mc"]["1"]) == set(KINDS)


def test_position_ceiling_without_position_is_the_windowed_one(tmp_path):
    """One position bin: every candidate ties, so the rule's expected accuracy is E[1/K] of the placement law, K
    uniform in {3..6} ({4..6} for "third")."""
    root = generate_long_context_benchmark(tmp_path / "b", **{**SMALL, "num_train": 1, "gaps": [1],
                                                               "position_bins": 1, "ceiling_draws": 150})
    c = json.loads((root / "ceiling.json").read_text())
    for q in c["queries"]:
        assert q["position"] == pytest.approx(q["windowed"])
    e_all, e_third = np.mean([1 / k for k in range(3, 7)]), np.mean([1 / k for k in range(4, 7)])
    for kind, want in (("first_after", e_all), ("last_before", e_all), ("second", e_all), ("third", e_third)):
        assert c["by_gap"]["1"]["kinds"][kind]["position_mc"] == pytest.approx(want, abs=0.025)
        assert c["train_position_mc"]["1"][kind] == pytest.approx(want, abs=0.025)  # the training law's


def test_pad_puts_each_query_at_any_place_of_a_longer_video(tmp_path):
    """pad 4: each query's key events lie in a quarter of the video, at offsets that cover it; no window holds two
    of them (brute force)."""
    root = generate_long_context_benchmark(tmp_path / "b", **{**SMALL, "pad": 4})
    c = json.loads((root / "ceiling.json").read_text())
    starts = []
    for q in c["queries"]:
        events = q["candidates"] + [e for e in (q["y"], q["cf_y"]) if e]
        first, last = min(s for s, _ in events), max(e for _, e in events)
        assert last - first <= q["T"] / 4
        starts.append(first / q["T"])
    assert min(starts) < 0.25 and max(starts) > 0.5
    _assert_no_window_holds_two_key_events(c)


def test_pad_hides_which_copy_a_place_is():
    """The best position rule's accuracy (Monte Carlo over the placement law) falls from well above E[1/K]
    with every query spread over the video to near it with pad 4 (E[1/K] is 0.23 here)."""
    def rule_accuracy(pad):
        p = _resolve({**SMALL, "pad": pad, "ceiling_draws": 200})
        rules = position_rules(p, [1, 4])
        return np.mean([rules[g][k]["mc"] for g in (1, 4) for k in KINDS])

    spread, padded = rule_accuracy(1), rule_accuracy(4)
    assert spread > 0.38 and padded < 0.32


def test_counterfactual_changes_only_the_edited_events(bench, ceiling):
    for q in ceiling["queries"]:
        a = np.load(bench / "video" / f"{q['vid']}.npz")["features"]
        b = np.load(bench / "video" / f"{q['cf_vid']}.npz")["features"]
        assert a.shape == b.shape
    changed = {}
    for q in ceiling["queries"]:
        if q["vid"] not in changed:
            a = np.load(bench / "video" / f"{q['vid']}.npz")["features"]
            b = np.load(bench / "video" / f"{q['cf_vid']}.npz")["features"]
            changed[q["vid"]] = set(np.flatnonzero(np.any(a != b, axis=1)).tolist())
    edited = {}
    for q in ceiling["queries"]:
        xs = [s for s, _ in q["candidates"]]
        if q["cf_y"]:
            spans = [q["y"], q["cf_y"]]
            new = (min(i for i, s in enumerate(xs) if s > q["cf_y"][0]) if q["kind"] == "first_after"
                   else max(i for i, s in enumerate(xs) if s < q["cf_y"][0]))
        else:
            spans = [q["candidates"][q["cf_deleted"]]]
            assert q["cf_deleted"] < q["answer"]
            new = q["answer"] + 1  # one earlier copy fewer: the next copy is the n-th
        assert q["cf_answer"] == new != q["answer"]
        edited.setdefault(q["vid"], set()).update(c for s, e in spans for c in range(s, e))
    assert changed == edited
    cf = {a["sentence_id"]: a["segment"] for v in json.loads((bench / "annotations.json").read_text())["val_cf"]
          .values() for a in v["annotations"]}
    for q in ceiling["queries"]:
        assert cf[f"qid{q['cf_qid']}"] == [2.0 * t for t in q["candidates"][q["cf_answer"]]]


def test_deterministic_by_seed_and_cached(bench, tmp_path, monkeypatch):
    assert tree_digest(generate_long_context_benchmark(tmp_path / "again", **SMALL)) == tree_digest(bench)
    other = generate_long_context_benchmark(tmp_path / "other", **{**SMALL, "seed": 4})
    assert tree_digest(other) != tree_digest(bench)
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path / "cache"))
    root = ensure_synthetic_snag({"generator": "long_context", **SMALL})
    assert read_meta(root)["params"]["window"] == W and tree_digest(root) == tree_digest(bench)
    mtime = (root / "meta.json").stat().st_mtime_ns
    assert ensure_synthetic_snag({"generator": "long_context", **SMALL}) == root
    assert (root / "meta.json").stat().st_mtime_ns == mtime  # re-used, not rebuilt


def test_bad_parameters_are_one_clear_error():
    with pytest.raises(ValueError, match="generator"):
        ensure_synthetic_snag({"generator": "nope"})
    with pytest.raises(TypeError, match="unknown"):
        generate_long_context_benchmark("/nonexistent", gap=3)
    with pytest.raises(ValueError, match="kinds"):
        generate_long_context_benchmark("/nonexistent", kinds=["fifth"])
    for pad in (0.5, "2", True):
        with pytest.raises(ValueError, match="pad must be a number >= 1"):
            generate_long_context_benchmark("/nonexistent", pad=pad)
    from vidmamba.errors import ConfigError  # through a config: the error the CLI prints as one line
    with pytest.raises(ConfigError, match=r"data\.synthetic: hard_negatives must be true or false"):
        ensure_synthetic_snag({"generator": "long_context", "hard_negatives": "maybe"})
    with pytest.raises(ConfigError, match=r"data\.synthetic: unknown .*'gap'"):
        ensure_synthetic_snag({"generator": "long_context", "gap": 3})
    with pytest.raises(ConfigError, match=r"data\.synthetic: unknown long synthetic .*'num_videos'"):
        ensure_synthetic_snag({"num_videos": 3})                    # the default generator, "long"


def test_self_check_catches_a_window_with_context_and_candidate():
    from vidmamba.data.synthetic_long_context import LC_PARAMS, check_video

    p = {**LC_PARAMS, "window": W}
    q = {"x": [[0, 3], [40, 43], [80, 83]], "y": [60, 62], "ghost": None, "pair": (0, 0)}
    events = [((0, 0), s, e, None) for s, e in q["x"]]
    check_video(p, {"queries": [q], "events": events})
    with pytest.raises(AssertionError, match="window"):
        check_video(p, {"queries": [{**q, "y": [70, 72]}], "events": events})  # Y 8 clips before a copy
    with pytest.raises(AssertionError, match="occurs"):
        check_video(p, {"queries": [q], "events": events + [((0, 0), 120, 122, None)]})  # a distractor is an X


def test_hard_negatives_share_one_word_with_a_key_pair_and_can_be_left_out():
    from vidmamba.data.synthetic_long_context import LC_PARAMS, _distractors

    keys = [(0, 0), (1, 1)]
    p = {**LC_PARAMS, "num_verbs": 6, "num_objects": 6, "event_coverage": (0.001, 0.001)}
    key_clips = np.arange(2000) < 100  # the key events cover more than event_coverage: no random distractors
    pairs = [(v, o) for v, o, *_ in _distractors(p, key_clips.copy(), keys, np.random.default_rng(0))]
    assert len(pairs) == 4 and not set(pairs) & set(keys)
    # in order: per key pair one sharing its verb, then one sharing its object
    assert [pairs[0][0], pairs[1][1], pairs[2][0], pairs[3][1]] == [0, 0, 1, 1]
    assert pairs[0][1] != 0 and pairs[1][0] != 0 and pairs[2][1] != 1 and pairs[3][0] != 1
    p["hard_negatives"] = False
    assert _distractors(p, key_clips.copy(), keys, np.random.default_rng(0)) == []
    with pytest.raises(ValueError, match="hard_negatives"):
        generate_long_context_benchmark("/nonexistent", hard_negatives="no")
