"""Seeded synthetic action-recognition benchmark for MambaVL, written in the EPIC-KITCHENS-100 on-disk format.

Layout (read by :class:`~vidmamba.data.ek100.EK100Dataset`, recognition mode)::

    <root>/meta.json                         generator version, every parameter, sizes, noun homes
    <root>/EPIC_100_train.csv                official columns (narration_id, ..., verb_class, noun_class, ...)
    <root>/EPIC_100_validation.csv
    <root>/EPIC_100_verb_classes.csv         id, key, instances, category
    <root>/EPIC_100_noun_classes.csv
    <root>/features/<narration_id>.npy       (T, video_dim) float32, one row per frame of the segment

Design — what a model must do to score well:

* **Verbs are temporal.** Each verb is an ordered pair of motion primitives ``(a, b)``; its segment shows ``a`` in the
  first part and ``b`` in the rest (split point jittered, each frame visible with probability ``verb_visibility``).
  Opposite verbs use the same two primitives in reverse order (open = reach->pull, close = pull->reach), so a
  bag of frames cannot tell them apart: the order must be read, which a token-mixing fusion can do and the MLP
  fusion (no token mixing) cannot.
* **Nouns share visual parts.** Nouns come in groups of ``group_size`` look-alikes (cup / mug / glass) that leave
  the same group signature in the video; no frame tells the members apart. Distractor objects of other groups
  appear at random frames (``distractor_prob``), and a scene background drifts (AR(1)) under everything.
* **The question carries context.** Every noun has a home place (a different place for each member of a group), and
  the narration says where the action happens ("take jar on the shelf"); the place is the noun's home with
  probability ``context_reliability``, otherwise another random place. The engine appends the narration to both
  questions with every label word masked (``"<mask> on the shelf"``, :mod:`vidmamba.data.questions`), so the
  question names the place, never the label. Vision gives the group, the question gives the member: without the
  context noun top-1 is bounded by about ``1 / group_size`` of the group accuracy; with it, by about
  ``context_reliability``.
* Frames are a fixed random 2-layer tanh MLP of the latent (primitive codes + group codes + background) plus
  observation noise; segment lengths vary (``min_frames`` .. ``max_frames``).

Chance: 1 / num_verbs for verbs, 1 / (num_groups * group_size) for nouns, their product for actions.
The output is a pure function of the parameters (same bytes for the same parameters); :func:`ensure_action_benchmark`
re-uses a cached copy (e.g. under ``$VIDMAMBA_CACHE``) whose ``meta.json`` matches.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from vidmamba.data.cache import build_atomically, meta_matches, params_cache_dir, read_meta
from vidmamba.utils import atomic_write_text

__all__ = ["GENERATOR_VERSION", "DEFAULT_PARAMS", "VERB_PAIRS", "NOUN_GROUPS", "PLACES", "generate_action_benchmark",
           "ensure_action_benchmark", "read_meta"]

GENERATOR = "vidmamba.data.synthetic_action"
GENERATOR_VERSION = 1
FPS = 2.0  # feature rows per second of the synthetic timestamps

# verb pairs (name, reversed name): primitives (a, b) for the first, (b, a) for the second
VERB_PAIRS = [("open", "close"), ("take", "put"), ("fill", "empty"), ("lift", "lower"), ("push", "pull"),
              ("wash", "dry")]
NOUN_GROUPS = [("cup", "mug", "glass"), ("jar", "bottle", "can"), ("knife", "fork", "spoon"),
               ("pan", "pot", "kettle"), ("plate", "bowl", "tray"), ("towel", "sponge", "cloth")]
PLACES = [("in the", "sink"), ("on the", "stove"), ("in the", "fridge"), ("in the", "drawer"),
          ("in the", "cupboard"), ("on the", "table"), ("on the", "shelf"), ("on the", "counter")]
NUM_PRIMITIVES = 4  # 4 * 3 ordered pairs = 12 verbs (6 opposite pairs)

DEFAULT_PARAMS = dict(num_train=2000, num_val=600, num_verbs=12, num_groups=6, group_size=3, min_frames=8,
                      max_frames=24, video_dim=64, latent_dim=16, hidden_dim=64, verb_visibility=0.7,
                      noun_visibility=0.6, distractor_prob=0.3, context_reliability=0.9, obs_noise=0.3,
                      segments_per_video=20, seed=0)


def _resolve_params(params: dict) -> dict:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown synthetic action benchmark parameter(s): {sorted(unknown)}; "
                        f"known: {sorted(DEFAULT_PARAMS)}")
    p = {**DEFAULT_PARAMS, **params}
    if p["num_verbs"] % 2 or not 2 <= p["num_verbs"] <= 2 * len(VERB_PAIRS):
        raise ValueError(f"num_verbs must be even (opposite pairs) and in [2, {2 * len(VERB_PAIRS)}], "
                         f"got {p['num_verbs']}")
    if not 1 <= p["num_groups"] <= len(NOUN_GROUPS) or not 1 <= p["group_size"] <= 3:
        raise ValueError(f"num_groups must be in [1, {len(NOUN_GROUPS)}] and group_size in [1, 3], got "
                         f"{p['num_groups']} and {p['group_size']}")
    if not 2 <= p["min_frames"] <= p["max_frames"]:
        raise ValueError(f"need 2 <= min_frames <= max_frames, got {p['min_frames']}, {p['max_frames']}")
    for name in ("verb_visibility", "noun_visibility", "distractor_prob", "context_reliability"):
        if not 0.0 <= p[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p[name]}")
    if p["num_train"] < 1 or p["num_val"] < 1 or p["segments_per_video"] < 1:
        raise ValueError("num_train, num_val and segments_per_video must be >= 1")
    return p


class _World:
    """Everything shared by both splits: classes, noun homes, latent codes, the rendering MLP."""

    def __init__(self, p: dict):
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0xAC7]))
        self.p = p
        pairs = [(a, b) for a in range(NUM_PRIMITIVES) for b in range(a + 1, NUM_PRIMITIVES)]
        self.verbs: list[tuple[str, tuple[int, int]]] = []  # (name, (first primitive, second primitive))
        for (name, opposite), (a, b) in zip(VERB_PAIRS[: p["num_verbs"] // 2], pairs):
            self.verbs += [(name, (a, b)), (opposite, (b, a))]
        self.nouns: list[tuple[str, int]] = []  # (name, group)
        self.homes: list[int] = []  # place index per noun, distinct within a group
        for g in range(p["num_groups"]):
            places = rng.permutation(len(PLACES))[: p["group_size"]]
            for m in range(p["group_size"]):
                self.nouns.append((NOUN_GROUPS[g][m], g))
                self.homes.append(int(places[m]))
        dz, dh, dv = p["latent_dim"], p["hidden_dim"], p["video_dim"]
        self.primitive_codes = rng.standard_normal((NUM_PRIMITIVES, dz))
        self.group_codes = rng.standard_normal((p["num_groups"], dz))
        self.w1 = rng.standard_normal((dz, dh)) / np.sqrt(dz)
        self.b1 = 0.3 * rng.standard_normal(dh)
        self.w2 = rng.standard_normal((dh, dv)) / np.sqrt(dh)

    def segment(self, verb: int, noun: int, rng: np.random.Generator) -> np.ndarray:
        """(T, video_dim) float32 features of one action segment."""
        p = self.p
        t_len = int(rng.integers(p["min_frames"], p["max_frames"] + 1))
        first, second = self.verbs[verb][1]
        split = int(round(t_len * rng.uniform(0.35, 0.65)))
        prim = np.where(np.arange(t_len) < split, first, second)
        z = self.primitive_codes[prim] * (rng.random(t_len) < p["verb_visibility"])[:, None]
        group = self.nouns[noun][1]
        z = z + self.group_codes[group] * (rng.random(t_len) < p["noun_visibility"])[:, None]
        if p["num_groups"] > 1:
            others = [g for g in range(p["num_groups"]) if g != group]
            distractor = self.group_codes[rng.choice(others, size=t_len)]
            z = z + 0.8 * distractor * (rng.random(t_len) < p["distractor_prob"])[:, None]
        bg = np.zeros(p["latent_dim"])
        for t in range(t_len):  # AR(1) scene drift
            bg = 0.8 * bg + 0.3 * rng.standard_normal(p["latent_dim"])
            z[t] += bg
        x = np.tanh(z @ self.w1 + self.b1) @ self.w2
        x = x + p["obs_noise"] * rng.standard_normal(x.shape)
        return x.astype(np.float32)

    def place_phrase(self, noun: int, rng: np.random.Generator) -> str:
        home = self.homes[noun]
        if rng.random() >= self.p["context_reliability"]:
            home = int(rng.choice([i for i in range(len(PLACES)) if i != self.homes[noun]]))
        prep, place = PLACES[home]
        return f"{prep} {place}"


def _timestamp(seconds: float) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


EK100_HEADER = ["narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun", "noun_class",
                "all_nouns", "all_noun_classes"]


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _write_split(world: _World, split_id: int, n: int, root: Path) -> str:
    """Write the split's feature files; return its annotation CSV text."""
    p = world.p
    rows, clock, video = [], 0.0, None
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], split_id, i]))
        verb, noun = int(rng.integers(len(world.verbs))), int(rng.integers(len(world.nouns)))
        feats = world.segment(verb, noun, rng)
        v_idx = i // p["segments_per_video"]
        participant = f"S{split_id}{v_idx // 10:02d}"
        vid = f"{participant}_{v_idx % 10:02d}"
        if vid != video:
            video, clock = vid, 1.0
        nid = f"{vid}_{i % p['segments_per_video']}"
        np.save(root / "features" / f"{nid}.npy", feats)
        start, stop = clock, clock + len(feats) / FPS
        clock = stop + 0.5
        verb_name, noun_name = world.verbs[verb][0], world.nouns[noun][0]
        narration = f"{verb_name} {noun_name} {world.place_phrase(noun, rng)}"
        rows.append([nid, participant, vid, _timestamp(start), _timestamp(start), _timestamp(stop),
                     int(start * 60), int(stop * 60), narration, verb_name, verb, noun_name, noun,
                     repr([noun_name]), repr([noun])])
    return _csv_text(EK100_HEADER, rows)


def _meta(p: dict, world: _World) -> dict:
    return {"generator": GENERATOR, "version": GENERATOR_VERSION, "params": p, "fps": FPS,
            "verbs": [{"key": name, "primitives": list(prims)} for name, prims in world.verbs],
            "nouns": [{"key": name, "group": g, "home": " ".join(PLACES[h])} for (name, g), h
                      in zip(world.nouns, world.homes)],
            "files": {"train": "EPIC_100_train.csv", "val": "EPIC_100_validation.csv",
                      "verb_classes": "EPIC_100_verb_classes.csv", "noun_classes": "EPIC_100_noun_classes.csv",
                      "features": "features"}}


def _write_into(root: Path, p: dict) -> None:
    (root / "features").mkdir(parents=True)
    world = _World(p)
    (root / "EPIC_100_train.csv").write_text(_write_split(world, 1, p["num_train"], root), encoding="utf-8")
    (root / "EPIC_100_validation.csv").write_text(_write_split(world, 2, p["num_val"], root), encoding="utf-8")
    cls_header = ["id", "key", "instances", "category"]
    (root / "EPIC_100_verb_classes.csv").write_text(_csv_text(cls_header, [
        [i, name, repr([name]), f"primitives {a}-{b}"] for i, (name, (a, b)) in enumerate(world.verbs)]))
    (root / "EPIC_100_noun_classes.csv").write_text(_csv_text(cls_header, [
        [i, name, repr([name]), f"group {g}"] for i, (name, g) in enumerate(world.nouns)]))
    # meta.json last: its presence marks a complete benchmark
    atomic_write_text(root / "meta.json", json.dumps(_meta(p, world), indent=1, sort_keys=True) + "\n")


def _meta_matches(root: Path, p: dict) -> bool:
    return meta_matches(root, GENERATOR, GENERATOR_VERSION, p)


def generate_action_benchmark(root, **params) -> Path:
    """Generate the benchmark (parameters: :data:`DEFAULT_PARAMS`, keyword-only) into ``root``, replacing what is
    there; built in a sibling temp folder and renamed into place. Returns ``root``."""
    p = _resolve_params(params)
    return build_atomically(root, lambda tmp: _write_into(tmp, p), lambda r: _meta_matches(r, p))


def ensure_action_benchmark(cache_dir=None, **params) -> Path:
    """``cache_dir`` (default ``$VIDMAMBA_CACHE/synthetic_action/<hash of params>``) holding the benchmark for
    ``params``: re-used when its ``meta.json`` matches, generated otherwise."""
    p = _resolve_params(params)
    root = Path(cache_dir) if cache_dir is not None else params_cache_dir("synthetic_action", GENERATOR_VERSION, p)
    return root if _meta_matches(root, p) else generate_action_benchmark(root, **params)
