"""Feature extraction from video files into the lighthouse npz layout, cached by content hash.

Layout written under ``out_dir`` (what :class:`vidmamba.data.lighthouse.MomentDataset` reads):

* ``clip_features/<vid>.npz``: key ``features`` (T, D) float32, L2-normalised CLIP clip embeddings, plus the cache
  record: ``cache_key`` (sha256 of the video bytes + the encoder fingerprint + the sampling settings),
  ``duration`` (seconds), ``clip_length``, ``frames_per_clip``;
* with annotations: ``clip_text_features/qid<qid>.npz`` (the dataset's text file naming), key
  ``last_hidden_state`` (TVSum: ``token``) (L, D_text).

``<vid>`` is the video file name without its suffix. A video whose npz already holds the same ``cache_key`` is
skipped, so a re-run (or a run resumed after a kill) does only the missing work; every file is written atomically,
so a killed run never leaves a partial file.
"""
from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vidmamba.data.lighthouse import get_dataset_spec, read_moment_jsonl, text_feature_path, video_feature_path
from vidmamba.data.errors import DataFormatError
from vidmamba.data.snag import snag_from_lighthouse
from vidmamba.errors import InputError
from vidmamba.utils import atomic_write_bytes, atomic_write_text, file_digest
from vidmamba.video.decode import VideoDecodeError, iter_clips
from vidmamba.video.encoders import ClipEncoder

VIDEO_FEATURES, TEXT_FEATURES = "clip_features", "clip_text_features"  # the QVHighlights folder names


def cache_key(video_digest: str, encoder: ClipEncoder, clip_length: float, frames_per_clip: int) -> str:
    """The identity of one extraction: same key, same features."""
    spec = json.dumps([video_digest, encoder.fingerprint, float(clip_length), int(frames_per_clip)])
    return hashlib.sha256(spec.encode()).hexdigest()


@dataclass(frozen=True)
class VideoFeatures:
    """features: (T, D) float32 per-clip features; duration: seconds; clip_length: seconds per clip."""

    features: np.ndarray
    duration: float
    clip_length: float


def extract_video(encoder: ClipEncoder, path, clip_length: float, frames_per_clip: int = 1,
                  batch_clips: int = 16) -> VideoFeatures:
    """Decode ``path`` clip by clip (streamed) and encode every clip: (T, encoder.image_dim) features."""
    feats, duration = [], None
    for batch in iter_clips(path, clip_length, frames_per_clip=frames_per_clip, batch_clips=batch_clips):
        feats.append(encoder.encode_clips(batch.frames))
        duration = batch.duration if batch.duration is not None else duration
    return VideoFeatures(np.concatenate(feats).astype(np.float32), float(duration), float(clip_length))


def save_video_features(path, result: VideoFeatures, key: str, frames_per_clip: int) -> None:
    """Write the npz (``features`` + cache record) atomically."""
    buf = io.BytesIO()
    np.savez(buf, features=result.features, cache_key=np.array(key), duration=np.array(result.duration),
             clip_length=np.array(result.clip_length), frames_per_clip=np.array(frames_per_clip))
    atomic_write_bytes(path, buf.getvalue())


def load_cached(path, key: str) -> VideoFeatures | None:
    """The features stored at ``path`` when its ``cache_key`` equals ``key``; None when absent, stale or
    unreadable (then it is extracted again and overwritten)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "cache_key" not in z.files or str(z["cache_key"]) != key:
                return None
            return VideoFeatures(z["features"].astype(np.float32), float(z["duration"]), float(z["clip_length"]))
    except (OSError, ValueError, KeyError, EOFError):
        return None


def features_for(encoder: ClipEncoder, video, out_path, clip_length: float, frames_per_clip: int = 1,
                 batch_clips: int = 16, key: str | None = None) -> tuple[VideoFeatures, bool]:
    """The features of ``video``, from ``out_path`` when cached there, else extracted and saved there.
    ``key``: its :func:`cache_key` when already computed. Returns (features, True when they came from the cache)."""
    key = key or cache_key(file_digest_checked(video), encoder, clip_length, frames_per_clip)
    cached = load_cached(out_path, key)
    if cached is not None:
        return cached, True
    result = extract_video(encoder, video, clip_length, frames_per_clip, batch_clips)
    save_video_features(out_path, result, key, frames_per_clip)
    return result, False


def file_digest_checked(video) -> str:
    """:func:`file_digest`, with a missing file reported as a :class:`VideoDecodeError` naming it."""
    if not Path(video).is_file():
        raise VideoDecodeError(video, "video file not found")
    return file_digest(video)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 <= i < n) -> (i, n)."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must be i/n with integers 0 <= i < n, got {text!r}") from None
    if not 0 <= i < n:
        raise InputError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n


def select_videos(videos: Sequence, shard: tuple[int, int] = (0, 1)) -> list[Path]:
    """The videos of ``shard`` (i, n): every n-th of the sorted, de-duplicated list starting at i. Two different
    files with one name (the ``<vid>`` of the output) are an error."""
    paths = sorted({Path(v).resolve() for v in videos})
    by_vid: dict[str, Path] = {}
    for p in paths:
        if p.stem in by_vid:
            raise InputError(f"two videos would write the same feature file {p.stem}.npz: {by_vid[p.stem]} and {p}")
        by_vid[p.stem] = p
    i, n = shard
    return paths[i::n]


@dataclass
class ExtractReport:
    """done: videos extracted now; cached: skipped (already extracted); failed: (video, error message)."""

    done: list[Path]
    cached: list[Path]
    failed: list[tuple[Path, str]]


def extract_videos(videos: Sequence, out_dir, encoder: ClipEncoder, *, clip_length: float, frames_per_clip: int = 1,
                   workers: int = 1, shard: tuple[int, int] = (0, 1), progress: bool = True,
                   batch_clips: int = 16) -> ExtractReport:
    """Extract ``videos`` (this shard's part) into ``<out_dir>/clip_features/<vid>.npz`` with ``workers`` threads
    (decoding and the encoder's matmuls release the GIL). A video that fails is reported and the others go on."""
    from tqdm.auto import tqdm

    todo = select_videos(videos, shard)
    report = ExtractReport([], [], [])

    def one(video: Path):
        out = video_feature_path(out_dir, VIDEO_FEATURES, video.stem)
        try:
            _, cached = features_for(encoder, video, out, clip_length, frames_per_clip, batch_clips)
        except (VideoDecodeError, OSError) as e:
            return video, None, str(e)
        return video, cached, None

    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        with tqdm(total=len(todo), desc="extract", unit="video", disable=not progress) as bar:
            for video, cached, error in pool.map(one, todo):
                if error is not None:
                    report.failed.append((video, error))
                else:
                    (report.cached if cached else report.done).append(video)
                bar.set_postfix(done=len(report.done), cached=len(report.cached), failed=len(report.failed))
                bar.update()
    finally:  # on Ctrl-C / an error: finish the videos under way, start no other
        pool.shutdown(wait=True, cancel_futures=True)
    return report


def extract_text(annotations, out_dir, encoder: ClipEncoder, *, dataset: str = "qvhighlight",
                 batch_size: int = 64) -> int:
    """Encode the query of every line of a lighthouse jsonl into the dataset's text feature files under
    ``<out_dir>/clip_text_features/``. Returns the number of files written."""
    anns = read_moment_jsonl(annotations, dataset=dataset)
    key = get_dataset_spec(dataset).text_key
    for i in range(0, len(anns), batch_size):
        chunk = anns[i: i + batch_size]
        for ann, tokens in zip(chunk, encoder.encode_text([a.query for a in chunk])):
            buf = io.BytesIO()
            np.savez(buf, **{key: tokens})
            atomic_write_bytes(text_feature_path(out_dir, TEXT_FEATURES, ann.qid, dataset), buf.getvalue())
    return len(anns)


def write_nlq_annotations(annotations: Sequence, out_dir, *, clip_length: float,
                          dataset: str = "qvhighlight") -> Path:
    """Write ``<out_dir>/annotations.json``: the lighthouse jsonl files ``annotations`` (one per split, the split
    named by the file name without ``.jsonl``) as the SnAG json the nlq task (HieraMamba) reads
    (:func:`vidmamba.data.snag.snag_from_lighthouse`). Returns the path."""
    splits = {Path(path).stem: Path(path) for path in annotations}
    if len(splits) != len(annotations):
        raise DataFormatError(annotations[-1], "two annotation files share this name; the split of each is its "
                              "file name without .jsonl, so the names must differ")
    path = Path(out_dir) / "annotations.json"
    atomic_write_text(path, json.dumps(snag_from_lighthouse(splits, clip_length=clip_length, dataset=dataset),
                                       indent=1))
    return path
