"""Seeded long-video synthetic grounding benchmark in the SnAG / HieraMamba on-disk format (needles in a haystack).

Same world as :mod:`vidmamba.data.synthetic` (vocabulary, frozen text encoder, visual codes, rendering MLP, the event
sampler with hard negatives and distractors), with what long-video grounding needs: videos of thousands to tens of
thousands of 2-s clips (length log-uniform in ``[min_clips, max_clips]``), short events (``min_event_clips`` ..
``max_event_clips``) covering a small fraction of the video, and several queries per video. A query is asked only
when its event occurs exactly once in the video (the SnAG format has one segment per query), so a video has at most
``queries_per_video`` queries. Training videos may be drawn from their own length range and query count
(``train_clips`` = [lo, hi], ``train_queries_per_video``; default: those of the val videos), e.g. many shorter videos
dense with queries for training and few long haystacks for evaluation. Layout::

    <root>/meta.json            generator, version, every parameter, sizes, clip grid (written last)
    <root>/annotations.json     {"train"|"val": {vid: {"fps": 0.5, "duration", "num_clips",
                                                       "annotations": [{"segment", "sentence", "sentence_id"}]}}}
    <root>/video/<vid>.npy      (T, video_dim) float32, one row per 2-s clip
    <root>/text/<sentence_id>.npy  (L, text_dim) float32, one row per word

Grid: one "frame" per clip (``fps`` 0.5, ``clip_size`` = ``clip_stride`` = 1), so clip ``i`` is grid point ``i``.
Output is a pure function of the parameters; :func:`ensure_long_benchmark` caches it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .synthetic import CLIP_LEN, DEFAULT_PARAMS, _make_video, _resolve_params, _World
from .cache import build_atomically, meta_matches, params_cache_dir, read_meta

__all__ = ["LONG_GENERATOR_VERSION", "LONG_PARAMS", "SNAG_GRID", "generate_long_benchmark", "ensure_long_benchmark",
           "read_meta"]

LONG_GENERATOR_VERSION = 1
GENERATOR = "vidmamba.data.synthetic_long"
# data-config values that read this benchmark's grid (see the module docstring)
SNAG_GRID = {"clip_size": 1, "clip_stride": 1, "downsample": 1, "vid_stride": 1}

# num_train / num_val count videos here (the short benchmark counts queries).
LONG_PARAMS: dict = dict(
    DEFAULT_PARAMS,
    num_train=48,
    num_val=12,
    min_clips=2000,
    max_clips=50000,
    min_event_clips=2,
    max_event_clips=10,
    queries_per_video=8,
    event_coverage=(0.04, 0.1),
    train_clips=None,  # [lo, hi] clips of the training videos (default [min_clips, max_clips])
    train_queries_per_video=None,  # default queries_per_video
)
SPLIT_KEYS = ("train_clips", "train_queries_per_video")  # per-split overrides, resolved here (not in synthetic.py)


def _resolve(params: dict) -> dict:
    unknown = set(params) - set(LONG_PARAMS)
    if unknown:
        raise TypeError(f"unknown long synthetic benchmark parameter(s): {sorted(unknown)}")
    merged = {**LONG_PARAMS, **params}
    p = _resolve_params({k: v for k, v in merged.items() if k not in SPLIT_KEYS})
    clips, queries = merged["train_clips"], merged["train_queries_per_video"]
    if clips is not None:
        clips = [int(c) for c in clips]
        if not (len(clips) == 2 and 2 <= clips[0] <= clips[1]):
            raise ValueError(f"train_clips must be [lo, hi] with 2 <= lo <= hi, got {merged['train_clips']!r}")
    if queries is not None and not 1 <= int(queries) < p["num_verbs"] * p["num_objects"]:
        raise ValueError(f"train_queries_per_video must be in [1, num_verbs * num_objects), got {queries!r}")
    return {**p, "train_clips": clips, "train_queries_per_video": None if queries is None else int(queries)}


def _split_params(p: dict, split: str) -> dict:
    """``p`` with ``min_clips`` / ``max_clips`` / ``queries_per_video`` of ``split`` (the train overrides applied)."""
    if split != "train":
        return p
    lo, hi = p["train_clips"] or (p["min_clips"], p["max_clips"])
    return {**p, "min_clips": lo, "max_clips": hi, "queries_per_video": p["train_queries_per_video"] or
            p["queries_per_video"]}


def _video_length(p: dict, rng: np.random.Generator) -> int:
    lo, hi = math.log(p["min_clips"]), math.log(p["max_clips"] + 1)
    return int(min(p["max_clips"], math.floor(math.exp(rng.uniform(lo, hi)))))


def _generate_split(world: _World, base: dict, split: str, split_id: int, root: Path) -> dict:
    videos, p = {}, _split_params(base, split)
    for vi in range(base[f"num_{split}"]):
        rng = np.random.default_rng(np.random.SeedSequence([base["seed"], 0x10A6, split_id, vi]))
        T = _video_length(p, rng)
        world.p = {**p, "min_clips": T, "max_clips": T}  # the shared event sampler reads the length from here
        T, placed, targets, latent, noise, _ = _make_video(world, p["queries_per_video"], rng)
        vid = f"long_{split}_{vi:05d}"
        np.save(root / "video" / f"{vid}.npy", world.render([latent], [noise])[0])
        annotations = []
        for k, (v, o) in enumerate(targets):
            occ = [(s, e) for (ev, eo, s, e) in placed if (ev, eo) == (v, o)]
            text, tokens = world.make_query(v, o, rng)
            if len(occ) != 1:  # ambiguous with one segment per query: not asked
                continue
            sid = f"{vid}_q{k}"
            np.save(root / "text" / f"{sid}.npy", world.encode_query(tokens, rng))
            s, e = occ[0]
            annotations.append({"segment": [s * CLIP_LEN, e * CLIP_LEN], "sentence": text, "sentence_id": sid})
        videos[vid] = {"fps": 1.0 / CLIP_LEN, "duration": T * CLIP_LEN, "num_clips": T, "annotations": annotations}
    world.p = base
    return videos


def _meta(p: dict, sizes: dict | None = None) -> dict:
    m = {"generator": GENERATOR, "version": LONG_GENERATOR_VERSION, "params": p, "clip_len": CLIP_LEN,
         "dims": {"video": p["video_dim"], "text": p["text_dim"]}, "grid": SNAG_GRID,
         "format": {"annotations": "annotations.json", "video": "video/<vid>.npy", "text": "text/<sentence_id>.npy",
                    "splits": ["train", "val"]}}
    if sizes is not None:
        m["sizes"] = sizes
    return m


def _matches(root: Path, p: dict) -> bool:
    return meta_matches(root, GENERATOR, LONG_GENERATOR_VERSION, p)


def _write_into(root: Path, p: dict) -> None:
    (root / "video").mkdir(parents=True)
    (root / "text").mkdir()
    world = _World(p)
    splits = {split: _generate_split(world, p, split, i + 1, root) for i, split in enumerate(("train", "val"))}
    (root / "annotations.json").write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")
    sizes = {f"{s}_{k}": n for s, vids in splits.items() for k, n in (
        ("videos", len(vids)), ("queries", sum(len(v["annotations"]) for v in vids.values())),
        ("clips", sum(v["num_clips"] for v in vids.values())))}
    # meta.json last: its presence marks a complete benchmark
    (root / "meta.json").write_text(json.dumps(_meta(p, sizes), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def generate_long_benchmark(root, **params) -> Path:
    """Generate the benchmark into ``root`` (replacing what is there) and return ``root``.

    Parameters: those of ``LONG_PARAMS`` (keyword-only); ``num_train`` / ``num_val`` are numbers of videos, the
    others as in :func:`vidmamba.data.synthetic.generate_grounding_benchmark`. Built in a sibling temporary folder
    and renamed into place (``meta.json`` written last marks it complete).
    """
    p = _resolve(params)
    return build_atomically(root, lambda tmp: _write_into(tmp, p), lambda r: _matches(r, p))


def ensure_long_benchmark(cache_dir=None, **params) -> Path:
    """``cache_dir`` (default ``$VIDMAMBA_CACHE/synthetic_long/v<version>-<hash of params>``) holding the benchmark
    for ``params``: re-used when its ``meta.json`` matches (generator version and every parameter), generated
    otherwise."""
    p = _resolve(params)
    root = Path(cache_dir) if cache_dir is not None else params_cache_dir("synthetic_long", LONG_GENERATOR_VERSION, p)
    return root if _matches(root, p) else generate_long_benchmark(root, **params)
