"""MambaVL fusions on the synthetic action benchmark: shared-A vs separate-A vs transformer vs MLP fusion.

Data: :mod:`vidmamba.data.synthetic_action` (EK100 on-disk format, generated once under ``$VIDMAMBA_CACHE``); verbs
need the temporal order of two motion primitives, nouns need the place named by the question's (masked) narration.
Every variant is trained with the same fixed budget from ``configs/mambavl_synthetic.yaml`` (AdamW, cosine, the
epochs below) through :meth:`vidmamba.tasks.action.ActionTask.train`, one torch thread, and scored once on the val split
after the LAST epoch (no epoch picked on val). Rows: the four fusions, plus shared-A without the question context
(``question_context: null``) to show what the context is worth. Reported: verb / noun / action top-1 and top-5
(action: both in top-k, MambaVL's metric), parameters, mean training time per epoch (wall clock, shared machine),
mean +- std over seeds.

    python benchmarks/mambavl_synthetic.py                      # writes benchmarks/results_mambavl_synthetic.json
    python benchmarks/mambavl_synthetic.py --seeds 0 --epochs 1 --variants shared_a mlp --out /tmp/r.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results_mambavl_synthetic.json"
CONFIG = REPO / "configs" / "mambavl_synthetic.yaml"
#: variant -> (model fusion, question context)
VARIANTS = {"shared_a": ("shared_a", "narration"), "separate_a": ("separate_a", "narration"),
            "transformer": ("transformer", "narration"), "mlp": ("mlp", "narration"),
            "shared_a_no_context": ("shared_a", None)}
#: benchmark size: smaller than the config's default so 5 variants x 3 seeds fit in ~10 min of 2 CPU cores
DATA = dict(num_train=1200, num_val=500, min_frames=8, max_frames=16, seed=0)
METRICS = ("verb_top1", "noun_top1", "action_top1", "verb_top5", "noun_top5", "action_top5")


def run_one(variant: str, seed: int, epochs: int, out_dir: Path) -> dict:
    from vidmamba.config import load_config
    from vidmamba.models import create_model
    from vidmamba.tasks import get_task

    fusion, context = VARIANTS[variant]
    config = load_config(CONFIG)
    config["model"]["fusion"] = fusion
    config["data"].update(synthetic=DATA, question_context=context)
    config["train"].update(epochs=epochs, seed=seed, eval_every=epochs, out_dir=str(out_dir), progress=False,
                           tensorboard=False)
    torch.manual_seed(seed)
    task = get_task(config["task"])
    resolved, _ = task.prepare(config)
    params = sum(p.numel() for p in create_model(**resolved["model"]).parameters())
    started = time.perf_counter()
    summary = task.train(config)
    total = time.perf_counter() - started
    log = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    epoch_times = [r["time_s"] for r in log if r["split"] == "train"]
    return {"variant": variant, "seed": seed, "params": params, "epoch_time_s": statistics.mean(epoch_times),
            "total_time_s": total, **{m: summary["eval"][m] for m in METRICS}}


def aggregate(runs: list[dict]) -> list[dict]:
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == variant]
        row = {"variant": variant, "seeds": [r["seed"] for r in rs], "params": rs[0]["params"]}
        for key in (*METRICS, "epoch_time_s"):
            vals = [r[key] for r in rs]
            row[key] = {"mean": round(statistics.mean(vals), 2),
                        "std": round(statistics.stdev(vals), 2) if len(vals) > 1 else 0.0}
        rows.append(row)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from vidmamba.data.synthetic_action import ensure_action_benchmark
    from vidmamba.utils import atomic_write_text

    ensure_action_benchmark(**DATA)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for variant in args.variants:
                runs.append(run_one(variant, seed, args.epochs, Path(tmp) / f"{variant}-{seed}"))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    result = {"benchmark": "mambavl_synthetic", "command": "python " + " ".join(["benchmarks/mambavl_synthetic.py",
                                                                                  *(argv or sys.argv[1:])]),
              "data": DATA, "epochs": args.epochs, "config": str(CONFIG.relative_to(REPO)),
              "machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "cpus": os.cpu_count(), "torch_threads": 1, "torch": torch.__version__},
              "chance": {"verb_top1": round(100 / 12, 2), "noun_top1": round(100 / 18, 2),
                         "action_top1": round(100 / 216, 2)},
              "rows": aggregate(runs), "runs": runs}
    atomic_write_text(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["rows"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
