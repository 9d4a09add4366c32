"""Where ``vidmamba demo``'s time goes: per model, training (data, forward, backward, optimiser, the rest of the
loop), validation, checkpoints, set-up and the final evaluation: wall, CPU and system seconds, page faults.

Runs the demo through the ``vidmamba`` command's own entry point (``vidmamba.cli.main``: passive OpenMP waits,
``keep_freed_memory``, all cores) with timers around the functions that do each part (the timers wrap the functions
of the library in this process only; one timer call costs microseconds). Prints and writes one JSON: per model and
phase the seconds of each part and its share of the model's ``train_seconds`` (training + evaluation, as the demo's
table counts it), the demo's own seconds, and the load average before and after.

    python benchmarks/profile_demo.py --out benchmarks/results_profile_demo.json
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from vidmamba.threads import passive_openmp_waits

passive_openmp_waits()                     # before torch loads (cli.main does it again: a no-op then)

import torch  # noqa: E402

from demo import git_commit  # noqa: E402  (benchmarks/demo.py)
from vidmamba import cli  # noqa: E402
from vidmamba.data import collate, lighthouse  # noqa: E402
from vidmamba.engine import trainer as trainer_module  # noqa: E402
from vidmamba.models.mlvtg import MLVTG  # noqa: E402
from vidmamba.tasks import base, grounding  # noqa: E402
from vidmamba.utils import print_and_write_json  # noqa: E402

WALL, CPU, SYS, FAULTS = defaultdict(float), defaultdict(float), defaultdict(float), defaultdict(int)
state = {"model": None, "phase": None}


def timed(owner, name, part, phase=None):
    """Replace ``owner.name`` by a wrapper adding its wall / CPU seconds to ``part`` of the current model and phase
    (``phase``: the wrapper sets the phase for the calls it makes)."""
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        previous = state["phase"]
        if phase is not None:
            state["phase"] = phase
        key = (state["model"], state["phase"], part)
        w0, c0, r0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        try:
            return fn(*args, **kwargs)
        finally:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            WALL[key] += time.perf_counter() - w0
            CPU[key] += time.process_time() - c0
            SYS[key] += r1.ru_stime - r0.ru_stime
            FAULTS[key] += r1.ru_minflt - r0.ru_minflt
            state["phase"] = previous

    setattr(owner, name, wrapper)


def install_timers():
    timed(base.Task, "train", "total", phase="train")
    timed_train = base.Task.train

    def train(self, config, resume=None):            # names the model of the timers it calls
        state["model"] = config["model"]["name"]
        return timed_train(self, config, resume)

    base.Task.train = train
    timed(base.Task, "prepare", "setup: data and widths")
    timed(base.Task, "check_data", "setup: data checks")
    timed(trainer_module.Trainer, "__init__", "setup: trainer")
    timed(trainer_module.Trainer, "train_one_epoch", "epochs")
    timed(lighthouse.MomentDataset, "__getitem__", "data: read items")
    timed(collate, "collate_padded", "data: collate")
    timed(trainer_module.Trainer, "_compute_loss", "forward + loss")
    timed(torch.Tensor, "backward", "backward")
    timed(trainer_module, "clip_gradients", "gradient clipping")
    timed(torch.optim.AdamW, "step", "optimiser step")
    timed(trainer_module.Trainer, "save", "checkpoints")
    timed(trainer_module.Trainer, "evaluate", "total", phase="validation")
    timed(base.Task, "evaluate", "total", phase="final evaluation")
    timed(base, "load_trained", "load checkpoint")
    timed(MLVTG, "predict", "predict")
    timed(base, "write_evaluation", "write predictions")
    timed(grounding, "evaluate_predictions", "score")


def report(total_s: float) -> dict:
    """{model: {"train_seconds": s, phase: {part: {"wall_s", "cpu_s", "share"}}}}; share = of train_seconds."""
    out = {}
    for model in dict.fromkeys(k[0] for k in WALL if k[0] is not None):
        keys = [k for k in WALL if k[0] == model]
        train_seconds = sum(WALL[k] for k in keys if k[2] == "total" and k[1] in ("train", "final evaluation"))
        phases = {}
        for _, phase, part in keys:
            wall = WALL[model, phase, part]
            phases.setdefault(phase, {})[part] = {
                "wall_s": round(wall, 2), "cpu_s": round(CPU[model, phase, part], 2),
                "system_s": round(SYS[model, phase, part], 2), "page_faults": FAULTS[model, phase, part],
                "share": round(wall / train_seconds, 3)}
        train = phases["train"]
        loop = ("data: read items", "data: collate", "forward + loss", "backward", "gradient clipping",
                "optimiser step")
        rest = {"epochs: rest of the loop": train["epochs"]["wall_s"] - sum(train[p]["wall_s"] for p in loop
                                                                            if p in train),
                "rest": train["total"]["wall_s"] - sum(train[p]["wall_s"] for p in train
                                                       if p == "epochs" or p.startswith(("setup", "checkpoints")))
                - phases.get("validation", {}).get("total", {}).get("wall_s", 0.0)}
        train.update({p: {"wall_s": round(w, 2), "share": round(w / train_seconds, 3)} for p, w in rest.items()})
        out[model] = {"train_seconds": round(train_seconds, 2), **phases}
    return {"models": out, "demo_seconds": round(total_s, 1)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="JSON file to write (default: print only)")
    args = ap.parse_args(argv)
    install_timers()
    load_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rc = cli.main(["demo", "--out", str(Path(tmp) / "demo")])
    if rc:
        raise SystemExit(f"profile_demo.py: vidmamba demo failed (exit status {rc})")
    result = {"command": "python " + " ".join(sys.argv), "commit": git_commit(),
              "threads": torch.get_num_threads(), "torch": torch.__version__,
              "loadavg_1_5_15min_start": [round(x, 2) for x in load_start],
              "loadavg_1_5_15min_end": [round(x, 2) for x in os.getloadavg()],
              **report(time.perf_counter() - started)}
    print_and_write_json(result, args.out)


if __name__ == "__main__":
    main()
