"""``vidmamba predict VIDEO "query" ...``: moments and per-clip saliency for one raw video and several queries.

A :class:`VideoPredictor` loads the checkpoint and the encoder once. The video is decoded at the checkpoint's clip length and encoded with CLIP (streamed, cached by content hash), the
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

from vidmamba.data.cache import default_cache_dir
from vidmamba.data.collate import pad_sequences
from vidmamba.data.features import l2_normalize
from vidmamba.data.lighthouse import get_dataset_spec
from vidmamba.video.encoders import ClipEncoder
from vidmamba.video.extract import VIDEO_FEATURES, cache_key, features_for, file_digest_checked


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


def inference_conventions(ckpt, config: dict) -> tuple[float, bool]:
    """(clip_length seconds, normalize_text) a checkpoint's inputs are prepared with: a pretrained folder's
    ``data.clip_length`` / ``data.normalize_text`` when present, else the model's ``clip_length`` and the training
    dataset's conventions (a training checkpoint). ValueError naming the checkpoint when neither says."""
    data, model = config["data"], config.get("model", {})
    spec = get_dataset_spec(data["dataset"]) if "dataset" in data else None
    clip_length = data.get("clip_length", model.get("clip_length", spec.clip_length if spec else None))
    normalize_text = data.get("normalize_text", spec.normalize_text if spec else None)
    if clip_length is None or normalize_text is None:
        raise ValueError(f"{ckpt}: the checkpoint's config names neither data.clip_length / data.normalize_text nor "
                         "a data.dataset to take them from: cannot prepare a video for it")
    return float(clip_length), bool(normalize_text)


class VideoPredictor:
    """A checkpoint and a CLIP encoder loaded once, answering ``predictor(video, queries)`` for any number of videos
    (used by ``vidmamba predict`` and by every request of ``vidmamba serve``). It holds no per-call state: calls from
    several threads at once are safe (inference only; the feature cache is written atomically).

    Args:
        ckpt: a run / checkpoint / pretrained folder, or a hub id (see :func:`~vidmamba.engine.grounding.load_trained`).
        encoder: a :class:`ClipEncoder`, or its folder / hub id.
        cache_dir: feature cache folder (default :func:`default_cache_dir`).
        frames_per_clip: frames averaged per clip.
    """

    def __init__(self, ckpt, encoder: ClipEncoder | str | Path, *, cache_dir=None, frames_per_clip: int = 1,
                 device: str = "cpu"):
        from vidmamba.engine.grounding import load_trained

        self.model, config = load_trained(ckpt)
        self.data = config["data"]
        self.encoder = encoder if isinstance(encoder, ClipEncoder) else ClipEncoder(encoder, device=device)
        check_encoder_matches(ckpt, self.data, self.encoder)
        self.clip_length, self.normalize_text = inference_conventions(ckpt, config)
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.frames_per_clip = frames_per_clip

    def __call__(self, video, queries: Sequence[str]) -> dict:
        """Ranked moments and saliency of ``video`` for each query, all queries in one batch.

        Returns ``{"video", "duration", "clip_length", "num_clips", "cached", "results": [{"query", "windows":
        [[start_s, end_s, score], ...] (score-sorted), "saliency": [one per clip]}, ...]}``.
        """
        queries = list(queries)
        if not queries:
            raise ValueError("predicting a video needs at least one query")
        enc, clip_length = self.encoder, self.clip_length
        texts = enc.encode_text(queries)  # before the (long) video work: a bad query fails fast
        key = cache_key(file_digest_checked(video), enc, clip_length, self.frames_per_clip)
        feats, cached = features_for(enc, video, self.cache / VIDEO_FEATURES / f"{key}.npz", clip_length,
                                     self.frames_per_clip, key=key)
        v = feats.features
        if self.data.get("normalize_video", True):
            v = l2_normalize(v)
        max_len = self.data.get("max_text_len")
        texts = [t[:max_len] if max_len is not None else t for t in texts]
        if self.normalize_text:
            texts = [l2_normalize(t) for t in texts]
        text, text_mask = pad_sequences([torch.from_numpy(t) for t in texts])
        q, t = len(queries), len(v)
        batch = {"video": torch.from_numpy(v)[None].expand(q, t, v.shape[1]),  # one copy of the video, shared
                 "video_mask": torch.ones(q, t, dtype=torch.bool), "text": text, "text_mask": text_mask,
                 "clip_length": torch.full((q,), clip_length), "duration": torch.full((q,), feats.duration)}
        preds = self.model.predict(batch)
        return {"video": os.fspath(video), "duration": feats.duration, "clip_length": clip_length,
                "num_clips": t, "cached": cached,
                "results": [{"query": qu, "windows": p["pred_relevant_windows"],
                             "saliency": p["pred_saliency_scores"]} for qu, p in zip(queries, preds)]}


def predict_video(ckpt, video, queries: Sequence[str], *, encoder: ClipEncoder | str | Path, cache_dir=None,
                  frames_per_clip: int = 1) -> dict:
    """One-off :class:`VideoPredictor` call (loads the checkpoint each time: for many videos build the predictor
    once)."""
    return VideoPredictor(ckpt, encoder, cache_dir=cache_dir, frames_per_clip=frames_per_clip)(video, queries)


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
