"""benchmarks/long_video.py: subprocess rows (ok / oom / timeout / skipped), accumulation of the results json, the
64k/16k summary and the run-time estimate."""
import importlib.util
import json
import pathlib

import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "long_video.py"
_spec = importlib.util.spec_from_file_location("bench_long_video", _PATH)
lv = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lv)

TINY = ["--preset", "tiny", "--threads", "1", "--no-mad", "--repeats", "1"]


def _rows(path):
    return {(r["model"], r["mode"], r["length"]): r for r in json.loads(path.read_text())["rows"]}


@pytest.mark.slow
def test_tiny_run_then_timeout_replaces_only_its_row(tmp_path):
    out = tmp_path / "res.json"
    lv.main(TINY + ["--models", "mlvtg", "--lengths", "64", "--out", str(out)])
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 1 and data["runs"][0]["command"].startswith("python benchmarks/long_video.py")
    assert len(data["runs"][0]["loadavg_1_5_15min_start"]) == 3
    rows = _rows(out)
    assert set(rows) == {("mlvtg", "infer", 64), ("mlvtg", "fwdbwd", 64)}
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["time_s"] > 0 and len(r["times_s"]) == 1 and r["time_s"] == r["times_s"][0]
        # max RSS of the whole worker: at least what it held after building the model and inputs
        assert r["peak_mem_mib"] >= r["setup_rss_mib"] > 50
        assert r["config"]["hidden_dim"] == 16 and r["threads"] == 1 and r["preset"] == "tiny"
    table = lv.render(data)
    assert "| mlvtg | cpu | 1 | keep | infer |" in table and "| mlvtg | cpu | 1 | keep | fwdbwd |" in table

    # a second run with an impossible time cap: its row becomes "timeout", the other row and the first run stay
    lv.main(TINY + ["--models", "mlvtg", "--modes", "infer", "--lengths", "64", "--time-cap-s", "0.5",
                    "--out", str(out)])
    data = json.loads(out.read_text())
    assert len(data["runs"]) == 2 and len(data["rows"]) == 2
    rows = _rows(out)
    assert rows[("mlvtg", "infer", 64)]["status"] == "timeout"
    assert "0.5 s" in rows[("mlvtg", "infer", 64)]["reason"]
    assert rows[("mlvtg", "fwdbwd", 64)]["status"] == "ok"
    assert "timeout (> 0.5 s)" in lv.render(data)


@pytest.mark.slow
def test_memory_cap_gives_oom_and_skips_longer_lengths(tmp_path):
    # tiny twin, 2 heads: the attention scores at 8192 clips alone are 2 * 8192^2 * 4 B = 512 MiB > the 0.5 GiB cap
    # (which also has to hold the ~0.25 GiB of interpreter and torch); the 1024-clip warm-up needs 8 MiB
    out = tmp_path / "res.json"
    lv.main(TINY + ["--models", "mlvtg-transformer", "--modes", "infer", "--lengths", "8192", "16384",
                    "--mem-cap-gib", "0.5", "--out", str(out)])
    rows = _rows(out)
    oom = rows[("mlvtg-transformer", "infer", 8192)]
    assert oom["status"] == "oom" and "0.5 GiB cap" in oom["reason"], oom
    assert rows[("mlvtg-transformer", "infer", 16384)]["status"] == "skipped"
    assert rows[("mlvtg-transformer", "infer", 16384)]["reason"] == "L=8192 was oom"
    assert "oom (cap 0.5 GiB)" in lv.render(json.loads(out.read_text()))


def _row(model, mode, length, time_s, mem, status="ok", scenario=None):
    return dict(device="cpu", threads=2, preset="real", model=model, mode=mode, length=length, scenario=scenario,
                status=status, time_s=time_s, peak_mem_mib=mem, mem_cap_mib=10240.0, time_cap_s=150.0)


def test_summary_ratios_and_mad_goal():
    rows = [_row("mlvtg", "infer", 16384, 2.0, 1000.0), _row("mlvtg", "infer", 65536, 8.4, 3500.0),
            _row("mlvtg-transformer", "infer", 16384, 1.0, 9000.0),
            _row("mlvtg-transformer", "infer", 65536, None, None, status="oom"),
            _row("hieramamba", "infer", 36000, 19.0, 8 * 1024.0 - 1, scenario="mad"),
            _row("hieramamba-transformer", "infer", 36000, 25.0, 100.0, scenario="mad")]
    s = lv.summarize(rows)
    ratios = {e["model"]: e for e in s["ratio_64k_over_16k"]}
    assert ratios["mlvtg"]["time_ratio"] == 4.2 and ratios["mlvtg"]["peak_mem_ratio"] == 3.5
    assert ratios["mlvtg"]["time_goal_le_4.5"] is True
    assert ratios["mlvtg-transformer"] == dict(device="cpu", threads=2, preset="real", allocator="default",
                                               model="mlvtg-transformer", mode="infer", at_64k="oom")
    mad = {e["model"]: e for e in s["mad_scenario"]}
    assert mad["hieramamba"]["goal_met"] is True and mad["hieramamba-transformer"]["goal_met"] is False


def test_estimate_is_power_law_through_last_two_points():
    done = [dict(status="ok", length=1024, time_s=1.0, times_s=[1.0], wall_s=3.0),
            dict(status="ok", length=4096, time_s=8.0, times_s=[8.0], wall_s=10.0)]
    # exponent log(8)/log(4) = 1.5; overhead = 10 - 8 = 2 s
    assert lv.estimate_s(done, 16384) == pytest.approx(2.0 + 8.0 * 4 ** 1.5)
    done[1].update(time_s=64.0, times_s=[64.0], wall_s=66.0)                     # exponent 3 is clamped to 2
    assert lv.estimate_s(done, 16384) == pytest.approx(2.0 + 64.0 * 16)
    assert lv.estimate_s(done[:1], 4096) == pytest.approx(2.0 + 4.0)             # one point: linear
    assert lv.estimate_s([], 4096) is None


def test_plan_has_no_training_at_256k():
    args = lv.argparse.Namespace(models=["mlvtg"], modes=["infer", "fwdbwd"], lengths=[262144, 1024], mad=True,
                                 mad_only=False)
    jobs = lv.plan(args)
    assert [(j["length"], j["mode"]) for j in jobs] == [(1024, "infer"), (1024, "fwdbwd"), (262144, "infer")]
    args.models = ["hieramamba"]
    assert lv.plan(args)[-1] == dict(model="hieramamba", mode="infer", length=36000, scenario="mad")


def test_save_merges_runs_and_never_lets_skipped_replace_a_measured_row(tmp_path):
    out = tmp_path / "res.json"
    run1, run2 = dict(started="t1", command="a"), dict(started="t2", command="b")
    lv.save_results(out, run1, [_row("mlvtg", "infer", 16384, 2.0, 1000.0), _row("mlvtg", "infer", 65536, 8.0, 4e3)])
    data = lv.save_results(out, run2, [_row("mlvtg", "infer", 16384, None, None, status="skipped"),
                                       _row("mlvtg", "infer", 65536, None, None, status="timeout"),
                                       _row("mlvtg", "fwdbwd", 1024, 1.0, 500.0)])
    assert [r["command"] for r in data["runs"]] == ["a", "b"]
    rows = _rows(out)
    assert rows[("mlvtg", "infer", 16384)]["status"] == "ok"             # kept: the new row ran nothing
    assert rows[("mlvtg", "infer", 65536)]["status"] == "timeout"        # replaced: the new row was run
    assert len(rows) == 3 and data["summary"]["ratio_64k_over_16k"][0]["at_64k"] == "timeout"
