"""benchmarks/scan_floor.py: its floor kernels compute the scan (output and every gradient) as the sequential
reference does, so the floor they time is the work of a real scan; ratios of the summary."""
import importlib.util
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "scan_floor.py"
_spec = importlib.util.spec_from_file_location("bench_scan_floor", _PATH)
sf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sf)


@pytest.mark.slow
def test_floor_kernels_match_the_reference():
    assert sf.check_floor(batch=2, length=70, d=128, n=3) < 1e-5


def test_summary_ratios():
    """Ratios per (mode, batch) and layout; with several rounds, the median and the [min, max] of each."""
    times = dict(ours_bld=2.0, ours_bdl=3.0, floor=1.0, loop=30.0)
    rows = [dict(batch=1, mode="fwd", impls={k: dict(time_ms=v) for k, v in times.items()}),
            dict(batch=8, mode="fwdbwd", impls={k: dict(time_ms=v) for k, v in times.items() if k != "loop"})]
    summary, spread = sf.summarize(rows)
    assert summary == {"fwd_b1_bld_ours_over_floor": 2.0, "fwd_b1_bld_loop_over_ours": 15.0,
                       "fwd_b1_bdl_ours_over_floor": 3.0, "fwd_b1_bdl_loop_over_ours": 10.0,
                       "fwd_b1_loop_over_floor": 30.0,
                       "fwdbwd_b8_bld_ours_over_floor": 2.0, "fwdbwd_b8_bdl_ours_over_floor": 3.0}
    assert spread["fwd_b1_bld_ours_over_floor"] == [2.0, 2.0]
    rounds = [dict(batch=8, mode="fwd", impls={k: dict(time_ms=v) for k, v in dict(times, floor=f).items()})
              for f in (1.0, 1.25, 2.0)]                            # ours_bld / floor: 2.0, 1.6, 1.0
    summary, spread = sf.summarize(rounds)
    assert summary["fwd_b8_bld_ours_over_floor"] == 1.6 and spread["fwd_b8_bld_ours_over_floor"] == [1.0, 2.0]
    assert summary["fwd_b8_loop_over_floor"] == 24.0 and spread["fwd_b8_loop_over_floor"] == [15.0, 30.0]


def test_rounds_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        sf.main(["--rounds", "0"])
    assert "--rounds must be at least 1 (got 0)" in capsys.readouterr().err
