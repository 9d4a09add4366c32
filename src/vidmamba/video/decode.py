"""Streamed video decoding with PyAV at a fixed clip rate (extra ``[video]``).

A video is cut into clips of ``clip_length`` seconds: clip ``i`` spans ``[i*L, (i+1)*L)`` on the presentation
timeline (origin = the container's start time). Frame ``j`` of ``F`` frames per clip is sampled at
``(i + (j + 0.5) / F) * L`` seconds (one frame per clip: the clip centre), and the frame used for a time ``t`` is
the one a player shows at ``t``: the last decoded frame whose presentation time is ``<= t`` (the first frame before
it). Sampling goes by presentation time, never by frame index, so variable-frame-rate videos are sampled right.
The number of clips is ``ceil((end - 1 ms) / L)``, ``end`` being the last frame's time plus its duration; a last
partial clip gets the video's last frame for the times past its end (as the lighthouse / moment_detr extractors, which
keep a last partial clip).

Frames are RGB ``uint8`` arrays ``(H, W, 3)`` with the container's display matrix applied (rotation by multiples
of 90 degrees and mirror flips, as ffmpeg's autorotate shows them). A video whose resolution (or orientation) changes
midway (spliced streams, some phone and broadcast recordings) is decoded whole: in :func:`iter_clips` every frame is
resized to the first sampled frame's display size, as a player scales it into a fixed window, and a warning names the
file and the time of the first change; :func:`frames_at` returns every frame at its own size. Decoding is streamed:
only the previous decoded frame and the current batch of clips are ever held in memory, whatever the video length.

Errors (missing file, not a media file, no video stream, corrupt data, frames ending well before the stream's
declared duration, nothing decodable) are :class:`VideoDecodeError`, a
:class:`~vidmamba.data.errors.DataFormatError` naming the file.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from vidmamba.data.errors import DataFormatError
from vidmamba.errors import InputError, require_extra


class VideoDecodeError(DataFormatError):
    """A video file cannot be opened or decoded; the message names the file."""


class VideoSizeChangeWarning(UserWarning):
    """A video's frame size changes midway; later frames are resized to the first size (the message names the
    file)."""


def _av():
    return require_extra("av", "video", "video decoding")


@dataclasses.dataclass(frozen=True)
class ClipBatch:
    """Consecutive clips of one video.

    frames: (B, F, H, W, 3) uint8, F frames per clip (display orientation).
    first_clip: index of the first clip of the batch in the video.
    times: (B, F) float64, the sampled presentation time of every frame, seconds from the video start.
    duration: the video's length in seconds (last frame time + its duration); set on the last batch only.
    """

    frames: np.ndarray
    first_clip: int
    times: np.ndarray
    duration: float | None = None


def sample_times(clip_index: int, clip_length: float, frames_per_clip: int) -> list[float]:
    """The ``frames_per_clip`` sampling times (seconds) of clip ``clip_index``: evenly spaced bin centres."""
    return [(clip_index + (j + 0.5) / frames_per_clip) * clip_length for j in range(frames_per_clip)]


#: Decoded frames may end this much (seconds; or two frames) before the stream's declared duration; earlier is an
#: error (a truncated file whose index, written first, still lists the lost frames).
TRUNCATION_SLACK = 0.5
#: A last partial clip shorter than this (seconds) is not a clip: container timestamps are rounded (often to ms).
END_TOLERANCE = 1e-3


def num_clips_for(duration: float, clip_length: float) -> int:
    """Clips needed to cover ``duration`` seconds (a last partial clip counts if longer than END_TOLERANCE); >= 1."""
    return max(1, math.ceil((duration - END_TOLERANCE) / clip_length))


def check_video(path) -> Path:
    """Open ``path`` as a video and close it again (no frame is decoded): a missing file, a folder, or a file with
    no video stream is a :class:`VideoDecodeError` naming it, before any slow step. Returns the path."""
    path = Path(path)
    if path.is_dir():
        raise VideoDecodeError(path, "this is a folder", expected="a video file")
    _Frames(path).close()
    return path


class _Frames:
    """Decoded frames of a file's first video stream as (time_s, duration_s, frame), in presentation order."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoDecodeError(self.path, "video file not found")
        av = _av()
        try:
            self.container = av.open(str(self.path))
        except av.error.FFmpegError as e:
            raise VideoDecodeError(self.path, "cannot open the file as a video (corrupt, truncated or not a media "
                                              "file?)", found=f"{type(e).__name__}: {e}") from e
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams})
            self.container.close()
            if not kinds:
                raise VideoDecodeError(self.path, "cannot read any stream from the file (truncated, corrupt or not "
                                                  "a media file?)", expected="a video stream", found="no streams")
            raise VideoDecodeError(self.path, "the file has no video stream", expected="a video stream",
                                   found=", ".join(kinds))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        start = self.container.start_time
        self.origin = None if start is None else start / 1_000_000  # AV_TIME_BASE is microseconds
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.frame_step = 1.0 / float(rate) if rate else 0.0
        self.end = 0.0  # the end of the frames decoded so far, seconds

    def __iter__(self):
        av = _av()
        last = None
        try:
            for frame in self.container.decode(self.stream):
                t = frame.time if frame.time is not None else (0.0 if last is None else last + self.frame_step)
                if self.origin is None:
                    self.origin = t
                dur = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else \
                    self.frame_step
                last = t
                self.end = max(self.end, t - self.origin + dur)
                yield t - self.origin, dur, frame
        except av.error.FFmpegError as e:
            where = "before the first frame" if last is None else f"after {last - (self.origin or 0.0):.3f} s"
            raise VideoDecodeError(self.path, f"corrupt video data ({where})",
                                   found=f"{type(e).__name__}: {e}") from e
        if last is None:
            raise VideoDecodeError(self.path, "no decodable video frame", expected="at least one frame",
                                   found="none")
        declared = float(self.stream.duration * self.stream.time_base) if self.stream.duration else None
        if declared is not None and self.end < declared - max(TRUNCATION_SLACK, 2 * self.frame_step):
            raise VideoDecodeError(self.path, "video data ends early (truncated file?)",
                                   expected=f"frames up to {declared:.3f} s (the stream's declared duration)",
                                   found=f"frames up to {self.end:.3f} s")

    def close(self):
        self.container.close()


def display_matrix(frame) -> np.ndarray | None:
    """The frame's display matrix (FFmpeg ``AV_FRAME_DATA_DISPLAYMATRIX``: 3x3 int32, 16.16 fixed point in the
    2x2 linear part) from its side data; None when the frame has none."""
    for side in frame.side_data:
        if side.type.name == "DISPLAYMATRIX":
            return np.frombuffer(bytes(side), dtype="<i4").reshape(3, 3)
    return None


def apply_display_matrix(img: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """Transform an (H, W, C) image for display as FFmpeg's display ``matrix`` says: any multiple of 90 degrees of
    rotation, with or without a mirror flip (the eight EXIF orientations). A source pixel (p, q) (column, row) goes
    to ``(p', q') = (a p + c q, b p + d q)`` up to a shift, ``[[a, b], [c, d]]`` being the matrix's linear part; an
    angle that is not a multiple of 90 degrees is rounded to the nearest one."""
    if matrix is None:
        return img
    (a, b), (c, d) = matrix[:2, :2].astype(np.float64)
    if abs(a) + abs(d) >= abs(b) + abs(c):  # axis-aligned: p' = a p, q' = d q
        out = img[:, ::-1] if a < 0 else img
        out = out[::-1] if d < 0 else out
    else:  # transposed: p' = c q, q' = b p
        out = img.transpose(1, 0, 2)
        out = out[:, ::-1] if c < 0 else out
        out = out[::-1] if b < 0 else out
    return np.ascontiguousarray(out)


def to_rgb(frame) -> np.ndarray:
    """A PyAV video frame as an (H, W, 3) uint8 RGB array in display orientation (its display matrix applied:
    rotation and mirroring)."""
    return apply_display_matrix(frame.to_ndarray(format="rgb24"), display_matrix(frame))


def fit_to(img: np.ndarray, shape: tuple) -> np.ndarray:
    """``img`` (H, W, 3) uint8 resized (bilinear, swscale) to ``shape`` (H0, W0, 3); unchanged when it fits."""
    if img.shape == shape:
        return img
    frame = _av().VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    return frame.reformat(width=shape[1], height=shape[0], interpolation="BILINEAR").to_ndarray(format="rgb24")


def _frames_for_times(frames: _Frames, times: Iterator[float], keep_after_end) -> Iterator[tuple[float, np.ndarray]]:
    """For increasing ``times`` (seconds), yield (time, the RGB frame displayed then). Times past the last frame get
    the last frame while ``keep_after_end(k, end_s)`` holds for the k-th time (``end_s``: the video end)."""
    prev = prev_rgb = None
    k = 0
    target = next(times, None)
    for t, _, frame in frames:
        while target is not None and target < t - 1e-6:
            if prev is None:  # a time before the first frame shows the first frame
                prev = frame
            if prev_rgb is None:
                prev_rgb = to_rgb(prev)
            yield target, prev_rgb
            k, target = k + 1, next(times, None)
        if target is None:
            return
        prev, prev_rgb = frame, None
    while target is not None and keep_after_end(k, frames.end):  # the tail: the last frame stays on screen
        if prev_rgb is None:
            prev_rgb = to_rgb(prev)
        yield target, prev_rgb
        k, target = k + 1, next(times, None)


def iter_clips(path, clip_length: float, frames_per_clip: int = 1, batch_clips: int = 16) -> Iterator[ClipBatch]:
    """Stream the clips of a video in batches of at most ``batch_clips`` clips (see the module doc for sampling).

    Memory is O(batch_clips * frames_per_clip) frames whatever the video length. Frames of another size than the
    first are resized to it (one :class:`VideoSizeChangeWarning` per video).
    """
    if not clip_length > 0:
        raise InputError(f"clip_length must be > 0 seconds, got {clip_length}")
    if frames_per_clip < 1 or batch_clips < 1:
        raise InputError(f"frames_per_clip and batch_clips must be >= 1, got {frames_per_clip}, {batch_clips}")
    frames = _Frames(path)
    times = (t for i in itertools.count() for t in sample_times(i, clip_length, frames_per_clip))

    def in_video(k, end):
        return k // frames_per_clip < num_clips_for(end, clip_length)

    resized = False

    try:
        buf, stamps, first, held, shape = [], [], 0, None, None
        for t, rgb in _frames_for_times(frames, times, in_video):
            if shape is None:
                shape = rgb.shape
            elif rgb.shape != shape:
                if not resized:
                    warnings.warn(f"{frames.path}: the frame size changes from {shape[1]}x{shape[0]} to "
                                  f"{rgb.shape[1]}x{rgb.shape[0]} at {t:.3f} s; frames are resized to the first "
                                  "size", VideoSizeChangeWarning, stacklevel=2)
                    resized = True
                rgb = fit_to(rgb, shape)
            buf.append(rgb)
            stamps.append(t)
            if len(buf) == batch_clips * frames_per_clip:
                if held is not None:  # one batch is held back until we know whether it is the last
                    yield held
                held = _batch(buf, stamps, first, frames_per_clip)
                first += batch_clips
                buf, stamps = [], []
        if buf:
            if held is not None:
                yield held
            held = _batch(buf, stamps, first, frames_per_clip)
        yield dataclasses.replace(held, duration=frames.end)
    finally:
        frames.close()


def _batch(buf, times, first, frames_per_clip) -> ClipBatch:
    frames = np.stack(buf)
    n = len(buf) // frames_per_clip
    return ClipBatch(frames.reshape(n, frames_per_clip, *frames.shape[1:]), first,
                     np.asarray(times, dtype=np.float64).reshape(n, frames_per_clip))


def _seek_frame(frames: _Frames, t: float) -> np.ndarray | None:
    """The RGB frame shown at ``t`` seconds, by seeking to the key frame at or before ``t`` and decoding forward;
    None when that cannot be trusted (no known origin, no timestamps, the seek landed after ``t``, decoder error)."""
    av, stream = _av(), frames.stream
    if frames.origin is None or not stream.time_base:
        return None
    target = frames.origin + t
    prev = None
    try:
        frames.container.seek(max(0, int(target / stream.time_base)), stream=stream, backward=True)
        for frame in frames.container.decode(stream):
            if frame.time is None:
                return None
            if frame.time > target + 1e-6:
                break
            prev = frame
    except av.error.FFmpegError:
        return None
    return None if prev is None else to_rgb(prev)


def frames_at(path, times_s: Sequence[float]) -> list[np.ndarray]:
    """The frames a player shows at ``times_s`` (seconds, any order; past the end: the last frame), as
    (H, W, 3) uint8 RGB arrays in the order given. Each time is reached by seeking (a few thumbnails of a 2-hour
    video decode a few GOPs, not the whole file); times a seek cannot serve exactly (before the first frame, files
    without timestamps or index) fall back to one streamed pass over the file."""
    times = [float(t) for t in times_s]
    if any(not math.isfinite(t) or t < 0 for t in times):
        raise ValueError(f"frames_at: times must be finite and >= 0 seconds, got {times}")
    out: list = [None] * len(times)
    if not times:
        return out
    frames = _Frames(path)
    try:
        for i, t in enumerate(times):
            out[i] = _seek_frame(frames, t)
    finally:
        frames.close()
    missing = sorted((i for i in range(len(times)) if out[i] is None), key=times.__getitem__)
    if missing:
        frames = _Frames(path)
        try:
            for slot, (_, rgb) in zip(missing, _frames_for_times(frames, (times[i] for i in missing),
                                                                 lambda k, end: True)):
                out[slot] = rgb
        finally:
            frames.close()
    return out
