"""Long-video grounding on the synthetic needle-in-a-haystack benchmark: HieraMamba vs MLVTG vs HieraMamba's
transformer twin (Hydra replaced by global attention) at equal width.

Data and recipe: ``configs/hieramamba_synthetic_long.yaml`` (:mod:`vidmamba.data.synthetic_long`: many training
videos of 1k..2k 2-s clips dense with queries, trained on windows of ``data.max_clips`` clips that keep the ground
truth, several queries per window; a handful of val haystacks of 2k..50k clips with ~20 needle queries each, events
of 2-10 clips). Every model gets the same data, epochs, batch, optimiser and seed; the last epoch's EMA weights are
scored (no selection on val). Val is also scored every ``train.eval_every`` epochs (``--curve-every``) for the
learning curve only; ``--seeds`` trains each model once per seed and the summary gives mean ± sample std. Width:
the config's ``embd_dim`` (MLVTG ``hidden_dim``). HieraMamba is scored on whole val videos. MLVTG predicts spans in
clips of its training length (``train_clips`` = ``data.max_clips``) and is trained with ``--mlvtg-negatives`` extra
queries per window whose truth lies outside it (``data.negative_queries``); with ``--mlvtg-query-fusion product``
each clip enters its aligner with its match to the query (``model.query_fusion``; default none: the paper's
model, whose clips learn the query only through the scan of ``[Q; V]``) and ``--mlvtg-score-mode`` ranks its
candidates (``model.score_mode``: foreground + saliency, or foreground alone); it answers a video longer than its
training length in half-overlapping windows of that length on its own (``long_video: window``, the row "windows of
128"), and is also scored reading each val video whole (``long_video: whole``, the row "whole videos"), from the same
checkpoint; its saliency labels are the moment's clips (UniVTG's interval labels as curves) and it has no input
dropout or drop-path here. The transformer twin cannot attend over a whole long video in memory: it is scored in
windows of ``--twin-window`` clips (default: the training length). A "random"
row scores 5 random windows per query with the lengths of the events (mean of 20 draws).

Metrics: the ``nlq`` protocol (R@{1,5} x IoU {0.3,0.5}; "avg" = their mean). Training time = the sum of the
trainer's per-epoch times (forward, backward, optimiser); evaluation time = the rest of the run (the curve's val
scoring included). With ``--parallel`` the runs train at the same time in separate processes (times then include
their competition for the cores).

    python benchmarks/long_synthetic.py                   # writes benchmarks/results_long_synthetic.json
    python benchmarks/long_synthetic.py --parallel --threads 1     # the three models at once
    python benchmarks/long_synthetic.py --models hieramamba --epochs 1 --out /tmp/r.json
    python benchmarks/long_synthetic.py --models hieramamba --seeds 0 1 2 --out /tmp/h.json   # mean ± std over seeds
    python benchmarks/long_synthetic.py --merge /tmp/h.json /tmp/m.json    # one results file (+ tables) from several
    python benchmarks/long_synthetic.py --render benchmarks/results_long_synthetic.json   # the markdown tables
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vidmamba.config import apply_overrides, load_config  # noqa: E402
from vidmamba.tasks import get_task  # noqa: E402
from vidmamba.tasks.long_grounding import ground_truth_rows  # noqa: E402
from vidmamba.metrics.evaluate import evaluate_predictions  # noqa: E402
from vidmamba.utils import atomic_write_text  # noqa: E402

CONFIG = REPO / "configs" / "hieramamba_synthetic_long.yaml"
NLQ = get_task("nlq")
DEFAULT_OUT = REPO / "benchmarks" / "results_long_synthetic.json"
MODELS = ("hieramamba", "mlvtg", "hieramamba-transformer")
KEYS = ("R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "avg")


def model_config(name: str, base: dict) -> dict:
    """The model section for ``name`` at the width of the HieraMamba config ``base``."""
    if name.startswith("hieramamba"):
        return {**base, "name": name}
    # MLVTG: same width, 2 aligner blocks; saliency labels = the moment's clips (UniVTG's interval -> curve labels);
    # no input dropout or drop-path (HieraMamba has neither)
    return {"name": name, "hidden_dim": base["embd_dim"], "num_layers": 2, "d_state": 16, "input_dropout": 0.0,
            "drop_path": 0.0, "max_windows": 10}


def learning_curve(log: list[dict]) -> list[dict]:
    """Per epoch: the training loss and, where val was scored, the val metrics (for the curve only: the reported
    number is the last epoch's)."""
    val = {r["epoch"]: r for r in log if r["split"] == "val"}
    return [{"epoch": r["epoch"], "step": r["step"], "train_loss": round(r["loss"], 4),
             **({k: val[r["epoch"]][k] for k in KEYS} if r["epoch"] in val else {})}
            for r in log if r["split"] == "train"]


def score_whole(run_dir: Path) -> dict:
    """The ``nlq`` brief metrics of an MLVTG run's last checkpoint reading every val video in one pass."""
    model, config = NLQ.load_trained(run_dir / "last")
    model.model.cfg.long_video = "whole"
    data = NLQ.data_options(config["data"])
    ds = NLQ.build_dataset(data, "val")
    loader = DataLoader(ds, batch_size=1, shuffle=False, collate_fn=ds.collate)
    return evaluate_predictions("nlq", NLQ.predict(model, loader, data), ground_truth_rows(ds))["brief"]


def run_model(name: str, config: dict, out_dir: Path, twin_window: int | None, seed: int = 0,
              negatives: int = 0, mlvtg_options: dict | None = None) -> list[dict]:
    """Train ``name`` with ``seed`` and score it: one row, plus MLVTG's whole-video scoring of the same checkpoint.
    ``mlvtg_options``: MLVTG's model options set by this script's flags (``query_fusion``, ``score_mode``)."""
    cfg = json.loads(json.dumps(config))
    twin_window = twin_window or cfg["data"]["max_clips"]
    cfg["model"] = model_config(name, config["model"])
    if name == "hieramamba-transformer":
        cfg["data"]["eval_window"] = twin_window
    if name == "mlvtg":
        cfg["data"]["negative_queries"] = negatives
        cfg["model"].update(mlvtg_options or {})
    run_dir = out_dir / f"{name}-s{seed}"
    cfg["train"].update(out_dir=str(run_dir), progress=False, tensorboard=False, seed=seed)
    started = time.perf_counter()
    summary = NLQ.train(cfg)
    total = time.perf_counter() - started
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_s = sum(r["time_s"] for r in log if r["split"] == "train")
    model, _ = NLQ.load_trained(run_dir / "last")
    row = {"model": name, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
           "metrics": {k: summary["eval"][k] for k in KEYS}, "final_train_loss": summary["train"]["loss"],
           "train_s": round(train_s, 1), "eval_s": round(total - train_s, 1), "epochs": summary["epoch"],
           "steps": summary["step"], "eval_window": cfg["data"].get("eval_window"), "curve": learning_curve(log)}
    if name != "mlvtg":
        return [row]
    row["eval_window"] = model.model.cfg.train_clips  # it windows long videos itself
    row["negative_queries"] = negatives
    row.update({"query_fusion": "none", "score_mode": "add", **(mlvtg_options or {})})
    started = time.perf_counter()
    metrics = score_whole(run_dir)
    return [row, {**row, "metrics": {k: metrics[k] for k in KEYS}, "eval_s": round(time.perf_counter() - started, 1),
                  "eval_window": None, "curve": None}]


def random_row(config: dict, draws: int = 20) -> dict:
    """5 random windows per val query, lengths drawn like the benchmark's events (log-uniform clips); the mean over
    ``draws`` draws (seeds 0..draws-1)."""
    data = NLQ.prepare(config)[0]["data"]
    ds = NLQ.build_dataset(data, "val")
    syn = data["synthetic"]
    lo, hi = syn.get("min_event_clips", 2), syn.get("max_event_clips", 10)
    gt = ground_truth_rows(ds)
    scores = []
    for seed in range(draws):
        rng = np.random.default_rng(seed)
        rows = []
        for v in ds.videos:
            for q in v.queries:
                n = np.exp(rng.uniform(np.log(lo), np.log(hi + 1), 5)).astype(int) * 2.0
                s = rng.uniform(0, v.duration - n)
                rows.append({"qid": q.text_id, "pred_relevant_windows": [
                    [a, a + b, 1.0 - i / 10] for i, (a, b) in enumerate(zip(s.tolist(), n.tolist()))]})
        scores.append(evaluate_predictions("nlq", rows, gt)["brief"])
    return {"model": "random", "draws": draws,
            "metrics": {k: round(float(np.mean([b[k] for b in scores])), 2) for k in KEYS}}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and sample std over seeds of each (model, eval_window)."""
    groups: dict = {}
    for r in rows:
        if r["model"] != "random":
            groups.setdefault((r["model"], r["eval_window"]), []).append(r)
    out = []
    for (model, window), rs in groups.items():
        stats = {k: (round(float(np.mean(v)), 2), round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 2))
                 for k in KEYS for v in [[r["metrics"][k] for r in rs]]}
        out.append({"model": model, "eval_window": window, "seeds": [r["seed"] for r in rs], "params": rs[0]["params"],
                    "mean_std": stats, "train_s": [r["train_s"] for r in rs], "eval_s": [r["eval_s"] for r in rs]})
    return out


def render(result: dict) -> str:
    """Markdown tables of a results file: mean ± std over seeds, then the learning curves."""
    lines = ["| model | scored on | seeds | params | " + " | ".join(KEYS) + " | train (s) | eval (s) |",
             "|---|---|---:|---:|" + "---:|" * (len(KEYS) + 2)]
    for g in result["summary"]:
        where = f"windows of {g['eval_window']}" if g["eval_window"] else "whole videos"
        cells = [f"{m:.2f} ± {sd:.2f}" if len(g["seeds"]) > 1 else f"{m:.2f}" for m, sd in g["mean_std"].values()]
        lines.append(f"| {g['model']} | {where} | {len(g['seeds'])} | {g['params']:,} | " + " | ".join(cells)
                     + f" | {' / '.join(map(str, g['train_s']))} | {' / '.join(map(str, g['eval_s']))} |")
    for r in result["rows"]:
        if r["model"] == "random":
            lines.append(f"| random ({r['draws']} draws, mean) | whole videos | - | - | "
                         + " | ".join(f"{v:.2f}" for v in r["metrics"].values()) + " | - | - |")
    for r in result["rows"]:
        if sum(KEYS[0] in c for c in r.get("curve") or ()) > 1:  # a curve: more than the final point
            lines += ["", f"Learning curve, {r['model']} seed {r['seed']} (val scored for the curve only):", "",
                      "| epoch | step | train loss | " + " | ".join(KEYS) + " |",
                      "|---:|---:|---:|" + "---:|" * len(KEYS)]
            lines += [f"| {c['epoch']} | {c['step']} | {c['train_loss']:.3f} | "
                      + " | ".join(f"{c[k]:.2f}" for k in KEYS) + " |" for c in r["curve"] if KEYS[0] in c]
    return "\n".join(lines)


def merge(files: list[Path]) -> dict:
    """One results dict from several runs of this script with the same config (e.g. one model per call): their rows
    (one random row), the summary over all of them, each call's command and machine."""
    parts = [json.loads(f.read_text()) for f in files]
    curve_every = [p["train"].pop("eval_every") for p in parts]  # the curve's resolution may differ
    for key in ("config", "model", "synthetic", "train", "data_sizes"):
        if any(p[key] != parts[0][key] for p in parts):
            raise ValueError(f"cannot merge results with different {key!r}")
    rows = [r for p in parts for r in p["rows"] if r["model"] != "random"]
    result = {k: v for k, v in parts[0].items() if k not in ("command", "machine", "rows", "summary")}
    result["runs"] = [{"command": p["command"], "machine": p["machine"], "curve_every": e}
                      for p, e in zip(parts, curve_every)]
    result["rows"] = rows + [next(r for p in parts for r in p["rows"] if r["model"] == "random")]
    result["summary"] = summarise(result["rows"])
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (each model x each seed)")
    ap.add_argument("--epochs", type=int, help="override train.epochs of the config")
    ap.add_argument("--curve-every", type=int, help="score val every N epochs for the learning curve (default: the "
                                                     "config's train.eval_every); the last epoch is always scored")
    ap.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                    help="override config values (YAML values), e.g. train.lr=2e-3 data.synthetic.queries_per_video=6")
    ap.add_argument("--twin-window", type=int, help="eval window of the twin (clips; default data.max_clips)")
    ap.add_argument("--mlvtg-negatives", type=int, default=8, metavar="N",
                    help="MLVTG: queries per training window whose truth lies outside it (data.negative_queries)")
    ap.add_argument("--mlvtg-query-fusion", default="none", choices=("none", "product"),
                    help="MLVTG: model.query_fusion (product: each clip enters the aligner with its match to the query)")
    ap.add_argument("--mlvtg-score-mode", default="add", choices=("add", "fg"),
                    help="MLVTG: model.score_mode, how candidates are ranked (add: foreground + saliency; fg: foreground)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads per model process")
    ap.add_argument("--parallel", action="store_true", help="train the runs at the same time, one process each")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--runs", type=Path, help="folder for the checkpoints (default: a temporary folder)")
    ap.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="print the markdown tables of a results file")
    ap.add_argument("--merge", nargs="+", type=Path, metavar="RESULTS_JSON",
                    help="merge results files of this script (same config) into --out and print their tables")
    args = ap.parse_args(argv)
    if args.render or args.merge:
        result = json.loads(args.render.read_text()) if args.render else merge(args.merge)
        if args.merge:
            atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
        print(render(result))
        return 0
    torch.set_num_threads(args.threads)
    config = load_config(CONFIG)
    config = apply_overrides(config, args.set)
    if args.epochs:
        config["train"]["epochs"] = args.epochs
    if args.curve_every:
        config["train"]["eval_every"] = args.curve_every
    started = time.perf_counter()
    config, _ = NLQ.prepare(config)  # generates (or re-uses) the benchmark
    meta = json.loads((Path(config["data"]["annotations"]).parent / "meta.json").read_text())
    result = {"command": "python benchmarks/long_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "parallel": args.parallel,
                          "torch": torch.__version__, "loadavg_start": os.getloadavg()},
              "config": str(CONFIG.relative_to(REPO)), "overrides": args.set, "model": config["model"],
              "synthetic": config["data"]["synthetic"], "train": config["train"], "data_sizes": meta["sizes"],
              "generation_s": round(time.perf_counter() - started, 1), "rows": []}
    jobs = [(name, seed) for seed in args.seeds for name in args.models]
    mlvtg_options = {"query_fusion": args.mlvtg_query_fusion, "score_mode": args.mlvtg_score_mode}
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        if args.parallel:  # one process per run, each with --threads threads
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(len(jobs), mp_context=ctx, initializer=torch.set_num_threads,
                                        initargs=(args.threads,)) as pool:
                futures = [pool.submit(run_model, name, config, runs, args.twin_window, seed, args.mlvtg_negatives,
                                       mlvtg_options)
                           for name, seed in jobs]
                result["rows"] += [row for f in futures for row in f.result()]
        else:
            for name, seed in jobs:
                rows = run_model(name, config, runs, args.twin_window, seed, args.mlvtg_negatives,
                                 mlvtg_options)
                result["rows"] += rows
                print(json.dumps([{k: r[k] for k in ("model", "seed", "metrics", "train_s", "eval_s")} for r in rows]),
                      file=sys.stderr, flush=True)
    result["rows"].append(random_row(config))
    result["summary"] = summarise(result["rows"])
    result["machine"]["loadavg_end"] = os.getloadavg()
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
