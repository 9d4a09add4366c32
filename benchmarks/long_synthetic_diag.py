"""Diagnose a checkpoint of ``benchmarks/long_synthetic.py`` on the val haystacks: per val video (length, queries,
R1 / R5 hits at IoU 0.5 on the whole video) and the same queries answered on a crop of ``--crop`` clips around
their ground truth (the training input length, ground truth at a random place): how much of the gap is finding the
needle in a long video rather than localising it.

    python benchmarks/long_synthetic_diag.py RUN_DIR [--crop 128] [--set data.synthetic.queries_per_video=6]

``--short N`` instead scores only the val videos of at most N clips, each query on the whole video and, when the run
was scored in windows (the transformer twin: ``data.eval_window``), also in those windows; one JSON line of hit
counts per video. It separates "windowed vs whole-video scoring" from the model itself where a whole video fits.

    python benchmarks/long_synthetic_diag.py RUN_DIR --short 3000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from long_synthetic import NLQ  # noqa: E402
from vidmamba.config import apply_overrides  # noqa: E402


def iou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def hits(windows, gt, thr=0.5) -> tuple[int, int]:
    ok = [iou(w[:2], gt) >= thr for w in windows[:5]]
    return int(any(ok[:1])), int(any(ok))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--set", nargs="+", default=[], help="data overrides of the val set (as long_synthetic.py)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--short", type=int, metavar="N", help="only whole-video vs windowed hits on videos <= N clips")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, config = NLQ.load_trained(args.run / "last")
    cfg = apply_overrides({"data": dict(config["data"])}, args.set)
    data = NLQ.data_options(cfg["data"])
    ds = NLQ.build_dataset(data, "val")
    if args.short:
        return short_videos(model, config, ds, args.short)
    metrics, rows = NLQ.evaluate(args.run / "last", args.run / "diag", data=cfg["data"])
    pred = {r["qid"]: r["pred_relevant_windows"] for r in rows}
    rng = np.random.default_rng(0)
    print("| video clips | queries | whole R1@0.5 hits | whole R5@0.5 hits | crop R1@0.5 hits | crop R5@0.5 hits |")
    print("|---:|---:|---:|---:|---:|---:|")
    total = np.zeros(4, int)
    for i, v in enumerate(ds.videos):
        item = ds[i]
        video = item["video"]
        h = np.zeros(4, int)
        for q, text in zip(v.queries, item["texts"]):
            h[:2] += hits(pred[q.text_id], q.segment)
            s, e = int(q.segment[0] / 2), int(q.segment[1] / 2)
            a = int(np.clip(rng.integers(e - args.crop, s + 1), 0, max(0, len(video) - args.crop)))
            crop = video[a:a + args.crop]
            out = NLQ.predict_clips(model, config, crop, [text], duration=2.0 * len(crop))[0]
            h[2:] += hits(out["windows"], (q.segment[0] - 2 * a, q.segment[1] - 2 * a))
        total += h
        print(f"| {v.num_clips} | {len(v.queries)} | " + " | ".join(map(str, h)) + " |")
    n = sum(len(v.queries) for v in ds.videos)
    print(f"| all | {n} | " + " | ".join(f"{x} ({100 * x / n:.1f}%)" for x in total) + " |")
    print(json.dumps({k: metrics["brief"][k] for k in ("R1@0.3", "R1@0.5", "R5@0.3", "R5@0.5", "avg")}))
    return 0


def short_videos(model, config: dict, ds, max_clips: int) -> int:
    """Per val video of at most ``max_clips`` clips: R1 / R5 hits at IoU 0.5 with all its queries answered on the
    whole video, and in the run's evaluation windows when it has them. Prints one JSON line per video."""
    whole = {**config, "data": {k: v for k, v in config["data"].items() if k != "eval_window"}}
    setups = {"whole": whole} | ({"windowed": config} if config["data"].get("eval_window") else {})
    for i, v in enumerate(ds.videos):
        if v.num_clips > max_clips:
            continue
        item = ds[i]
        row = {"clips": v.num_clips, "queries": len(v.queries)}
        for name, cfg in setups.items():
            outs = [NLQ.predict_clips(model, cfg, item["video"], [text], duration=2.0 * len(item["video"]))[0]
                    for text in item["texts"]]          # one query at a time: whole-video attention is T x T
            h = np.sum([hits(o["windows"], q.segment) for o, q in zip(outs, v.queries)], axis=0)
            row.update({f"{name}_R1@0.5_hits": int(h[0]), f"{name}_R5@0.5_hits": int(h[1])})
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
