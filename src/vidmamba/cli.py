"""Command-line interface: ``vidmamba demo | train | evaluate | predict``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_evaluate(args) -> int:
    from vidmamba.metrics.evaluate import TASKS
    from vidmamba.utils import atomic_write_text

    if args.target in TASKS:  # score a prediction file
        from vidmamba.metrics.evaluate import evaluate_prediction_files

        if args.submission is None or args.gt is None:
            raise SystemExit(f"vidmamba evaluate {args.target}: --submission and --gt are required")
        metrics = evaluate_prediction_files(args.target, args.submission, args.gt)
        if args.out:
            atomic_write_text(args.out, json.dumps(metrics, indent=4))
    else:  # a trained checkpoint on the data of a config
        from vidmamba.config import load_config
        from vidmamba.engine.experiments import experiment_for

        if args.ckpt is None:
            raise SystemExit(f"vidmamba evaluate: {args.target!r} is not a metric protocol ({', '.join(TASKS)}); "
                             "to evaluate a checkpoint pass CONFIG --ckpt CKPT")
        out_dir = args.out or Path(args.ckpt)
        config = load_config(args.target, args.set)
        metrics, _ = experiment_for(config).evaluate(args.ckpt, out_dir, split=args.split, data=config["data"])
        print(f"wrote {out_dir}/{args.split}_preds.jsonl and {args.split}_metrics.json")
    print(json.dumps(metrics.get("brief", metrics), indent=4))
    return 0


def _cmd_train(args) -> int:
    from vidmamba.config import load_config
    from vidmamba.engine.experiments import experiment_for

    config = load_config(args.config, args.set)
    config["train"].setdefault("out_dir", str(Path("runs") / Path(args.config).stem))
    summary = experiment_for(config).train(config, resume=args.resume or None)
    print(json.dumps({k: summary[k] for k in ("best_metric", "best_epoch", "eval") if k in summary}, indent=2))
    return 0


def _cmd_predict(args) -> int:
    from vidmamba.engine.grounding import predict_features

    result = predict_features(args.ckpt, args.video_features, args.query_features, query=args.query)
    text = json.dumps(result, indent=2)
    if args.out:
        from vidmamba.utils import atomic_write_text

        atomic_write_text(args.out, text)
    print(text)
    return 0


def _cmd_demo(args) -> int:
    from vidmamba.demo import run_demo

    results = run_demo(args.out)
    golden = results.get("qvhighlights_official_eval")
    return 1 if golden and golden["mismatched"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidmamba", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score predictions with the official metrics, or evaluate a checkpoint",
                        description="vidmamba evaluate TASK --submission P --gt G [--out M]  |  "
                                    "vidmamba evaluate CONFIG --ckpt CKPT [--split val] [--out DIR]")
    ev.add_argument("target", help="metric protocol (qvhighlights, moment_retrieval, nlq, tvsum) or a config file")
    ev.add_argument("--submission", type=Path, help="prediction jsonl (protocol mode)")
    ev.add_argument("--gt", type=Path, help="ground-truth jsonl (protocol mode)")
    ev.add_argument("--ckpt", type=Path, help="checkpoint folder or run folder (config mode)")
    ev.add_argument("--split", default="val", help="annotation split of the config's data section (config mode)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (config mode), e.g. --set data.val=test.jsonl")
    ev.add_argument("--out", type=Path, help="metrics JSON (protocol mode) or output folder (config mode)")
    ev.set_defaults(func=_cmd_evaluate)

    tr = sub.add_parser("train", help="train a model from a YAML config")
    tr.add_argument("config", type=Path)
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    tr.add_argument("--resume", action="store_true", help="continue from <out_dir>/last")
    tr.set_defaults(func=_cmd_train)

    pr = sub.add_parser("predict", help="moments and saliency for one video from pre-extracted features")
    pr.add_argument("--ckpt", type=Path, required=True)
    pr.add_argument("--video-features", type=Path, required=True, help="npz with key 'features' (T, D)")
    pr.add_argument("--query-features", type=Path, required=True,
                    help="npz with key 'last_hidden_state' (or 'token') (L, D)")
    pr.add_argument("--query", default="", help="the query text (echoed in the output)")
    pr.add_argument("--out", type=Path, help="also write the JSON here")
    pr.set_defaults(func=_cmd_predict)

    demo = sub.add_parser("demo", help="run the built-in demo")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (results.json, figure)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
