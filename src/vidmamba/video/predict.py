"""``vidmamba predict VIDEO "query" ...``: moments and per-clip saliency for one raw video and several queries.

The video is decoded at the checkpoint's clip length and encoded with CLIP (streamed, cached by content hash), the
queries are encoded with CLIP's text tower, and all queries run through the checkpoint in one batch (the video
features are shared, not copied). The inputs are prepared as the training readers prepare them (per-clip L2
normalisation of the video when the checkpoint's data section says so, ``max_text_len``, the dataset's text
normalisation). No length cap: decoding is streamed and the model is linear in the number of clips.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from vidmamba.data.collate import pad_sequences
from vidmamba.data.features import l2_normalize
from vidmamba.data.lighthouse import get_dataset_spec
from vidmamba.video.encoders import ClipEncoder
from vidmamba.video.extract import VIDEO_FEATURES, cache_key, features_for, file_digest_checked


def default_cache_dir() -> Path:
    """``$VIDMAMBA_CACHE``, else ``$XDG_CACHE_HOME/vidmamba``, else ``~/.cache/vidmamba``."""
    if os.environ.get("VIDMAMBA_CACHE"):
        return Path(os.environ["VIDMAMBA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vidmamba"


def check_encoder_matches(ckpt, data: dict, encoder: ClipEncoder) -> None:
    """The checkpoint must take exactly one video feature type of the encoder's image width and text of its text
    width; otherwise a ValueError saying what differs."""
    video_dims, text_dim = list(data["video_dims"]), int(data["text_dim"])
    if video_dims != [encoder.image_dim] or text_dim != encoder.text_dim:
        raise ValueError(
            f"{ckpt}: checkpoint was trained on video features {data.get('video_features')} of widths {video_dims} "
            f"and text features of width {text_dim}, but the encoder {encoder.name!r} gives one CLIP video feature "
            f"of width {encoder.image_dim} and text of width {encoder.text_dim}: predicting from a video needs a "
            f"checkpoint trained on CLIP-only features of this encoder (or use --video-features/--query-features)")


def predict_video(ckpt, video, queries: Sequence[str], *, encoder: ClipEncoder | str | Path, cache_dir=None,
                  frames_per_clip: int = 1) -> dict:
    """Ranked moments and saliency of ``video`` for each query.

    Returns ``{"video", "duration", "clip_length", "num_clips", "cached", "results": [{"query", "windows":
    [[start_s, end_s, score], ...] (score-sorted), "saliency": [one per clip]}, ...]}``.
    """
    from vidmamba.engine.grounding import load_trained

    queries = list(queries)
    if not queries:
        raise ValueError("predict_video needs at least one query")
    model, config = load_trained(ckpt)
    data = config["data"]
    enc = encoder if isinstance(encoder, ClipEncoder) else ClipEncoder(encoder)
    check_encoder_matches(ckpt, data, enc)
    spec = get_dataset_spec(data["dataset"])
    clip_length = float(config["model"].get("clip_length", spec.clip_length))

    texts = enc.encode_text(queries)  # before the (long) video work: a bad query fails fast
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(file_digest_checked(video), enc, clip_length, frames_per_clip)
    feats, cached = features_for(enc, video, cache / VIDEO_FEATURES / f"{key}.npz", clip_length, frames_per_clip,
                                 key=key)

    v = feats.features
    if data.get("normalize_video", True):
        v = l2_normalize(v)
    max_len = data.get("max_text_len")
    texts = [t[:max_len] if max_len is not None else t for t in texts]
    if spec.normalize_text:
        texts = [l2_normalize(t) for t in texts]
    text, text_mask = pad_sequences([torch.from_numpy(t) for t in texts])
    q, t = len(queries), len(v)
    batch = {"video": torch.from_numpy(v)[None].expand(q, t, v.shape[1]),  # one copy of the video, shared
             "video_mask": torch.ones(q, t, dtype=torch.bool), "text": text, "text_mask": text_mask,
             "clip_length": torch.full((q,), clip_length), "duration": torch.full((q,), feats.duration)}
    preds = model.predict(batch)
    return {"video": os.fspath(video), "duration": feats.duration, "clip_length": clip_length,
            "num_clips": t, "cached": cached,
            "results": [{"query": qu, "windows": p["pred_relevant_windows"], "saliency": p["pred_saliency_scores"]}
                        for qu, p in zip(queries, preds)]}


def format_table(result: dict, top: int = 10) -> str:
    """The ranked moments of every query as a plain-text table."""
    lines = [f"{result['video']}: {result['duration']:.2f} s, {result['num_clips']} clips of "
             f"{result['clip_length']:g} s"]
    for r in result["results"]:
        lines.append(f"\nquery: {r['query']}")
        lines.append(f"{'rank':>4}  {'start':>9}  {'end':>9}  {'score':>7}")
        for k, (st, ed, score) in enumerate(r["windows"][:top], start=1):
            lines.append(f"{k:>4}  {st:>9.2f}  {ed:>9.2f}  {score:>7.4f}")
    return "\n".join(lines)


def plot_paths(out, n: int) -> list[Path]:
    """One figure path per query: ``out`` itself for one query, ``<stem>_<k><suffix>`` for several."""
    out = Path(out)
    return [out] if n == 1 else [out.with_name(f"{out.stem}_{k}{out.suffix}") for k in range(n)]


def plot_result(result: dict, out, video, thumbs_per_query: int = 3) -> list[Path]:
    """Plot each query's answer (timeline, saliency, thumbnails of its top moments at their centres)."""
    from vidmamba.video.decode import frames_at
    from vidmamba.viz import plot_moments

    results = result["results"]
    times = [[(w[0] + w[1]) / 2 for w in r["windows"][:thumbs_per_query]] for r in results]
    flat = [t for ts in times for t in ts]
    frames = iter(frames_at(video, flat))
    paths = []
    for r, ts, path in zip(results, times, plot_paths(out, len(results))):
        thumbs = [(t, next(frames)) for t in ts]
        paths.append(plot_moments(path, duration=result["duration"], clip_length=result["clip_length"],
                                  saliency=r["saliency"], moments=r["windows"], query=r["query"], thumbnails=thumbs))
    return paths
