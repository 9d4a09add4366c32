"""From a video file of an hour or more to moments on CPU: decode + CLIP encoding, then grounding with MLVTG and with
HieraMamba, each through :class:`vidmamba.video.predict.VideoPredictor` (the code path of ``vidmamba predict VIDEO``).
Prints JSON (and writes ``benchmarks/results_video_hour.json``).

- The video: ``--minutes`` of generated 320x180 frames at ``--fps`` (MPEG-4 part 2, a smooth moving pattern with a
  dark band during a few events), written once and kept under ``--work``.
- The encoder: CLIP ViT-B/32's architecture with random weights (``save_tiny_clip(**VIT_B_32)``): the real weights
  cannot be downloaded here; compute and memory are those of the real model, the features are not.
- The models: MLVTG at ``configs/mlvtg_qvhighlights_aligner_only.yaml``'s size and HieraMamba at
  ``configs/hieramamba_clip.yaml``'s, with CLIP-only inputs (512-d video and text), random weights saved as run
  folders (timing does not depend on the weights).
- Phases, each in a fresh process (peak memory = that process's maximum resident set): ``encode`` = decode + encode
  the video at 2-s clips into the feature cache (``features_for``, what the first ``predict`` of a video does);
  ``ground/<model>`` = load the checkpoint and the encoder, then answer ``--queries`` queries from the warm cache
  (text encoding + the model on the whole video, one batch). A first ``predict`` costs ``encode`` + ``ground``.

Run alone on a quiet machine: ``python benchmarks/video_hour.py`` (defaults: 60 min at 25 fps, 2 threads).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results_video_hour.json"
CLIP_LENGTH = 2.0
MODELS = {"mlvtg": "configs/mlvtg_qvhighlights_aligner_only.yaml", "hieramamba": "configs/hieramamba_clip.yaml"}
QUERIES = ["a dark band across the top", "the pattern drifts to the left", "a bright frame", "nothing happens"]


def frames(n: int, fps: float, height: int = 180, width: int = 320):
    """``n`` frames of a diagonal gradient drifting one pixel per frame, a dark top band during 30 s of every 10 min."""
    import numpy as np

    yy, xx = np.mgrid[0:height, 0:2 * width]
    base = ((xx + yy) % 256).astype(np.uint8)
    for i in range(n):
        shift = i % width
        img = np.repeat(base[:, shift:shift + width, None], 3, axis=2)
        if (i / fps) % 600 < 30:
            img[: height // 4] = 16
        yield img


def make_video(path: Path, minutes: float, fps: float) -> Path:
    from vidmamba.video.synthetic import write_video

    if not path.is_file():
        n = int(minutes * 60 * fps)
        write_video(path, [i / fps for i in range(n)], frames=frames(n, fps))
    return path


def make_runs(work: Path) -> dict[str, Path]:
    """A run folder per model (random weights, CLIP-only widths) with the experiment config ``predict`` reads."""
    import torch

    from vidmamba.config import load_config
    from vidmamba.engine.checkpoint import save_checkpoint
    from vidmamba.tasks import get_task

    runs = {}
    for name, config_path in MODELS.items():
        run = work / f"run_{name}"
        runs[name] = run
        if (run / "best").is_dir():
            continue
        config = load_config(REPO / config_path)
        task = get_task(config["task"])
        config["model"].update(video_dim=512, text_dim=512)
        if task.family == "grounding":
            config["data"].update(video_dims=[512], text_dim=512, video_features=["clip_features"],
                                  text_features="clip_text_features")
            config["model"]["clip_length"] = CLIP_LENGTH
        else:
            config["data"].update(video_dims=[512], text_dim=512, clip_length=CLIP_LENGTH)
        torch.manual_seed(0)
        model = task.build_model(config)
        save_checkpoint(run / "best", model, config={"trainer": {}, "experiment": config})
    return runs


def clip_encoder(work: Path) -> Path:
    from vidmamba.video.encoders import VIT_B_32, save_tiny_clip

    folder = work / "clip_vit_b32_random"
    if not (folder / "config.json").is_file():
        save_tiny_clip(folder, **VIT_B_32)
    return folder


def phase(kind: str, work: Path, threads: int, model: str = "") -> dict:
    """Run one phase in this process (called in a fresh child by :func:`main`)."""
    import torch

    from vidmamba.allocator import keep_freed_memory

    keep_freed_memory()  # as the vidmamba command does
    torch.set_num_threads(threads)
    video, cache = work / "video.mp4", work / "cache"
    started = time.perf_counter()
    if kind == "encode":
        from vidmamba.video.encoders import ClipEncoder
        from vidmamba.video.extract import VIDEO_FEATURES, cache_key, features_for, file_digest

        encoder = ClipEncoder(str(clip_encoder(work)))
        loaded = time.perf_counter()
        key = cache_key(file_digest(video), encoder, CLIP_LENGTH, 1)
        feats, cached = features_for(encoder, video, cache / VIDEO_FEATURES / f"{key}.npz", CLIP_LENGTH, key=key)
        assert not cached, "the encode phase must start from an empty cache"
        out = {"clips": len(feats.features), "duration_s": feats.duration, "load_s": loaded - started,
               "decode_encode_s": time.perf_counter() - loaded}
    else:
        from vidmamba.video.predict import VideoPredictor

        predictor = VideoPredictor(work / f"run_{model}", str(clip_encoder(work)), cache_dir=cache)
        loaded = time.perf_counter()
        result = predictor(video, QUERIES)
        assert result["cached"], "the ground phase reads the features the encode phase wrote"
        out = {"clips": result["num_clips"], "load_s": loaded - started, "answer_s": time.perf_counter() - loaded,
               "top_window": result["results"][0]["windows"][0]}
    return {**out, "peak_rss_gib": peak_rss_gib()}


def peak_rss_gib() -> float:
    """This process's peak resident set (``VmHWM``; unlike ``ru_maxrss`` it is not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2 ** 20
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/vidmamba_video_hour"))
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--phase", choices=["encode", "ground"], help=argparse.SUPPRESS)
    ap.add_argument("--model", choices=list(MODELS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.phase:  # child process
        print(json.dumps(phase(args.phase, args.work, args.threads, args.model or "")))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    make_video(args.work / "video.mp4", args.minutes, args.fps)
    generated = time.perf_counter() - started
    clip_encoder(args.work)
    make_runs(args.work)
    subprocess.run(["rm", "-rf", str(args.work / "cache")], check=True)
    result = {"command": "python benchmarks/video_hour.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "loadavg_start": os.getloadavg()},
              "video": {"minutes": args.minutes, "fps": args.fps, "size": "320x180", "codec": "mpeg4",
                        "bytes": (args.work / "video.mp4").stat().st_size, "generation_s": round(generated, 1)},
              "phases": {}}
    base = [sys.executable, __file__, "--work", str(args.work), "--threads", str(args.threads)]
    for name, extra in [("encode", ["--phase", "encode"])] + [(f"ground/{m}", ["--phase", "ground", "--model", m])
                                                              for m in MODELS]:
        proc = subprocess.run(base + extra, capture_output=True, text=True, check=True)
        result["phases"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, result["phases"][name], file=sys.stderr)
    result["machine"]["loadavg_end"] = os.getloadavg()
    from vidmamba.utils import print_and_write_json

    print_and_write_json(result, args.out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
