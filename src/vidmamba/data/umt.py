"""Pieces shared by the readers of UMT's releases (TVSum, YouTube Highlights: github TencentARC/UMT ``datasets/``).

Both releases use one layout under ``root``: an annotation json, ``video_features/{vid}_rgb.npy`` and
``{vid}_opt.npy`` (I3D rgb / optical flow, (T, 1024) each, one row per clip) and ``audio_features/{vid}.npy``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DataFormatError
from .features import l2_normalize, load_feature_array

I3D_DIM = 1024


def read_json(path: Path):
    """The parsed json file; DataFormatError naming the file when it is missing or not valid JSON."""
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, "invalid JSON", found=str(e)) from e


def video_records(path: Path, required: tuple[str, ...], expected: str):
    """``(vid, record, item)`` for each entry of a ``{vid: {...}}`` annotation json, in file order, after checking the
    top level is a non-empty object (``expected`` describes it) and each record an object with the ``required``
    fields; DataFormatError naming the file, the video and the field otherwise."""
    data = read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataFormatError(path, "bad top level", expected=expected, found=type(data).__name__)
    for vid, rec in data.items():
        item = f"video {vid}"
        if not isinstance(rec, dict):
            raise DataFormatError(path, "bad entry", item=item, expected="an object", found=type(rec).__name__)
        for name in required:
            if name not in rec:
                raise DataFormatError(path, "required field missing", item=item, field=name,
                                      found=f"keys {sorted(rec)}")
        yield vid, rec, item


def _stream(path: Path, num_clips: int, dim: int | None, vid: str) -> np.ndarray:
    a = load_feature_array(path, dim=dim, item=f"video {vid}")
    if a.shape[0] not in (num_clips, num_clips + 1):
        raise DataFormatError(path, "feature length does not match the annotation", item=f"video {vid}",
                              expected=f"{num_clips} rows (or {num_clips + 1}, a trailing partial clip)",
                              found=f"{a.shape[0]} rows")
    return a[:num_clips]


def load_umt_video_features(root, vid: str, num_clips: int, *, normalize: bool = False,
                            audio: bool = False) -> np.ndarray:
    """I3D rgb and flow (T, 1024 each) concatenated to (T, 2048) float32; ``audio`` appends (T, D_audio) audio.

    Each stream must have ``num_clips`` rows, or one more (a trailing partial clip, which is cut); anything else
    raises DataFormatError. ``normalize`` L2-normalises each stream per clip before concatenation.
    """
    root = Path(root)
    paths = [root / "video_features" / f"{vid}_rgb.npy", root / "video_features" / f"{vid}_opt.npy"]
    dims: list[int | None] = [I3D_DIM, I3D_DIM]
    if audio:
        paths.append(root / "audio_features" / f"{vid}.npy")
        dims.append(None)
    streams = [_stream(p, num_clips, d, vid) for p, d in zip(paths, dims)]
    if normalize:
        streams = [l2_normalize(s) for s in streams]
    return np.concatenate(streams, axis=1)
