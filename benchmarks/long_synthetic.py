"""Long-video grounding on the synthetic needle-in-a-haystack benchmark: HieraMamba vs MLVTG vs HieraMamba's
transformer twin (Hydra replaced by global attention) at equal width.

Data and recipe: ``configs/hieramamba_synthetic_long.yaml`` (:mod:`vidmamba.data.synthetic_long`: many training
videos of 1k..2k 2-s clips dense with queries, trained on windows of ``data.max_clips`` clips that keep the ground
truth, several queries per window; a handful of val haystacks of 2k..50k clips with a few needle queries each, events of
2-10 clips). Every model gets the same data, epochs, batch, optimiser and seed; the last epoch's EMA weights are
scored (no selection on val). Width: the config's ``embd_dim`` (MLVTG ``hidden_dim``). HieraMamba and MLVTG are
scored on whole val videos; MLVTG predicts spans as fractions of its input's length, so it is also scored in
half-overlapping windows of its training length (``data.eval_window``; the engine merges the windows by NMS). The
transformer twin cannot attend over a whole long video in memory: it is scored in windows of ``--twin-window`` clips
(default: the training length). A "random" row scores 5 random windows per query with the lengths of the events.

Metrics: the ``nlq`` protocol (R@{1,5} x IoU {0.3,0.5}; "avg" = their mean). Training time = the sum of the
trainer's per-epoch times (forward, backward, optimiser); evaluation time = the rest of the run. With ``--parallel``
the models train at the same time in separate processes (times then include their competition for the cores).

    python benchmarks/long_synthetic.py                   # writes benchmarks/results_long_synthetic.json
    python benchmarks/long_synthetic.py --parallel --threads 1     # the three models at once
    python benchmarks/long_synthetic.py --models hieramamba --epochs 1 --out /tmp/r.json
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vidmamba.config import load_config  # noqa: E402
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
    # MLVTG: same width, 2 aligner blocks; no saliency labels on this data (saliency losses off, fg score only)
    return {"name": name, "hidden_dim": base["embd_dim"], "num_layers": 2, "d_state": 16, "score_mode": "fg",
            "w_sal_intra": 0.0, "w_sal_inter": 0.0, "max_windows": 10}


def run_model(name: str, config: dict, out_dir: Path, twin_window: int | None) -> list[dict]:
    """Train ``name`` and score it: one row, plus MLVTG's windowed scoring of the same checkpoint."""
    cfg = json.loads(json.dumps(config))
    twin_window = twin_window or cfg["data"]["max_clips"]
    cfg["model"] = model_config(name, config["model"])
    if name == "hieramamba-transformer":
        cfg["data"]["eval_window"] = twin_window
    cfg["train"].update(out_dir=str(out_dir / name), progress=False, tensorboard=False,
                        eval_every=cfg["train"]["epochs"])
    started = time.perf_counter()
    summary = NLQ.train(cfg)
    total = time.perf_counter() - started
    log = [json.loads(line) for line in (out_dir / name / "metrics.jsonl").read_text().splitlines()]
    train_s = sum(r["time_s"] for r in log if r["split"] == "train")
    model, _ = NLQ.load_trained(out_dir / name / "last")
    row = {"model": name, "params": sum(p.numel() for p in model.parameters()),
           "metrics": {k: summary["eval"][k] for k in KEYS}, "final_train_loss": summary["train"]["loss"],
           "train_s": round(train_s, 1), "eval_s": round(total - train_s, 1), "epochs": summary["epoch"],
           "steps": summary["step"], "eval_window": cfg["data"].get("eval_window")}
    if name != "mlvtg":
        return [row]
    window = cfg["data"]["max_clips"]  # MLVTG's spans are fractions of its input: score it on training-length input
    started = time.perf_counter()
    metrics, _ = NLQ.evaluate(out_dir / name / "last", out_dir / name / "windowed", data={"eval_window": window})
    return [row, {**row, "metrics": {k: metrics["brief"][k] for k in KEYS},
                  "eval_s": round(time.perf_counter() - started, 1), "eval_window": window}]


def random_row(config: dict, seed: int = 0) -> dict:
    """5 random windows per val query, lengths drawn like the benchmark's events (log-uniform clips)."""
    data = NLQ.prepare(config)[0]["data"]
    ds = NLQ.build_dataset(data, "val")
    syn = data["synthetic"]
    lo, hi = syn.get("min_event_clips", 2), syn.get("max_event_clips", 10)
    rng = np.random.default_rng(seed)
    rows = []
    for v in ds.videos:
        for q in v.queries:
            n = np.exp(rng.uniform(np.log(lo), np.log(hi + 1), 5)).astype(int) * 2.0
            s = rng.uniform(0, v.duration - n)
            rows.append({"qid": q.text_id, "pred_relevant_windows": [[a, a + b, 1.0 - i / 10] for i, (a, b) in
                                                                     enumerate(zip(s.tolist(), n.tolist()))]})
    brief = evaluate_predictions("nlq", rows, ground_truth_rows(ds))["brief"]
    return {"model": "random", "metrics": {k: brief[k] for k in KEYS}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--epochs", type=int, help="override train.epochs of the config")
    ap.add_argument("--twin-window", type=int, help="eval window of the twin (clips; default data.max_clips)")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads per model process")
    ap.add_argument("--parallel", action="store_true", help="train the models at the same time, one process each")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--runs", type=Path, help="folder for the checkpoints (default: a temporary folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = load_config(CONFIG)
    if args.epochs:
        config["train"]["epochs"] = args.epochs
    started = time.perf_counter()
    config, _ = NLQ.prepare(config)  # generates (or re-uses) the benchmark
    meta = json.loads((Path(config["data"]["annotations"]).parent / "meta.json").read_text())
    result = {"command": "python benchmarks/long_synthetic.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "parallel": args.parallel,
                          "torch": torch.__version__, "loadavg_start": os.getloadavg()},
              "config": str(CONFIG.relative_to(REPO)), "train": config["train"], "data_sizes": meta["sizes"],
              "generation_s": round(time.perf_counter() - started, 1), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        if args.parallel:  # one process per model, each with --threads threads
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(len(args.models), mp_context=ctx, initializer=torch.set_num_threads,
                                        initargs=(args.threads,)) as pool:
                futures = [pool.submit(run_model, name, config, runs, args.twin_window) for name in args.models]
                result["rows"] += [row for f in futures for row in f.result()]
        else:
            for name in args.models:
                rows = run_model(name, config, runs, args.twin_window)
                result["rows"] += rows
                print(json.dumps(rows), file=sys.stderr, flush=True)
    result["rows"].append(random_row(config))
    result["machine"]["loadavg_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
