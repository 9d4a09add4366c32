"""Protocol helpers of benchmarks/tvsum.py: ridge closed form, LOVO folds, epoch pick, baselines on the real data."""
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


def test_summary_picks_score_and_epoch_on_cv_only():
    """The score part and epoch come from the LOVO curves; the val curves (which favour another pick) are not used."""
    def res(kind, fold, seed, add, sal):
        return {"domain": "D", "model": "m", "kind": kind, "fold": fold, "seed": seed,
                "curves": {"add": add, "saliency": sal, "fg": [0.0, 0.0, 0.0], "loss": [1.0, 1.0, 1.0]},
                "seconds": 1.0}
    results = [res("cv", k, 0, [50.0, 60.0, 55.0], [40.0, 65.0, 70.0]) for k in range(2)]
    results += [res("final", None, s, [90.0, 10.0, 10.0], [20.0, 30.0, 40.0 + s]) for s in (0, 1)]
    out = tvsum.summarise_model(results, "m", ["D"], [0, 1], [1, 2, 3])
    assert out["honest_score"] == "saliency" and out["honest_epoch"] == 3
    assert out["cv_best_per_score"] == {"add": 60.0, "saliency": 70.0, "fg": 0.0}
    assert out["honest"]["mean"]["mean"] == pytest.approx(40.5)
    assert out["paper"]["mean"]["mean"] == pytest.approx(40.5)     # best epoch of the picked score on val


def test_real_data_split_and_baselines(shared_data):
    root = shared_data / "tvsum_umt"
    if not root.is_dir():
        pytest.skip("tvsum_umt not in shared data")
    data = tvsum.load_data(root, ["BK"])
    train, val = data["BK"]["train"], data["BK"]["val"]
    assert len(train) == 4 and len(val) == 1
    assert not {it["vid"] for it in train} & {it["vid"] for it in val}
    for it in train + val:
        assert it["video"].shape == (it["saliency"].shape[0], 2048)
        assert it["text"].shape[1] == 512
        assert it["foreground"].shape == it["saliency"].shape
    # ridge: one CV and one val score per lambda, all valid percentages
    r = tvsum.ridge_domain(train, val, lambdas=(0.1, 10.0))
    assert len(r["cv"]) == 2 and len(r["val"]) == 2
    assert all(0.0 <= x <= 100.0 for x in r["cv"] + r["val"])
    # a perfect ranking by the mean score beats random, which sits well below agreement
    perfect = tvsum.score_map([it["saliency"].numpy() for it in val], val)
    rand = tvsum.random_domain(val, np.random.default_rng(0), n_draws=50).mean()
    agree = tvsum.annotator_agreement(val)
    assert rand < agree < 100.0 and rand < perfect
