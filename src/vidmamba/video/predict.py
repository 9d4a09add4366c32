"""``vidmamba predict VIDEO "query" ...``: moments and per-clip saliency for one raw video and several queries.

A :class:`VideoPredictor` loads the checkpoint and the encoder once. The video is decoded at the checkpoint's clip
length and encoded with CLIP (streamed, cached by content hash), the queries are encoded with CLIP's text tower, and
all queries run through the checkpoint in one batch. The checkpoint's task prepares the inputs as its training
readers do and runs the model, through the one-video inference every task that finds moments declares
(:class:`~vidmamba.tasks.base.MomentTask`: ``conventions``, ``prepare_inputs``, ``predict_clips``). No length cap:
decoding is streamed and the models are linear in the number of clips.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from vidmamba.data.cache import default_cache_dir
from vidmamba.errors import InputError
from vidmamba.tasks.base import load_moment_model
from vidmamba.video.encoders import ClipEncoder
from vidmamba.video.extract import VIDEO_FEATURES, cache_key, features_for, file_digest_checked

def check_encoder_matches(ckpt, data: dict, encoder: ClipEncoder) -> None:
    """The checkpoint must take exactly one video feature type of the encoder's image width and text of its text
    width; otherwise a ValueError saying what differs."""
    video_dims, text_dim = list(data["video_dims"]), int(data["text_dim"])
    if video_dims != [encoder.image_dim] or text_dim != encoder.text_dim:
        raise InputError(
            f"{ckpt}: checkpoint was trained on video features {data.get('video_features')} of widths {video_dims} "
            f"and text features of width {text_dim}, but the encoder {encoder.name!r} gives one CLIP video feature "
            f"of width {encoder.image_dim} and text of width {encoder.text_dim}: predicting from a video needs a "
            f"checkpoint trained on CLIP-only features of this encoder (or use --video-features/--query-features)")


class VideoPredictor:
    """A checkpoint and a CLIP encoder loaded once, answering ``predictor(video, queries)`` for any number of videos
    (used by ``vidmamba predict`` and by every request of ``vidmamba serve``). It holds no per-call state: calls from
    several threads at once are safe (inference only; the feature cache is written atomically).

    Args:
        ckpt: a run / checkpoint / pretrained folder of a grounding or nlq task, or a hub id
            (:func:`vidmamba.tasks.base.load_moment_model`).
        encoder: a :class:`ClipEncoder`, or its folder / hub id.
        cache_dir: feature cache folder (default :func:`default_cache_dir`).
        frames_per_clip: frames averaged per clip.
    """

    def __init__(self, ckpt, encoder: ClipEncoder | str | Path, *, cache_dir=None, frames_per_clip: int = 1,
                 device: str = "cpu"):
        self.model, self.config, self.task = load_moment_model(ckpt)
        self.encoder = encoder if isinstance(encoder, ClipEncoder) else ClipEncoder(encoder, device=device)
        check_encoder_matches(ckpt, self.config["data"], self.encoder)
        self.clip_length = self.task.conventions(self.config)[0]
        self.cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.frames_per_clip = frames_per_clip

    def __call__(self, video, queries: Sequence[str]) -> dict:
        """Ranked moments and saliency of ``video`` for each query, all queries in one batch.

        Returns ``{"video", "duration", "clip_length", "num_clips", "cached", "results": [{"query", "windows":
        [[start_s, end_s, score], ...] (score-sorted), "saliency": [one per clip]}, ...]}``.
        """
        queries = list(queries)
        if not queries:
            raise InputError("predicting a video needs at least one query")
        enc, clip_length = self.encoder, self.clip_length
        texts = enc.encode_text(queries)  # before the (long) video work: a bad query fails fast
        key = cache_key(file_digest_checked(video), enc, clip_length, self.frames_per_clip)
        feats, cached = features_for(enc, video, self.cache / VIDEO_FEATURES / f"{key}.npz", clip_length,
                                     self.frames_per_clip, key=key)
        v, t = self.task.prepare_inputs(self.config, feats.features, texts)
        answers = self.task.predict_clips(self.model, self.config, v, t, feats.duration)
        return {"video": os.fspath(video), "duration": feats.duration, "clip_length": clip_length,
                "num_clips": len(feats.features), "cached": cached,
                "results": [{"query": q, **a} for q, a in zip(queries, answers)]}


def predict_video(ckpt, video, queries: Sequence[str], *, encoder: ClipEncoder | str | Path, cache_dir=None,
                  frames_per_clip: int = 1) -> dict:
    """One-off :class:`VideoPredictor` call (loads the checkpoint each time: for many videos build the predictor
    once)."""
    return VideoPredictor(ckpt, encoder, cache_dir=cache_dir, frames_per_clip=frames_per_clip)(video, queries)


SCORE_NOTE = ("score: the model's confidence, for ranking the moments of one answer (not a probability); "
              "--json FILE writes every moment and the saliency of every clip")


def format_table(result: dict, top: int = 10, top_clips: int = 5) -> str:
    """Plain text of an answer: per query the ranked moments (rank, start, end, score) and the ``top_clips`` clips
    of highest saliency. ``result``: a :class:`VideoPredictor` answer, or the one-query answer of feature files
    (:func:`vidmamba.tasks.predict_features`: ``windows``, ``saliency``, ``clip_length``, ``duration``)."""
    lines = []
    if "video" in result:
        lines.append(f"{result['video']}: {result['duration']:.2f} s, {result['num_clips']} clips of "
                     f"{result['clip_length']:g} s")
    for r in result.get("results", [result]):
        lines.append(f"\nquery: {r['query']}")
        lines.append(f"{'rank':>4}  {'start':>9}  {'end':>9}  {'score':>7}")
        for k, (st, ed, score) in enumerate(r["windows"][:top], start=1):
            lines.append(f"{k:>4}  {st:>9.2f}  {ed:>9.2f}  {score:>7.4f}")
        saliency, length = r.get("saliency") or [], result["clip_length"]
        end = result.get("duration") or float("inf")
        best = sorted(range(len(saliency)), key=lambda i: -saliency[i])[:top_clips]
        if best and length:
            lines.append("top clips by saliency: " + ", ".join(
                f"{i * length:.2f}-{min((i + 1) * length, end):.2f} s ({saliency[i]:.2f})" for i in best))
    return "\n".join(lines + ["", SCORE_NOTE])


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
        thumbs = [(t, next(frames), rank) for rank, t in enumerate(ts, start=1)]  # the frame of moment #rank
        paths.append(plot_moments(path, duration=result["duration"], clip_length=result["clip_length"],
                                  saliency=r["saliency"], moments=r["windows"], query=r["query"], thumbnails=thumbs))
    return paths
