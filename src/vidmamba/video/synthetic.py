"""Small generated videos for tests and demos: every frame shows its own index, so a decoder's sampling can be
checked exactly (extra ``[video]``)."""
from __future__ import annotations

import itertools
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

LEVEL0, LEVEL_STEP, LEVELS = 8, 16, 15  # grey levels 8, 24, ..., 232: far apart enough to survive compression


def index_frame(index: int, height: int = 32, width: int = 48) -> np.ndarray:
    """(H, W, 3) uint8 grey frame showing ``index`` (< 225): left half ``index % 15``, right half ``index // 15``,
    each as grey level ``8 + 16 * digit``. The top quarter is white, so the orientation is visible too."""
    if not 0 <= index < LEVELS * LEVELS:
        raise ValueError(f"index_frame: index must be in [0, {LEVELS * LEVELS}), got {index}")
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:, : width // 2] = LEVEL0 + LEVEL_STEP * (index % LEVELS)
    img[:, width // 2:] = LEVEL0 + LEVEL_STEP * (index // LEVELS)
    img[: height // 4] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """Inverse of :func:`index_frame` on a decoded (upright) frame (means over the halves' inner regions)."""
    h, w = img.shape[:2]
    rows = slice(h // 4 + h // 8, h - h // 8)
    left = img[rows, w // 8: w // 2 - w // 8].mean()
    right = img[rows, w // 2 + w // 8: w - w // 8].mean()
    return int(round((left - LEVEL0) / LEVEL_STEP)) + LEVELS * int(round((right - LEVEL0) / LEVEL_STEP))


def write_video(path, frame_times: Iterable[float], *, height: int = 32, width: int = 48, rotation: int = 0,
                hflip: bool = False, vflip: bool = False, frames: Iterable[np.ndarray] | None = None,
                time_base: Fraction = Fraction(1, 1000),
                faststart: bool = False, codec: str = "mpeg4") -> Path:
    """Write an mp4 (MPEG-4 part 2) whose frame ``i`` is shown from ``frame_times[i]`` seconds (increasing; any
    spacing, so variable frame rate is possible) until the next one; the last one lasts ``1 / rate``, with the stream
    rate ``round(1 / smallest gap)`` frames per second (1 for a single frame).
    ``frames`` (any iterable of (H, W, 3) uint8, consumed once) defaults to :func:`index_frame` images (frame ``i`` shows ``i % 225``); ``rotation``: display
    rotation (counter-clockwise degrees) stored as container side data, ``hflip`` / ``vflip``: a mirror after it;
    ``faststart``: the index (moov) before the
    data; ``codec``: e.g. "libvpx" (VP8) with a ``.webm`` path for a video that browsers play. Written atomically."""
    import av

    times = [float(t) for t in frame_times]
    if not times or any(b <= a for a, b in zip(times, times[1:])):
        raise ValueError("write_video: frame_times must be a non-empty increasing sequence")
    images = iter(frames) if frames is not None else \
        (index_frame(i % (LEVELS * LEVELS), height, width) for i in range(len(times)))
    first = next(images)  # streamed: an hour of frames is never in memory at once
    images = itertools.chain([first], images)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial{path.suffix or '.mp4'}")
    try:
        with av.open(str(tmp), "w", options={"movflags": "faststart"} if faststart else None) as container:
            rate = max(1, round(1 / min([b - a for a, b in zip(times, times[1:])] or [1.0])))
            stream = container.add_stream(codec, rate=rate)
            stream.width, stream.height = first.shape[1], first.shape[0]
            stream.pix_fmt = "yuv420p"
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
            stream.options = {"qscale": "2"} if codec == "mpeg4" else {}  # near-lossless: decoded grey levels stay within a few steps
            if rotation or hflip or vflip:
                stream.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
            for t, img in zip(times, images):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                frame.pts, frame.time_base = round(t / time_base), time_base
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)  # same folder: atomic, and no copy of a long video in memory
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_audio_only(path, seconds: float = 1.0, sample_rate: int = 8000) -> Path:
    """Write an mp4 holding one AAC audio stream and no video (a file the decoder must reject)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        n = int(seconds * sample_rate)
        samples = (0.1 * np.sin(np.arange(n) * 0.05)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
