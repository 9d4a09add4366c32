"""Long-video scaling: time and peak memory of HieraMamba, MLVTG and their transformer twins versus number of clips.

Batch 1, one query. Two modes: "infer" = ``model.predict(batch)`` end to end in eval mode (encoding + decoding), and
"fwdbwd" = ``model(batch)["loss"].backward()`` in train mode with a ground-truth moment in the batch. Widths are the
real configs' (``--preset real``): HieraMamba and its twin from ``configs/hieramamba_mad.yaml`` (MAD: CLIP 512-d at
5 fps, D 512, 9 AMP blocks, input stride 2), MLVTG and its twin from ``configs/mlvtg_qvhighlights_aligner_only.yaml`` (hidden 1024,
4 blocks, 2818-d video). ``--preset tiny`` is a few-channel version for tests.

Every (model, length, mode) runs in a fresh SUBPROCESS with
- a memory cap: after the model and inputs are built, the process's address space may grow by at most
  ``cap - RSS so far`` (``RLIMIT_AS``; CUDA: ``set_per_process_memory_fraction``). An allocation beyond it fails and the
  row is recorded as ``oom`` (so is a kill by SIGKILL, i.e. the kernel's OOM killer);
- a time cap on the whole subprocess (start-up, model build, warm-up and timed runs): past it the row is ``timeout``.
Rows after a failure of the same series (model, mode), rows whose time estimated from the series' shorter lengths
exceeds the time cap, and rows that would overrun the run budget (``--budget-min``) are recorded as ``skipped`` with
the reason, so the whole run stays within its budget.

Time: one warm-up call on a short input (``min(L, 1024)`` clips) is excluded; then the median of timed calls (more
than one while the calls so far took less than ``REPEAT_BUDGET_S``, and at least ``--min-repeats``; with two or more
the row also has ``steady_s``, the fastest call after the first, whose memory the allocator already holds); ``cpu_s``
is the process's user + system CPU seconds per timed call (all threads), a load-independent companion of the wall
time on a shared machine, split into ``user_s`` and ``sys_s`` (system time is mostly the kernel zeroing freshly
touched pages: ``minor_faults`` per call counts them). Peak
memory: the subprocess's max RSS (``ru_maxrss``, everything: interpreter, torch, weights, inputs) on CPU;
``torch.cuda.max_memory_allocated`` over the timed calls on CUDA.

Rows accumulate in the results json (``--out``, default ``benchmarks/results_long_video.json``, written atomically
after every row): a row replaces an older one with the same (device, threads, preset, model, mode, length), except that
a "skipped" row never replaces one that was run. Several runs may write to one file at once (a lock serialises them).

    python benchmarks/long_video.py                                 # everything (budget 25 min)
    python benchmarks/long_video.py --models mlvtg mlvtg-transformer --lengths 1024 4096
    python benchmarks/long_video.py --models hieramamba --mad-only  # the MAD scenario (36k clips, predict)
    python benchmarks/long_video.py --render benchmarks/results_long_video.json   # markdown table
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pathlib
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results_long_video.json"
LENGTHS = [1024, 4096, 16384, 65536, 262144]
INFER_ONLY_FROM = 262144            # lengths >= this are measured in inference only
MODES = ("infer", "fwdbwd")
MAD_CLIPS = 36000                   # a 2-hour movie at 5 fps
MAD_GOAL_S, MAD_GOAL_GIB = 20.0, 8.0
RATIO_GOAL = 4.5
WARMUP_CLIPS = 1024
REPEAT_BUDGET_S = 10.0
QUERY_TOKENS = 20

# model -> (batch family, YAML config whose `model:` section gives the real widths); TINY: per-family test widths
MODELS = {
    "hieramamba": ("snag", "configs/hieramamba_mad.yaml"),
    "hieramamba-transformer": ("snag", "configs/hieramamba_mad.yaml"),
    "mlvtg": ("moment", "configs/mlvtg_qvhighlights_aligner_only.yaml"),
    "mlvtg-transformer": ("moment", "configs/mlvtg_qvhighlights_aligner_only.yaml"),
}
TINY = {
    "snag": dict(preset="mad", video_dim=8, text_dim=8, embd_dim=16, text_embd_dim=16, num_blocks=3, d_state=8,
                 headdim=8, fusion_heads=2, max_seq_len=64),
    "moment": dict(video_dim=8, text_dim=8, hidden_dim=16, num_layers=1, d_state=4, n_heads=2, use_tef=True),
}


# ---------------------------------------------------------------------------------------------------------------------
# the worker: one (model, length, mode) in this process
# ---------------------------------------------------------------------------------------------------------------------
def model_config(model: str, preset: str) -> dict:
    """``create_model`` keyword arguments of ``model`` at ``preset`` ("real": its YAML config; "tiny": few channels)."""
    family, path = MODELS[model]
    if preset == "tiny":
        return dict(TINY[family])
    import yaml

    with open(ROOT / path) as f:
        cfg = dict(yaml.safe_load(f)["model"])
    cfg.pop("name")
    return cfg


def make_batch(family: str, cfg, length: int, mode: str, device):
    """A batch of one video of ``length`` random clips and one random query of QUERY_TOKENS tokens; ``fwdbwd``
    batches carry one ground-truth moment (about 1% of the video, at 40%)."""
    import torch

    g = torch.Generator().manual_seed(length)
    video = torch.randn(1, length, cfg.video_dim, generator=g)
    text = torch.randn(1, QUERY_TOKENS, cfg.text_dim, generator=g)
    start, width = int(0.4 * length), max(2, length // 100)
    batch = {"video": video, "video_mask": torch.ones(1, length, dtype=torch.bool), "text": text,
             "text_mask": torch.ones(1, QUERY_TOKENS, dtype=torch.bool)}
    if family == "snag":
        grid = float(cfg.stride)                                     # ground truth in clips after the input stride
        batch.update(query_index=torch.zeros(1, dtype=torch.long), vid=["bench"], text_ids=["q0"])
        if mode == "fwdbwd":
            batch["segments_grid"] = torch.tensor([[start / grid, (start + width) / grid]])
    else:
        cl = cfg.clip_length
        batch.update(clip_length=[cl], duration=[length * cl])
        if mode == "fwdbwd":
            fg = torch.zeros(1, length, dtype=torch.bool)
            fg[0, start:start + width] = True
            batch.update(foreground=fg, windows=torch.tensor([[[start * cl, (start + width) * cl]]]),
                         windows_mask=torch.ones(1, 1, dtype=torch.bool), saliency=fg.float())
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # Linux: KiB


def _usage() -> tuple[float, float, int]:
    """(user CPU seconds, system CPU seconds, minor page faults) of this process (all its threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime, ru.ru_stime, ru.ru_minflt


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _cap_memory(cap_mib: float, device) -> None:
    """Let the process grow by at most ``cap - current RSS`` more (CPU), or use at most ``cap`` (CUDA)."""
    import torch

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_mib * 2 ** 20 / total), device)
        return
    grow = max(0.0, cap_mib * 1024 - _proc_status_kib("VmRSS"))
    limit = int((_proc_status_kib("VmSize") + grow) * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _is_oom(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text \
        or "cannot allocate memory" in text


def measure(job: dict) -> dict:
    """Build the model, warm up, cap memory, time ``mode`` at ``length`` clips. Returns the row's measurements."""
    import torch

    from vidmamba.allocator import keep_freed_memory
    from vidmamba.models import create_model

    if job["allocator"] == "keep":
        keep_freed_memory()
    torch.set_num_threads(job["threads"])
    torch.manual_seed(0)
    device = torch.device(job["device"])
    family = MODELS[job["model"]][0]
    model = create_model(job["model"], **job["config"]).to(device)
    cfg = model.cfg
    batch = make_batch(family, cfg, job["length"], job["mode"], device)
    warm = make_batch(family, cfg, min(job["length"], WARMUP_CLIPS), job["mode"], device)

    if job["mode"] == "infer":
        model.eval()

        def step(b):
            return model.predict(b)
    else:
        model.train()

        def step(b):
            model(b)["loss"].backward()
            model.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    setup_rss = _maxrss_mib()
    try:
        _cap_memory(job["mem_cap_mib"], device)
        step(warm)
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times: list[float] = []
        usage0 = _usage()
        while len(times) < job["min_repeats"] or (len(times) < job["repeats"] and sum(times) < REPEAT_BUDGET_S):
            t0 = time.perf_counter()
            step(batch)
            sync()
            times.append(time.perf_counter() - t0)
        user, system, faults = ((b - a) / len(times) for a, b in zip(usage0, _usage()))
    except (RuntimeError, MemoryError) as err:
        if not _is_oom(err):
            raise
        return dict(status="oom", reason=f"allocation failed under the {job['mem_cap_mib'] / 1024:g} GiB cap: "
                                         f"{str(err).splitlines()[0][:160]}")
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else _maxrss_mib()
    steady = {} if len(times) < 2 else dict(steady_s=round(min(times[1:]), 4))   # memory already touched and kept
    return dict(status="ok", time_s=round(statistics.median(times), 4), times_s=[round(t, 4) for t in times], **steady,
                cpu_s=round(user + system, 3), user_s=round(user, 3), sys_s=round(system, 3),
                minor_faults=round(faults),
                peak_mem_mib=round(peak, 1), setup_rss_mib=round(setup_rss, 1),
                params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2))


# ---------------------------------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------------------------------
def run_subprocess(job: dict) -> dict:
    """``measure(job)`` in a fresh process under the job's time cap; failures become ``oom`` / ``timeout`` /
    ``error`` rows."""
    env = dict(os.environ, OMP_NUM_THREADS=str(job["threads"]), MKL_NUM_THREADS=str(job["threads"]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True,
                              text=True, env=env, timeout=job["time_cap_s"])
    except subprocess.TimeoutExpired:
        return dict(status="timeout", reason=f"subprocess (start-up, warm-up, timed call) over the "
                                             f"{job['time_cap_s']:g} s cap", wall_s=round(time.perf_counter() - t0, 1))
    wall = round(time.perf_counter() - t0, 1)
    if proc.returncode == -9:
        return dict(status="oom", reason="killed by SIGKILL (kernel OOM killer)", wall_s=wall)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return dict(status="error", reason=lines[-1][:300] if lines else f"rc {proc.returncode}", wall_s=wall)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]), wall_s=wall)


SERIES = ("device", "threads", "preset", "allocator", "model", "mode")  # a row's key is its series + its length


def row_key(row: dict) -> tuple:
    """(device, threads, preset, allocator, model, mode, length); rows from before ``--allocator`` are "default"."""
    return tuple(row.get(k, "default") if k == "allocator" else row[k] for k in SERIES + ("length",))


def estimate_s(done: list[dict], length: int) -> float | None:
    """Wall seconds of a run at ``length`` extrapolated from the ok rows of the same series: power law through the
    last two (exponent clamped to [1, 2]), linear from one."""
    ok = sorted((r for r in done if r["status"] == "ok"), key=lambda r: r["length"])
    if not ok:
        return None
    last = ok[-1]
    exp = 1.0
    if len(ok) >= 2 and ok[-2]["time_s"] > 0:
        exp = math.log(last["time_s"] / ok[-2]["time_s"]) / math.log(last["length"] / ok[-2]["length"])
        exp = min(2.0, max(1.0, exp))
    grown = last["time_s"] * (length / last["length"]) ** exp
    return last["wall_s"] - last["time_s"] * len(last["times_s"]) + grown


def plan(args) -> list[dict]:
    """The jobs of this run, in the order they run: by length, then model, then mode (short lengths first)."""
    jobs = []
    lengths = [] if args.mad_only else sorted(args.lengths)
    for length in lengths:
        for model in args.models:
            for mode in args.modes:
                if mode == "fwdbwd" and length >= INFER_ONLY_FROM:
                    continue
                jobs.append(dict(model=model, mode=mode, length=length, scenario=None))
    if args.mad or args.mad_only:
        jobs += [dict(model=m, mode="infer", length=MAD_CLIPS, scenario="mad") for m in args.models
                 if MODELS[m][0] == "snag" or args.mad_only]
    return jobs


def load_results(path) -> dict:
    path = pathlib.Path(path)
    if not path.exists():
        return {"runs": [], "rows": []}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"{path}: not valid JSON ({err}); move it away to start a new results file")
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not isinstance(data.get("runs"), list):
        raise SystemExit(f"{path}: expected an object with 'runs' and 'rows' lists (a long_video.py results file)")
    return data


def save_results(path, run_info: dict, rows: list[dict]) -> dict:
    """Merge this run's info and rows into the results file (under a lock, so concurrent runs writing to one file
    keep each other's rows; a row replaces an older one with the same key unless it is "skipped" and the older one
    was run) and write it atomically."""
    import fcntl

    from vidmamba.utils import atomic_write_text

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    with open(pathlib.Path(tempfile.gettempdir()) / f"vidmamba_long_video_{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load_results(path)
        data["runs"] = [r for r in data["runs"] if r["started"] != run_info["started"]
                        or r["command"] != run_info["command"]] + [run_info]
        def key(r):
            return row_key(r), r.get("scenario")

        old = {key(r): r for r in data["rows"]}
        # a "skipped" row (nothing was run) never replaces a row that was run
        new = [r for r in rows if r["status"] != "skipped" or old.get(key(r), r)["status"] == "skipped"]
        mine = {key(r) for r in new}
        data["rows"] = [r for r in data["rows"] if key(r) not in mine] + new
        data["summary"] = summarize(data["rows"])
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return data


def summarize(rows: list[dict]) -> dict:
    """64k/16k time and memory ratios per series (see ``SERIES``) and the MAD goal checks."""
    ok = {row_key(r): r for r in rows if r["status"] == "ok" and r.get("scenario") is None}
    out: dict = {"ratio_64k_over_16k": [], "mad_scenario": []}
    for key, r16 in sorted(ok.items()):
        if key[-1] != 16384:
            continue
        r64 = ok.get(key[:-1] + (65536,))
        entry = dict(zip(SERIES, key[:-1]))
        if r64 is None:
            other = next((r for r in rows if row_key(r) == key[:-1] + (65536,)), None)
            entry["at_64k"] = other["status"] if other else "not run"
        else:
            entry["time_ratio"] = round(r64["time_s"] / r16["time_s"], 2)
            for field, name in (("cpu_s", "cpu_time_ratio"), ("user_s", "user_time_ratio"),
                                ("sys_s", "sys_time_ratio"), ("minor_faults", "minor_faults_ratio")):
                if r64.get(field) and r16.get(field):
                    entry[name] = round(r64[field] / r16[field], 2)
            entry["peak_mem_ratio"] = round(r64["peak_mem_mib"] / r16["peak_mem_mib"], 2)
            entry["time_goal_le_4.5"] = entry["time_ratio"] <= RATIO_GOAL
        out["ratio_64k_over_16k"].append(entry)
    for r in rows:
        if r.get("scenario") == "mad":
            entry = {k: v for k, v in zip(SERIES, row_key(r)) if k != "mode"}  # the scenario is always "infer"
            entry["status"] = r["status"]
            if r["status"] == "ok":
                entry.update(time_s=r["time_s"], peak_mem_gib=round(r["peak_mem_mib"] / 1024, 2),
                             goal_met=r["time_s"] < MAD_GOAL_S and r["peak_mem_mib"] / 1024 < MAD_GOAL_GIB)
            out["mad_scenario"].append(entry)
    return out


def run(args) -> dict:
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    load_results(args.out)                      # fail early on a file that is not a results file
    t_start = time.time()
    run_info = dict(started=time.strftime("%Y-%m-%dT%H:%M:%S"), command="python benchmarks/long_video.py "
                    + " ".join(args.argv), device=device, threads=args.threads, preset=args.preset,
                    machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(),
                                 torch=torch.__version__, python=platform.python_version(),
                                 gpu=torch.cuda.get_device_name(0) if device == "cuda" else None),
                    mem_cap_mib=args.mem_cap_gib * 1024, time_cap_s=args.time_cap_s, budget_min=args.budget_min,
                    loadavg_1_5_15min_start=[round(x, 2) for x in os.getloadavg()])
    rows: list[dict] = []
    series: dict[tuple, list[dict]] = {}
    for job in plan(args):
        job.update(device=device, threads=args.threads, preset=args.preset, allocator=args.allocator,
                   repeats=args.repeats, min_repeats=args.min_repeats,
                   mem_cap_mib=args.mem_cap_gib * 1024, time_cap_s=args.time_cap_s,
                   config=model_config(job["model"], args.preset))
        done = series.setdefault((job["model"], job["mode"], job["scenario"]), [])
        failed = next((r for r in done if r["status"] != "ok"), None)
        est = estimate_s(done, job["length"])
        left = args.budget_min * 60 - (time.time() - t_start)
        if failed is not None:
            res = dict(status="skipped", reason=f"L={failed['length']} was {failed['status']}")
        elif est is not None and est > args.time_cap_s:
            res = dict(status="skipped", reason=f"estimated {est:.0f} s > the {args.time_cap_s:g} s time cap "
                                                f"(from the shorter lengths)")
        elif min(args.time_cap_s, 1.5 * est if est is not None else args.time_cap_s) > left:
            res = dict(status="skipped", reason=f"run budget: {left:.0f} s left of {args.budget_min:g} min")
        else:
            load = [round(x, 2) for x in os.getloadavg()]
            res = dict(run_subprocess(job), loadavg_1_5_15min_at_start=load)
        row = {k: job[k] for k in SERIES + ("length", "scenario", "mem_cap_mib", "time_cap_s", "config")}
        row.update(res, run_started=run_info["started"])
        done.append(row)
        rows.append(row)
        run_info["loadavg_1_5_15min_end"] = [round(x, 2) for x in os.getloadavg()]
        run_info["wall_s"] = round(time.time() - t_start, 1)
        save_results(args.out, run_info, rows)
        print(json.dumps({k: v for k, v in row.items() if k != "config"}), file=sys.stderr, flush=True)
    return save_results(args.out, run_info, rows)


# ---------------------------------------------------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------------------------------------------------
def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    if r["status"] == "ok":
        cpu = f" (cpu {r['cpu_s']:.1f})" if "cpu_s" in r else ""
        if "sys_s" in r:
            cpu = f" (user {r['user_s']:.1f} + sys {r['sys_s']:.1f})"
        return f"{r['time_s']:.1f} s{cpu} / {r['peak_mem_mib'] / 1024:.2f} GiB"
    if r["status"] == "oom":
        return f"oom (cap {r['mem_cap_mib'] / 1024:g} GiB)"
    if r["status"] == "timeout":
        return f"timeout (> {r['time_cap_s']:g} s)"
    return r["status"]


def render(data: dict) -> str:
    """Markdown: one line per series (``SERIES``), lengths as columns, plus the 64k/16k ratio."""
    rows = [r for r in data["rows"] if r.get("scenario") is None]
    lengths = sorted({r["length"] for r in rows})
    ratios = {tuple(e[k] for k in SERIES): e for e in summarize(data["rows"])["ratio_64k_over_16k"]}
    head = (["model", "device", "threads", "allocator", "mode"]
            + [f"{n // 1024}k" if n % 1024 == 0 else str(n) for n in lengths] + ["64k/16k time"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    series = sorted({row_key(r)[:-1] for r in rows}, key=lambda k: (k[0], k[2], k[1], k[3], k[4], MODES.index(k[5])))
    by_key = {row_key(r): r for r in rows}
    for key in series:
        ratio = ratios.get(key, {})
        cells = [_cell(by_key.get(key + (n,))) for n in lengths]
        lines.append("| " + " | ".join([key[4], key[0], str(key[1]), key[3], key[5]] + cells
                                       + [str(ratio.get("time_ratio", "-"))]) + " |")
    for r in data["rows"]:
        if r.get("scenario") == "mad":
            lines.append(f"\nMAD scenario ({r['model']}, {r['length']} clips, predict, threads={r['threads']}, "
                         f"allocator={r.get('allocator', 'default')}): "
                         f"{_cell(r)}")
    return "\n".join(lines)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--lengths", nargs="+", type=int, default=LENGTHS)
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--mad", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the MAD scenario (36k clips, predict) for the HieraMamba models")
    ap.add_argument("--mad-only", action="store_true", help="only the MAD scenario, for every --models")
    ap.add_argument("--preset", choices=("real", "tiny"), default="real")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--allocator", choices=("keep", "default"), default="keep",
                    help="keep: vidmamba.allocator.keep_freed_memory(), as the vidmamba command does; default: glibc's")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls at most (while under 10 s in total)")
    ap.add_argument("--min-repeats", type=int, default=1,
                    help="timed calls at least: with 2, the row also has steady_s, the fastest call after the first "
                         "(the first call touches the process's fresh memory, whose cost depends on the host)")
    ap.add_argument("--mem-cap-gib", type=float, default=10.0)
    ap.add_argument("--time-cap-s", type=float, default=150.0, help="per subprocess")
    ap.add_argument("--budget-min", type=float, default=25.0,
                    help="a job starts only if its time cap (or 1.5x its estimate, when smaller) fits in what is left")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--render", metavar="JSON", help="print the markdown table of a results file and exit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return None
    if args.render:
        print(render(load_results(args.render)))
        return None
    if min(args.lengths) < 1:
        ap.error("--lengths must be positive")
    data = run(args)
    print(json.dumps(data["summary"], indent=1))
    return data


if __name__ == "__main__":
    main()
