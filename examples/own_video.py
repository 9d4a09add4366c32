"""From a video file to moments, end to end on CPU, reproducibly: the figure of the README's "Your own video".

What it runs (the README's commands, through ``vidmamba.cli.main``):
generate 14 short mp4s with PyAV (a grey picture with a white top band; during one 6-s event per video the band turns
black) -> write a tiny *randomly initialised* CLIP offline -> ``vidmamba extract`` (video + query features) ->
``vidmamba train`` a tiny MLVTG on those CLIP-only features -> ``vidmamba export`` -> ``vidmamba predict VIDEO
"query" --plot`` on a held-out 60-s video -> the figure. No real CLIP weights are used: the point is the pipeline,
not the encoder.

    python examples/own_video.py [--work runs/own_video] [--out FIGURE]   # default FIGURE: <work>/own_video.png
    python examples/own_video.py --out docs/own_video.png                 # the README's figure
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vidmamba.cli import main
from vidmamba.video.encoders import save_tiny_clip
from vidmamba.video.synthetic import index_frame, write_video

FPS, EVENT = 2, 6  # frames per second of the generated videos; event length in seconds
QUERY, OTHER = "the band on top turns dark", "a white band on top"


def event_video(path, seconds: int, start: int) -> Path:
    """``seconds`` s at FPS; frames in [start, start + EVENT) s have a black top band instead of a white one."""
    times = [i / FPS for i in range(seconds * FPS)]
    frames = []
    for i, t in enumerate(times):
        img = index_frame(i % 225, 64, 96)
        if start <= t < start + EVENT:
            img[:16] = 0
        frames.append(img)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_video(path, times, frames=frames)


def build_corpus(work: Path, seed: int) -> tuple[list[Path], Path]:
    """12 train + 2 val videos with their annotation jsonl files; returns (videos, held-out demo video)."""
    rng = np.random.default_rng(seed)
    rows = {"train": [], "val": []}
    videos = []
    for k in range(14):
        seconds = int(rng.integers(10, 21)) * 2
        start = 2 * int(rng.integers(0, (seconds - EVENT) // 2))
        path = event_video(work / "videos" / f"vid{k:02d}.mp4", seconds, start)
        videos.append(path)
        split = "val" if k >= 12 else "train"
        for j, (query, window) in enumerate([(QUERY, [start, start + EVENT]),
                                             (OTHER, [0, start] if start >= 2 else [start + EVENT, seconds])]):
            ids = list(range(window[0] // 2, window[1] // 2))
            rows[split].append({"qid": 10 * k + j, "query": query, "vid": path.stem, "duration": float(seconds),
                                "relevant_windows": [window], "relevant_clip_ids": ids,
                                "saliency_scores": [[4, 4, 4]] * len(ids)})
    for split, split_rows in rows.items():
        (work / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    demo = event_video(work / "videos_demo" / "my_video.mp4", 60, 34)
    return videos, demo


def run(work: Path, out: Path, seed: int = 0) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    clip = save_tiny_clip(work / "tiny_clip", image_dim=16, text_dim=16, seed=seed)
    videos, demo = build_corpus(work, seed)
    feats = work / "features"
    for split in ("train", "val"):
        assert main(["extract", *map(str, videos), "--out", str(feats), "--model", str(clip), "--clip-length", "2",
                     "--annotations", str(work / f"{split}.jsonl"), "--no-progress"]) == 0
    config = work / "mlvtg_own.yaml"
    config.write_text(f"""task: qvhighlights
model: {{name: mlvtg, hidden_dim: 32, num_layers: 1}}
data:
  dataset: qvhighlight
  feature_root: {feats}
  train: {work / 'train.jsonl'}
  val: {work / 'val.jsonl'}
  video_features: [clip_features]
  text_features: clip_text_features
train: {{epochs: 30, batch_size: 8, lr: 3e-3, warmup_epochs: 1, seed: {seed}, progress: false, out_dir: {work / 'run'}}}
""")
    assert main(["train", str(config)]) == 0
    assert main(["export", str(work / "run"), "--out", str(work / "pretrained")]) == 0
    assert main(["predict", str(demo), QUERY, "--ckpt", str(work / "pretrained"), "--encoder", str(clip),
                 "--cache", str(work / "cache"), "--json", str(work / "prediction.json"), "--plot", str(out)]) == 0
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/own_video"), help="working folder")
    parser.add_argument("--out", type=Path, help="the figure (default <work>/own_video.png)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run(args.work, args.out or args.work / "own_video.png", args.seed)
