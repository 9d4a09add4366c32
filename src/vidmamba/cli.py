"""Command-line interface: ``vidmamba demo | train | evaluate | predict | extract | export | serve``.

Every expected mistake (a bad config, data file, checkpoint, submission or video, a missing file, an unknown task,
a missing optional dependency) is a :class:`~vidmamba.errors.VidmambaError`, printed as one line on stderr,
``vidmamba <command>: error: <what, where, what was expected>``, with exit status 2; ``--debug`` (or
``VIDMAMBA_DEBUG=1``) shows the traceback instead. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from vidmamba.allocator import keep_freed_memory, limit_arenas
from vidmamba.threads import passive_openmp_waits
from vidmamba.utils import hub_ref
from vidmamba.errors import ConfigError, InputError, MissingFileError, VidmambaError, require_extra

CACHE_DIRS = "$VIDMAMBA_CACHE, else $XDG_CACHE_HOME/vidmamba, else ~/.cache/vidmamba"
CACHE_HELP = f"feature cache folder (default {CACHE_DIRS})"
ENCODER_HELP = ("CLIP folder, or hub id hf://owner/name[@revision], the checkpoint's features came from (default "
                "hf://openai/clip-vit-base-patch32)")


class UsageError(InputError):
    """A command-line combination that cannot work; the message says what to pass instead."""


def _message(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_config(path: Path, overrides) -> dict:
    """The experiment config of ``path`` with ``overrides``, every section checked (keys, types) before any file is
    read or written; a mistake names the config file and ``section.key``."""
    from vidmamba.config import load_config
    from vidmamba.tasks import task_of

    config = load_config(path, overrides)
    try:
        return task_of(config).check_config(config)
    except ConfigError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


@contextlib.contextmanager
def _public_data(config: dict):
    """A data file of ``config`` that is not found gets the config's ``source`` line: where its public data comes
    from."""
    from vidmamba.data.errors import DataFormatError

    try:
        yield
    except DataFormatError as exc:
        if not (config.get("source") and exc.problem.endswith("file not found")):
            raise
        raise DataFormatError(exc.file, f"{exc.problem}; {config['source']}", item=exc.item, field=exc.field,
                              expected=exc.expected, found=exc.found) from exc


def _cmd_evaluate(args) -> int:
    from vidmamba.metrics.evaluate import PROTOCOLS
    from vidmamba.utils import atomic_write_text

    if args.target in PROTOCOLS:  # score a prediction file
        from vidmamba.metrics.evaluate import evaluate_prediction_files

        if args.submission is None or args.gt is None:
            raise UsageError(f"{args.target} is a metric protocol: pass --submission PRED.jsonl and --gt GT.jsonl")
        if args.out is not None and args.out.is_dir():
            raise UsageError(f"--out {args.out} is a folder; in protocol mode it names the metrics JSON file")
        metrics = evaluate_prediction_files(args.target, args.submission, args.gt,
                                            highlights_only=args.highlights_only)
        if args.out:
            atomic_write_text(args.out, json.dumps(metrics, indent=4))
    else:  # a trained checkpoint on the data of a config
        from vidmamba.tasks import task_of

        if args.ckpt is None:
            raise UsageError(f"{args.target!r} is not a metric protocol ({', '.join(PROTOCOLS)}); to evaluate a "
                             "checkpoint pass CONFIG --ckpt CKPT")
        if args.out is None and hub_ref(args.ckpt) is not None:
            raise UsageError(f"--ckpt {args.ckpt} is a hub id: pass --out DIR for the predictions and metrics")
        out_dir = args.out or Path(args.ckpt)
        config = _load_config(Path(args.target), args.set)
        with _public_data(config):
            metrics, _ = task_of(config).evaluate(args.ckpt, out_dir, split=args.split, data=config["data"])
        print(f"wrote {out_dir}/{args.split}_preds.jsonl and {args.split}_metrics.json")
    print(json.dumps(metrics.get("brief", metrics), indent=4))
    return 0


def _cmd_train(args) -> int:
    from vidmamba.tasks import task_of

    config = _load_config(args.config, args.set)
    config["train"].setdefault("out_dir", str(Path("runs") / Path(args.config).stem))
    with _public_data(config):
        summary = task_of(config).train(config, resume=args.resume or None)
    print(json.dumps({k: summary[k] for k in ("best_metric", "best_epoch", "eval") if k in summary}, indent=2))
    return 0


def _cmd_predict(args) -> int:
    from vidmamba.utils import atomic_write_text

    queries = list(args.queries) + list(args.query)
    if args.video_features is not None:  # pre-extracted features: one query
        from vidmamba.tasks import predict_features

        if args.video is not None or args.query_features is None or len(queries) > 1 or args.plot:
            raise UsageError("--video-features F --query-features Q [--query TEXT] takes no VIDEO, one query text at "
                             "most, no --plot, and needs --query-features")
        timing = {k: v for k, v in (("fps", args.fps), ("duration", args.duration)) if v is not None}
        result = predict_features(args.ckpt, args.video_features, args.query_features,
                                  query=queries[0] if queries else "", **timing)
        from vidmamba.video.predict import format_table

        print(format_table(result))
        if args.out:
            atomic_write_text(args.out, json.dumps(result, indent=2))
            print(f"wrote {args.out}")
        return 0
    if args.video is None or not queries:
        raise UsageError('give a video and at least one query: vidmamba predict VIDEO "query" [--query ...] --ckpt '
                         "CKPT (or --video-features/--query-features)")
    encoder = _check_video_inputs("vidmamba predict VIDEO", args.encoder, [args.video])
    from vidmamba.video.predict import VideoPredictor, format_table, plot_result

    predictor = VideoPredictor(args.ckpt, encoder, cache_dir=args.cache, frames_per_clip=args.frames_per_clip,
                               device=args.device)
    result = predictor(args.video, queries)
    print(format_table(result))
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    if args.plot:
        for path in plot_result(result, args.plot, args.video):
            print(f"wrote {path}")
    return 0


def _check_video_inputs(what: str, encoder, videos=()) -> str:
    """Fail fast, before any model loads: each video exists and is a file, the optional dependencies are installed,
    each video opens as a video (nothing decoded), and the CLIP encoder can be loaded (a local folder, a reachable or
    cached hub id). Returns the encoder to load (default :data:`~vidmamba.video.encoders.DEFAULT_CLIP`)."""
    for video in videos:
        if Path(video).is_dir():
            raise InputError(f"video {video} is a folder; expected a video file")
        if not Path(video).is_file():
            raise MissingFileError(f"video {video}: no such file")
    for module in ("av", "transformers"):
        require_extra(module, "video", what)
    from vidmamba.video.decode import check_video
    from vidmamba.video.encoders import DEFAULT_CLIP, encoder_source

    for video in videos:
        check_video(video)
    encoder = encoder or DEFAULT_CLIP
    encoder_source(encoder)
    return encoder


def _cmd_extract(args) -> int:
    from vidmamba.video.extract import parse_shard

    shard = parse_shard(args.shard)
    model = _check_video_inputs("vidmamba extract", args.model)
    from vidmamba.video.encoders import ClipEncoder
    from vidmamba.video.extract import extract_text, extract_videos

    encoder = ClipEncoder(model, device=args.device)
    report = extract_videos(args.videos, args.out, encoder, clip_length=args.clip_length,
                            frames_per_clip=args.frames_per_clip, workers=args.workers, shard=shard,
                            progress=not args.no_progress)
    print(f"extracted {len(report.done)}, cached {len(report.cached)}, failed {len(report.failed)} "
          f"-> {args.out}/clip_features")
    for video, error in report.failed:
        print(f"failed: {error}", file=sys.stderr)
    if args.annotations:
        from vidmamba.data.errors import DataFormatError
        from vidmamba.video.extract import write_nlq_annotations

        n = sum(extract_text(path, args.out, encoder, dataset=args.dataset) for path in args.annotations)
        print(f"encoded {n} queries -> {args.out}/clip_text_features")
        try:
            path = write_nlq_annotations(args.annotations, args.out, clip_length=args.clip_length,
                                         dataset=args.dataset)
            print(f"wrote {path} (the same annotations for the nlq task: configs/hieramamba_clip.yaml)")
        except DataFormatError as exc:  # the moment_retrieval files are fine; only the nlq copy cannot be made
            print(f"note: no {args.out}/annotations.json for the nlq task: {exc}", file=sys.stderr)
    return 1 if report.failed else 0


def _cmd_export(args) -> int:
    from vidmamba.tasks import export_pretrained

    out = export_pretrained(args.run, args.out, force=args.force)
    print(f"wrote {out} (load it with vidmamba.tasks.pretrained.from_pretrained)")
    return 0


def _cmd_serve(args) -> int:
    from vidmamba.serve import check_listen_address, default_workers, make_predictor, serve

    if args.video_dir is not None and not args.video_dir.is_dir():
        raise MissingFileError(f"--video-dir {args.video_dir}: no such folder")
    check_listen_address(args.host, args.port)
    limit_arenas((args.workers or default_workers()) + 1)  # before any thread: freed memory is reused across requests
    for module in ("gradio", "matplotlib"):
        require_extra(module, "demo", "vidmamba serve")
    encoder = _check_video_inputs("vidmamba serve", args.encoder)
    predict_fn = make_predictor(args.ckpt, encoder, cache_dir=args.cache, workers=args.workers)
    serve(predict_fn, video_dir=args.video_dir, host=args.host, port=args.port, workers=args.workers)
    return 0


def _cmd_demo(args) -> int:
    from vidmamba.demo import run_demo

    results = run_demo(args.out, data_dir=args.data)
    golden = results.get("qvhighlights_official_eval")
    return 1 if golden and golden["mismatched"] else 0


def build_parser() -> argparse.ArgumentParser:
    from vidmamba.metrics.evaluate import PROTOCOLS  # numpy only: --help stays quick

    parser = argparse.ArgumentParser(
        prog="vidmamba", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Linear-time Mamba models for video-language understanding: moment retrieval, highlight "
                    "detection, action recognition.",
        epilog="Every expected mistake prints one line 'vidmamba <command>: error: ...' and exits with status 2; "
               f"--debug (or VIDMAMBA_DEBUG=1) shows the traceback.\nCache (generated benchmarks, video features): "
               f"{CACHE_DIRS}.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command name too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    ev = command("evaluate", help="score predictions with the official metrics, or evaluate a checkpoint",
                        description="vidmamba evaluate TASK --submission P --gt G [--out M]  |  "
                                    "vidmamba evaluate CONFIG --ckpt CKPT [--split val] [--out DIR]")
    ev.add_argument("target", help=f"metric protocol ({', '.join(PROTOCOLS)}) or a config file")
    ev.add_argument("--submission", type=Path, help="prediction jsonl (protocol mode)")
    ev.add_argument("--gt", type=Path, help="ground-truth jsonl (protocol mode)")
    ev.add_argument("--highlights-only", action="store_true",
                    help="qvhighlights: score the saliency only (a submission without pred_relevant_windows)")
    ev.add_argument("--ckpt", help="checkpoint folder or run folder, or a hub id hf://owner/name[@revision] of a "
                                   "pretrained folder (config mode)")
    ev.add_argument("--split", default="val", help="annotation split of the config's data section (config mode)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value (config mode), e.g. --set data.val=test.jsonl")
    ev.add_argument("--out", type=Path, help="metrics JSON file (protocol mode) or output folder (config mode)")
    ev.set_defaults(func=_cmd_evaluate)

    tr = command("train", help="train a model from a YAML config",
                        description="Train the model of a YAML config (sections task, model, data, train; see "
                                    "configs/). Checkpoints go to train.out_dir (default runs/<config name>).")
    tr.add_argument("config", type=Path, help="YAML experiment config, e.g. configs/mlvtg_qvhighlights.yaml")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.lr=3e-4 (repeatable)")
    tr.add_argument("--resume", action="store_true", help="continue from <out_dir>/last")
    tr.set_defaults(func=_cmd_train)

    pr = command("predict", help="ranked moments and per-clip saliency for one video",
                        description='vidmamba predict VIDEO "query" [--query ...] --ckpt CKPT [--encoder PATH] '
                                    "[--json FILE] [--plot OUT.png]  |  vidmamba predict --ckpt CKPT "
                                    "--video-features F.npz --query-features Q.npz [--query TEXT] [--json FILE]")
    pr.add_argument("video", type=Path, nargs="?", help="video file (decoded, CLIP features cached)")
    pr.add_argument("queries", nargs="*", help="query texts (all run in one batch)")
    pr.add_argument("--ckpt", required=True, help="run, checkpoint or pretrained folder (MLVTG or HieraMamba), or a "
                                                  "hub id hf://owner/name[@revision] of a pretrained folder")
    pr.add_argument("--query", action="append", default=[], help="another query (repeatable); with "
                    "--video-features: the query text, echoed in the output")
    pr.add_argument("--encoder", help=ENCODER_HELP)
    pr.add_argument("--cache", type=Path, help=CACHE_HELP)
    pr.add_argument("--frames-per-clip", type=int, default=1, help="frames averaged per clip (default 1)")
    pr.add_argument("--device", default="cpu", help="torch device of the CLIP encoder (default cpu)")
    pr.add_argument("--plot", type=Path, help="PNG: timeline, saliency, thumbnails; with several queries one file per "
                                              "query, <stem>_0.png, <stem>_1.png, ...")
    pr.add_argument("--video-features", type=Path, nargs="+", action="extend",
                    help="one feature file per feature type of the config, in its order, listed or repeated (npz key "
                         "'features' (T, D); TVSum UMT: the _rgb.npy and _opt.npy files): predict from features")
    pr.add_argument("--query-features", type=Path, help="npz with key 'last_hidden_state' (or 'token') (L, D)")
    pr.add_argument("--fps", type=float, help="frame rate of the video the features came from (nlq / SnAG "
                                              "checkpoints: maps the feature grid to seconds)")
    pr.add_argument("--duration", type=float, help="video length in seconds (nlq checkpoints; default: the span the "
                                                   "features cover)")
    pr.add_argument("--json", "--out", dest="out", type=Path, metavar="FILE",
                    help="write the full answer as JSON (every moment, the per-clip saliency)")
    pr.set_defaults(func=_cmd_predict)

    xt = command("extract", help="CLIP features of videos in the lighthouse npz layout (cached, resumable)",
                 description="Decode videos, encode one CLIP feature per clip into OUT/clip_features/<video name>.npz "
                             "(cached by content, resumable, sharded); with --annotations also encode the queries of "
                             "lighthouse jsonl files into OUT/clip_text_features/ and write OUT/annotations.json, the "
                             "same annotations for the nlq task (HieraMamba).")
    xt.add_argument("videos", type=Path, nargs="+", help="video files")
    xt.add_argument("--out", type=Path, required=True, help="feature root: writes clip_features/<vid>.npz")
    xt.add_argument("--model", help="CLIP folder or hub id hf://owner/name[@revision] (default "
                                    "hf://openai/clip-vit-base-patch32)")
    xt.add_argument("--clip-length", type=float, default=2.0, help="seconds per clip (default 2, QVHighlights)")
    xt.add_argument("--frames-per-clip", type=int, default=1, help="frames averaged per clip (default 1)")
    xt.add_argument("--device", default="cpu", help="torch device of the CLIP encoder (default cpu)")
    xt.add_argument("--workers", type=int, default=1, help="videos processed in parallel (threads; default 1)")
    xt.add_argument("--shard", default="0/1", help="i/n: process only every n-th video from the i-th (0-based)")
    xt.add_argument("--annotations", type=Path, nargs="+", metavar="JSONL",
                    help="lighthouse jsonl files, one per split (e.g. train.jsonl val.jsonl): also encode their "
                         "queries (clip_text_features/) and write annotations.json (split = file name)")
    xt.add_argument("--dataset", default="qvhighlight",
                    help="dataset naming of the text files (with --annotations; default qvhighlight: qid<qid>.npz)")
    xt.add_argument("--no-progress", action="store_true", help="no progress bar")
    xt.set_defaults(func=_cmd_extract)

    ex = command("export", help="convert a trained run's best checkpoint into a pretrained folder",
                 description="Write a self-contained pretrained folder (safetensors weights + versioned config.json) "
                             "from a run's best checkpoint, to share or to pass to predict / serve --ckpt.")
    ex.add_argument("run", type=Path, help="run folder (its best/) or checkpoint folder")
    ex.add_argument("--out", type=Path, required=True, help="pretrained folder to write (an existing one is replaced "
                                                            "only when it is a pretrained folder vidmamba wrote)")
    ex.add_argument("--force", action="store_true", help="also replace an --out folder of other files (never a file, "
                                                         "nor a folder that is or holds a training run)")
    ex.set_defaults(func=_cmd_export)

    sv = command("serve", help="web demo: find moments in an uploaded video (needs vidmamba[demo,video])",
                 description="A web page on http://HOST:PORT: upload a video, type one query per line, get ranked "
                             "moments and saliency; click a moment to seek the player.")
    sv.add_argument("--ckpt", required=True, help="run, checkpoint or pretrained folder (MLVTG or HieraMamba), or a "
                                                  "hub id hf://owner/name[@revision] of a pretrained folder")
    sv.add_argument("--encoder", help=ENCODER_HELP)
    sv.add_argument("--cache", type=Path, help=CACHE_HELP)
    sv.add_argument("--video-dir", type=Path, help="also allow videos named by path inside this server folder")
    sv.add_argument("--host", default="127.0.0.1",
                    help="interface to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    sv.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    sv.add_argument("--workers", type=int, default=0, help="requests answered at once (default 0: one per CPU core, "
                                                          "at most 8)")
    sv.set_defaults(func=_cmd_serve)

    demo = command("demo", help="run the built-in demo",
                          description=f"Generate the synthetic grounding benchmark (cached under {CACHE_DIRS}), train "
                                      "MLVTG, its transformer twin and a per-clip model with one budget, score them.")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (results.json, figure)")
    demo.add_argument("--data", type=Path, default=None,
                      help="folder holding qvhighlights_eval/ (the official evaluation files): check our QVHighlights "
                           "evaluation against them (default: $VIDMAMBA_DATA; neither: no check)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    passive_openmp_waits()  # before torch loads: idle OpenMP threads sleep instead of spinning on a busy machine
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("VIDMAMBA_DEBUG", "") not in ("", "0")
    try:
        keep_freed_memory()  # long videos: reuse freed activations instead of faulting in fresh pages
        return args.func(args)
    except VidmambaError as exc:
        if debug:
            raise
        print(f"vidmamba {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
