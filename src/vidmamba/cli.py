"""Command-line interface: ``vidmamba demo | evaluate``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_evaluate(args) -> int:
    from vidmamba.metrics.evaluate import evaluate_prediction_files
    from vidmamba.utils import atomic_write_text

    metrics = evaluate_prediction_files(args.task, args.submission, args.gt)
    text = json.dumps(metrics, indent=4)
    if args.out:
        atomic_write_text(args.out, text)
    print(json.dumps(metrics.get("brief", metrics), indent=4))
    return 0


def _cmd_demo(args) -> int:
    from vidmamba.demo import run_demo

    results = run_demo(args.out)
    golden = results.get("qvhighlights_official_eval")
    return 1 if golden and golden["mismatched"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidmamba", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from vidmamba.metrics.evaluate import TASKS

    ev = sub.add_parser("evaluate", help="score a prediction file against ground truth with the official metrics")
    ev.add_argument("task", choices=sorted(TASKS), help="metric protocol")
    ev.add_argument("--submission", required=True, type=Path, help="prediction jsonl")
    ev.add_argument("--gt", required=True, type=Path, help="ground-truth jsonl")
    ev.add_argument("--out", type=Path, help="write the full metrics JSON here (atomically)")
    ev.set_defaults(func=_cmd_evaluate)

    demo = sub.add_parser("demo", help="run the built-in demo")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (results.json)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
