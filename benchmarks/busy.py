"""Training on a busy machine: the demo's MLVTG and its transformer twin alone, beside a copy of themselves, and beside
two CPU-bound background processes.

Each cell runs ``benchmarks/train_step.py``'s worker (the demo's model, optimiser and batch shapes, in a fresh process:
a warm-up pass, then ``--steps`` timed steps; the kernel cache is warmed first) in one of three scenarios:

    alone        the worker alone
    pair         two identical workers started together (the time of each; "two demos at once")
    background   the worker beside two CPU-bound processes (a pure-Python loop each: a compile job, a browser tab)

and reports wall and CPU seconds per step (CPU: all the worker's threads, spinning included) and the ratios:
``pair / alone`` per model (goal <= 2.5: a fair share of 2 cores is 2x) and ``(mlvtg / twin under background) /
(mlvtg / twin alone)`` (goal <= 1.2: load must not hit MLVTG harder than the twin). ``--configs`` compares
environment settings (each ``NAME`` or ``NAME:VAR=VALUE,VAR=VALUE``; ``default``
is the product as it ships: OMP_WAIT_POLICY=PASSIVE, ``vidmamba.threads``; ``GOMP_SPINCOUNT=300000`` restores
libgomp's own default), all cells of a config run before the next; ``--rounds`` repeats the whole set, and the
medians of rounds are reported. The 1-minute load average is recorded before every cell.

    python benchmarks/busy.py                                       # the shipped defaults
    python benchmarks/busy.py --configs default libgomp-spin:GOMP_SPINCOUNT=300000 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("mlvtg", "mlvtg-transformer")
SPINNER = "while True: pass"


def parse_config(text):
    """'NAME' or 'NAME:VAR=VALUE,VAR=VALUE' -> (name, {VAR: VALUE})."""
    name, _, env = text.partition(":")
    pairs = [item.split("=", 1) for item in env.split(",") if item]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"busy.py: --configs {text!r}: expected NAME or NAME:VAR=VALUE[,VAR=VALUE]")
    return name, dict(pairs)


def worker(model, env, args):
    cmd = [sys.executable, str(HERE / "train_step.py"), "--worker", model, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    return subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def result(proc):
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"busy.py: worker failed:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def cell(scenario, model, env, args):
    """The workers' results (wall and CPU seconds per step) of ``model`` in ``scenario``: one per worker."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPINNER]) for _ in range(2 if scenario == "background"
                                                                                 else 0)]
    try:
        if spinners:
            time.sleep(1.0)                       # the background load is running before the worker starts
        procs = [worker(model, env, args) for _ in range(2 if scenario == "pair" else 1)]
        return [result(p) for p in procs]
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["default"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: the product's)")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results_busy.json"))
    args = ap.parse_args(argv)
    configs = [parse_config(c) for c in args.configs]
    t_start = time.time()
    subprocess.run([sys.executable, str(HERE / "train_step.py"), "--worker", "mlvtg", "--steps", "1"],
                   check=True, capture_output=True)                       # compile / load the kernels once
    rows = []
    for r in range(args.rounds):
        for name, env in configs:
            for scenario in ("alone", "pair", "background"):
                for model in MODELS:
                    load = round(os.getloadavg()[0], 2)
                    res = cell(scenario, model, env, args)
                    row = dict(config=name, env=env, scenario=scenario, model=model, round=r, loadavg_1min=load,
                               step_s=[round(x["step_s"], 4) for x in res],
                               cpu_step_s=[round(x["cpu_step_s"], 4) for x in res])
                    print(json.dumps(row), file=sys.stderr, flush=True)
                    rows.append(row)
    summary = {}
    for name, _ in configs:
        def median(key, s, m):
            return statistics.median(t for row in rows if row["config"] == name and row["scenario"] == s
                                     and row["model"] == m for t in row[key])

        med = {(s, m): median("step_s", s, m) for s in ("alone", "pair", "background") for m in MODELS}
        mine, twin = MODELS
        summary[name] = {
            **{f"{m}_{s}_step_s": round(med[s, m], 4) for s in ("alone", "pair", "background") for m in MODELS},
            **{f"{m}_{s}_cpu_step_s": round(median("cpu_step_s", s, m), 4) for s in ("alone", "pair", "background")
               for m in MODELS},
            **{f"{m}_pair_over_alone": round(med["pair", m] / med["alone", m], 2) for m in MODELS},
            **{f"{m}_background_over_alone": round(med["background", m] / med["alone", m], 2) for m in MODELS},
            "mlvtg_over_twin_alone": round(med["alone", mine] / med["alone", twin], 3),
            "mlvtg_over_twin_background": round(med["background", mine] / med["background", twin], 3),
        }
        summary[name]["background_ratio_over_idle_ratio"] = round(
            summary[name]["mlvtg_over_twin_background"] / summary[name]["mlvtg_over_twin_alone"], 3)
    result_json = dict(command="python benchmarks/busy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                       cpus=os.cpu_count(), threads=args.threads or "default", steps=args.steps,
                       batch_size=args.batch_size, loadavg_1_5_15min_end=[round(x, 2) for x in os.getloadavg()],
                       summary=summary, rows=rows, wall_s=round(time.time() - t_start, 1))
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result_json, args.out)


if __name__ == "__main__":
    main()
