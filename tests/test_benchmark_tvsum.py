"""Protocol helpers of benchmarks/tvsum.py: ridge closed form, LOVO folds, rotations, honest picks, baselines on the
real data."""
import importlib.util
import pathlib

import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "tvsum.py"
_spec = importlib.util.spec_from_file_location("bench_tvsum", _PATH)
tvsum = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tvsum)


@pytest.mark.parametrize("n,d", [(30, 80), (80, 30)])  # dual and primal branches
def test_ridge_matches_lstsq(n, d):
    rng = np.random.default_rng(0)
    X, y, lam = rng.normal(size=(n, d)), rng.normal(size=n), 0.7
    w, b = tvsum.ridge_fit(X, y, lam)
    # augmented least squares: [X 1; sqrt(lam) I 0] [w; b] = [y; 0] (intercept unpenalised)
    A = np.block([[X, np.ones((n, 1))], [np.sqrt(lam) * np.eye(d), np.zeros((d, 1))]])
    ref = np.linalg.lstsq(A, np.r_[y, np.zeros(d)], rcond=None)[0]
    np.testing.assert_allclose(w, ref[:d], rtol=1e-8, atol=1e-10)
    assert b == pytest.approx(ref[d], abs=1e-9)


def test_lovo_folds():
    folds = tvsum.lovo_folds(4)
    assert [k for _, k in folds] == [0, 1, 2, 3]
    for tr, k in folds:
        assert sorted(tr + [k]) == [0, 1, 2, 3] and k not in tr
    with pytest.raises(ValueError):
        tvsum.lovo_folds(1)


def test_pick_epoch_uses_grid_and_earliest_tie():
    curves = np.array([[1.0, 5.0, 3.0, 5.0, 9.0], [1.0, 5.0, 3.0, 5.0, 9.0]])
    assert tvsum.pick_epoch(curves, [2, 3, 4]) == 2      # epoch 5 is best but not in the grid; 2 and 4 tie
    assert tvsum.pick_epoch(curves, [1, 5]) == 5


def test_jobs_cover_every_rotation_without_its_val_video():
    """5 videos: 10 LOVO jobs (3 train, 2 held out) and 5 rotations per seed; no job used for rotation v trains on v,
    and each rotation gets exactly the 4 LOVO folds of its 4 training videos."""
    data = {"D": [object()] * 5}
    jobs = tvsum.make_jobs(data, ["mlvtg"], [0, 1], 3)
    cv = [j for j in jobs if j["kind"] == "cv"]
    final = [j for j in jobs if j["kind"] == "final"]
    assert len(cv) == 10 and all(len(j["train"]) == 3 and len(j["eval"]) == 2 and j["seed"] == 0 for j in cv)
    assert len(final) == 10 and sorted(j["eval"][0] for j in final) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    for v in range(5):
        folds = [(j["train"], [u for u in j["eval"] if u != v][0]) for j in cv if v in j["eval"]]
        assert all(v not in tr for tr, _ in folds)
        assert sorted(held for _, held in folds) == [u for u in range(5) if u != v]
    assert len({tvsum.job_key(j) for j in jobs}) == len(jobs)


def _fake_results(cv_curve, val_curve):
    """Results of make_jobs' jobs for one domain of 5 videos: every LOVO held-out video gets ``cv_curve(part)``,
    every val video ``val_curve(part, seed)``."""
    out = []
    for j in tvsum.make_jobs({"D": [None] * 5}, ["m"], [0, 1], 3, model_cfg={}):
        curves = {p: [cv_curve(p) if j["kind"] == "cv" else val_curve(p, j["seed"]) for _ in j["eval"]]
                  for p in tvsum.SCORE_PARTS}
        out.append({**{k: j[k] for k in ("domain", "model", "kind", "train", "eval", "seed")}, "curves": curves,
                    "seconds": 1.0})
    return out


def test_summary_picks_score_and_epoch_on_cv_only(monkeypatch):
    """The score part and epoch come from the LOVO curves; the val curves (which favour another pick) are not used."""
    monkeypatch.setitem(tvsum.VARIANTS, "m", ("mlvtg", {}))
    cv = {"add": [50.0, 60.0, 55.0], "saliency": [40.0, 65.0, 70.0], "fg": [0.0, 0.0, 0.0]}
    val = {"add": [90.0, 10.0, 10.0], "saliency": [20.0, 30.0, 40.0], "fg": [99.0, 99.0, 99.0]}
    results = _fake_results(lambda p: cv[p], lambda p, s: [x + s for x in val[p]])
    out = tvsum.summarise_model(results, "m", ["D"], 5, [0, 1], [1, 2, 3])
    assert all(p["score"] == "saliency" and p["epoch"] == 3 for p in out["picks"])
    assert out["picks"][0]["cv_best_per_score"] == {"add": 60.0, "saliency": 70.0, "fg": 0.0}
    assert out["honest"]["mean"]["mean"] == pytest.approx(40.5)
    assert out["honest"]["per_seed_mean"] == {"0": 40.0, "1": 41.0}
    assert out["honest_per_video"] == {"D": [40.5] * 5}
    assert out["paper"]["mean"]["mean"] == pytest.approx(40.5)     # best epoch of the picked score on val
    assert out["honest_score_parts"]["add"]["mean"] == pytest.approx(10.5)


@pytest.mark.slow
def test_real_data_rotations_and_baselines(shared_data):
    root = shared_data / "tvsum_umt"
    if not root.is_dir():
        pytest.skip("tvsum_umt not in shared data")
    videos = tvsum.load_data(root, ["BK"])["BK"]
    from vidmamba.data.tvsum_umt import read_tvsum_domain_splits
    split = read_tvsum_domain_splits(root)["BK"]
    assert [it["vid"] for it in videos] == split["val"] + split["train"]     # rotation 0 = the standard split
    for it in videos:
        assert it["video"].shape == (it["saliency"].shape[0], 2048)
        assert it["text"].shape[1] == 512
        assert it["foreground"].shape == it["saliency"].shape
    # ridge: one CV and one val score per lambda, all valid percentages
    r = tvsum.ridge_domain(videos[1:], videos[:1], lambdas=(0.1, 10.0))
    assert len(r["cv"]) == 2 and len(r["val"]) == 2
    assert all(0.0 <= x <= 100.0 for x in r["cv"] + r["val"])
    # a perfect ranking by the mean score beats random, which sits well below agreement
    val = videos[:1]
    perfect = tvsum.score_map([it["saliency"].numpy() for it in val], val)
    rand = tvsum.random_domain(val, np.random.default_rng(0), n_draws=50).mean()
    agree = tvsum.annotator_agreement(val)
    assert rand < agree < 100.0 and rand < perfect
