"""Seeded synthetic video-language grounding benchmark (moment retrieval + highlight detection).

The benchmark is written in the standard moment_detr / lighthouse on-disk format, so the same readers that serve
QVHighlights serve it::

    <root>/meta.json                      generator version, seed, every parameter, sizes, vocabulary, dims
    <root>/train.jsonl, <root>/val.jsonl  {"qid", "query", "vid", "duration", "relevant_windows",
                                           "relevant_clip_ids", "saliency_scores"} (3 annotators, 0..4 per clip)
    <root>/video/<vid>.npz                key "features": (T, video_dim) float32, one row per 2-s clip
    <root>/text/qid<qid>.npz              key "last_hidden_state": (L_q, text_dim) float32, one row per query word

Generative model (one seeded "world" shared by both splits, one independent seeded stream per video):

* Vocabulary: ``num_verbs`` verb concepts and ``num_objects`` object concepts, each with several synonymous surface
  words. A query names one compositional event "<subject> <verb> the <object> [suffix]".
* Frozen text encoder: a fixed random word-embedding table in which synonyms are noisy copies of one concept vector
  (so they map to nearby vectors), plus position embeddings, a little context mixing (every token gets a fraction of
  the sentence mean) and per-query noise.
* Video: a latent state per clip = scene code of the video + AR(1) background + the active event's verb and object
  codes. Inside an event the camera shows the verb, the object, or (rarely) both, switching often (a Markov
  "visibility" chain), so a single clip is ambiguous between the query and a hard negative (same verb other object,
  or same object other verb; every video has at least one of each per query), while a few neighbouring clips are not. Events ramp in and out and carry an onset / offset signature at their first / last
  clip; events may touch each other, so boundaries need temporal context. Clip features are a fixed random 2-layer
  tanh MLP of the latent plus observation noise.
* Saliency: 3 noisy annotators (per-query bias + per-clip noise) score each relevant clip 0..4, higher near the
  event's core and where both verb and object are visible.

Lengths are parameters: the defaults give QVHighlights-like clips (32..150 clips, events of 2..30 clips, one query per
video); :mod:`vidmamba.data.synthetic_long` re-uses this world for videos of thousands of clips with short "needle"
events and several queries each, in the SnAG format.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from vidmamba.data.cache import build_atomically, meta_matches, read_meta

__all__ = [
    "GENERATOR_VERSION",
    "CLIP_LEN",
    "DEFAULT_PARAMS",
    "VERBS",
    "OBJECTS",
    "generate_grounding_benchmark",
    "ensure_grounding_benchmark",
    "read_meta",
    "save_npz_deterministic",
]

GENERATOR = "vidmamba.data.synthetic.grounding"
GENERATOR_VERSION = 1
CLIP_LEN = 2.0  # seconds per clip, as in QVHighlights

# Each verb concept: list of synonyms, each synonym = (3rd person singular, gerund).
VERBS: list[list[tuple[str, str]]] = [
    [("cuts", "cutting"), ("slices", "slicing"), ("chops", "chopping")],
    [("opens", "opening"), ("unlocks", "unlocking"), ("unseals", "unsealing")],
    [("washes", "washing"), ("rinses", "rinsing"), ("cleans", "cleaning")],
    [("throws", "throwing"), ("tosses", "tossing"), ("hurls", "hurling")],
    [("grabs", "grabbing"), ("takes", "taking"), ("seizes", "seizing")],
    [("drops", "dropping"), ("places", "placing"), ("sets", "setting")],
    [("pushes", "pushing"), ("shoves", "shoving"), ("nudges", "nudging")],
    [("pulls", "pulling"), ("drags", "dragging"), ("tugs", "tugging")],
    [("paints", "painting"), ("colors", "coloring"), ("decorates", "decorating")],
    [("carries", "carrying"), ("holds", "holding"), ("lugs", "lugging")],
    [("shakes", "shaking"), ("jiggles", "jiggling"), ("rattles", "rattling")],
    [("inspects", "inspecting"), ("examines", "examining"), ("studies", "studying")],
]
OBJECTS: list[list[str]] = [
    ["pizza", "flatbread", "pie"],
    ["door", "gate", "hatch"],
    ["bottle", "flask", "jug"],
    ["cup", "mug", "glass"],
    ["ball", "sphere", "orb"],
    ["box", "carton", "crate"],
    ["shirt", "tshirt", "blouse"],
    ["bag", "sack", "backpack"],
    ["book", "novel", "notebook"],
    ["chair", "stool", "seat"],
    ["laptop", "computer", "notebookpc"],
    ["bike", "bicycle", "cycle"],
]
SUBJECTS = ["a person", "someone", "a man", "a woman", "the chef", "a kid", "the girl", "a guy"]
SUFFIXES = ["", "", "", "in the kitchen", "outside", "slowly", "again", "at home", "on the table"]

DEFAULT_PARAMS: dict = dict(
    num_train=1500,  # queries
    num_val=300,  # queries
    min_clips=32,  # video length range, in 2-s clips
    max_clips=150,
    min_event_clips=2,  # event length range, in clips (log-uniform)
    max_event_clips=30,
    queries_per_video=1,
    event_coverage=(0.35, 0.7),  # fraction of the video covered by events
    num_verbs=10,
    num_objects=10,
    num_scenes=8,
    video_dim=128,
    text_dim=64,
    latent_dim=32,
    hidden_dim=128,
    obs_noise=0.25,  # observation noise std, relative to the std of the clean features
    seed=0,
)

# Scales of the latent clip state (std per latent dimension) and of the visibility chain. Changing them changes the
# benchmark: bump GENERATOR_VERSION.
_LATENT = dict(
    scene=0.6,  # per-video scene code
    ar=0.45,  # AR(1) background
    code=1.0,  # verb / object codes
    mark=0.6,  # onset / offset signatures
    mix=0.7,  # weight of each of verb and object when both are visible
    p_both=0.15,  # probability (unnormalised vs 0.5 / 0.5 for verb-only / object-only) of "both visible"
    stay=0.2,
    ramp=0.6,  # intensity of the first / last clip of an event
    extra_neg=0.5,  # mean number of hard negatives per target beyond one of each kind (same verb / same object)  # probability that the visibility state persists to the next clip
)


# ----------------------------------------------------------------------------------------------------------- I/O
def save_npz_deterministic(path, **arrays) -> None:
    """Write an ``.npz`` readable by ``np.load`` whose bytes depend only on the arrays (fixed zip timestamps)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key in sorted(arrays):
            arr_buf = io.BytesIO()
            np.lib.format.write_array(arr_buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, arr_buf.getvalue())
    Path(path).write_bytes(buf.getvalue())


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _resolve_params(params: dict) -> dict:
    unknown = set(params) - set(DEFAULT_PARAMS)
    if unknown:
        raise TypeError(f"unknown synthetic benchmark parameter(s): {sorted(unknown)}")
    p = {**DEFAULT_PARAMS, **params}
    p = {k: _jsonable(v) for k, v in p.items()}
    # hard negatives share one word with the query, so at least 2 verbs and 2 objects
    if not 2 <= p["num_verbs"] <= len(VERBS):
        raise ValueError(f"num_verbs must be in [2, {len(VERBS)}]")
    if not 2 <= p["num_objects"] <= len(OBJECTS):
        raise ValueError(f"num_objects must be in [2, {len(OBJECTS)}]")
    if not 2 <= p["min_clips"] <= p["max_clips"]:
        raise ValueError("need 2 <= min_clips <= max_clips")
    if not 1 <= p["min_event_clips"] <= p["max_event_clips"]:
        raise ValueError("need 1 <= min_event_clips <= max_event_clips")
    if p["queries_per_video"] < 1 or p["num_train"] < 0 or p["num_val"] < 0:
        raise ValueError("queries_per_video must be >= 1 and num_train / num_val >= 0")
    if p["queries_per_video"] >= p["num_verbs"] * p["num_objects"]:
        raise ValueError("queries_per_video must be below num_verbs * num_objects (distinct events per video)")
    lo, hi = p["event_coverage"]
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError("event_coverage must be (lo, hi) with 0 < lo <= hi < 1")
    return p


# --------------------------------------------------------------------------------------------------------- world
class _World:
    """Everything shared by all videos of one seed: vocabulary, text encoder, visual codes, rendering MLP."""

    def __init__(self, p: dict):
        self.p = p
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0xC0FFEE]))
        nv, no, dz, dh, dv, dt = (p["num_verbs"], p["num_objects"], p["latent_dim"], p["hidden_dim"],
                                  p["video_dim"], p["text_dim"])
        self.verbs = VERBS[:nv]
        self.objects = OBJECTS[:no]
        # ---- frozen text encoder: synonyms are noisy copies of a concept vector
        words: list[str] = []
        for syns in self.verbs:
            for v3, ving in syns:
                words += [v3, ving]
        for syns in self.objects:
            words += list(syns)
        for phrase in SUBJECTS + SUFFIXES + ["is", "the"]:
            words += phrase.split()
        self.vocab = sorted(set(words))
        table = {w: rng.standard_normal(dt) for w in self.vocab}  # function words: independent vectors
        verb_concepts = rng.standard_normal((nv, dt))
        obj_concepts = rng.standard_normal((no, dt))
        form_offset = rng.standard_normal(dt) * 0.3  # 3rd person vs gerund
        for i, syns in enumerate(self.verbs):
            for v3, ving in syns:
                base = verb_concepts[i] + 0.45 * rng.standard_normal(dt)
                table[v3] = base
                table[ving] = base + form_offset
        for j, syns in enumerate(self.objects):
            for w in syns:
                table[w] = obj_concepts[j] + 0.45 * rng.standard_normal(dt)
        self.word_table = table
        self.pos_emb = 0.3 * rng.standard_normal((32, dt))
        # ---- visual world
        self.scene_codes = rng.standard_normal((p["num_scenes"], dz)) * _LATENT["scene"]
        self.verb_codes = rng.standard_normal((nv, dz)) * _LATENT["code"]
        self.obj_codes = rng.standard_normal((no, dz)) * _LATENT["code"]
        self.onset_code = rng.standard_normal(dz) * _LATENT["mark"]
        self.offset_code = rng.standard_normal(dz) * _LATENT["mark"]
        self.W1 = rng.standard_normal((dz, dh)) / (1.2 * np.sqrt(dz))  # pre-activations of std ~1
        self.b1 = rng.standard_normal(dh) * 0.3
        self.W2 = rng.standard_normal((dh, dv)) / np.sqrt(dh)
        # feature scale: std of clean features measured on random latents, so obs_noise is relative
        probe = rng.standard_normal((512, dz)) * 1.1
        self.feat_std = float(np.tanh(probe @ self.W1 + self.b1).dot(self.W2).std())

    # ---- text
    def encode_query(self, tokens: list[str], rng: np.random.Generator) -> np.ndarray:
        emb = np.stack([self.word_table[w] for w in tokens])
        n = len(tokens)
        out = emb + self.pos_emb[np.arange(n) % len(self.pos_emb)]
        out = 0.8 * out + 0.25 * emb.mean(0, keepdims=True)  # context mixing
        out = out + 0.15 * rng.standard_normal(out.shape)
        return out.astype(np.float32)

    def make_query(self, verb: int, obj: int, rng: np.random.Generator) -> tuple[str, list[str]]:
        v3, ving = self.verbs[verb][rng.integers(len(self.verbs[verb]))]
        o = self.objects[obj][rng.integers(len(self.objects[obj]))]
        subj = SUBJECTS[rng.integers(len(SUBJECTS))]
        suffix = SUFFIXES[rng.integers(len(SUFFIXES))]
        det = "the" if rng.random() < 0.7 else "a"
        if rng.random() < 0.6:
            text = f"{subj} {v3} {det} {o}"
        else:
            text = f"{subj} is {ving} {det} {o}"
        if suffix:
            text += f" {suffix}"
        return text, text.split()

    # ---- video
    def render(self, latents: list[np.ndarray], noises: list[np.ndarray]) -> list[np.ndarray]:
        """Features of several videos; rendered in one batch (few, large BLAS calls are much faster than many
        small ones, especially on a loaded machine)."""
        clean = np.tanh(np.concatenate(latents) @ self.W1 + self.b1) @ self.W2
        noisy = (clean + self.p["obs_noise"] * self.feat_std * np.concatenate(noises)) / self.feat_std
        return np.split(noisy.astype(np.float32), np.cumsum([len(z) for z in latents])[:-1])


def _sample_len(rng, lo, hi):
    """Log-uniform integer in [lo, hi] (short events are more frequent, as in real data)."""
    return int(np.clip(np.round(np.exp(rng.uniform(np.log(lo), np.log(hi + 0.999)))), lo, hi))


def _background_latent(world: _World, T: int, rng: np.random.Generator) -> np.ndarray:
    """(T, latent_dim) latent of a video without events: its scene code + an AR(1) background."""
    p = world.p
    dz = p["latent_dim"]
    rho = 0.85
    ar = rng.standard_normal((T, dz))
    ar[1:] *= np.sqrt(1 - rho ** 2)
    d = 1
    while d < T:  # AR(1) ar[t] = rho * ar[t-1] + e[t] as a log-depth (Hillis-Steele) scan
        ar[d:] = ar[d:] + rho ** d * ar[:-d]
        d *= 2
    scene = world.scene_codes[rng.integers(p["num_scenes"])] + 0.3 * rng.standard_normal(dz)
    return scene + _LATENT["ar"] * ar


def _paint_event(world: _World, latent: np.ndarray, both: np.ndarray, v: int, o: int, s: int, e: int,
                 rng: np.random.Generator) -> None:
    """Add event (verb ``v``, object ``o``) on clips ``[s, e)`` to ``latent`` (T, latent_dim) in place, and mark in
    ``both`` (T,) the clips where verb and object are both visible. Visibility states 0: both (partially mixed),
    1: verb only, 2: object only; a persistent Markov chain."""
    vis_v = np.array([_LATENT["mix"], 1.0, 0.0])
    vis_o = np.array([_LATENT["mix"], 0.0, 1.0])
    cum = np.cumsum([_LATENT["p_both"], 0.5, 0.5])
    L = e - s
    u = rng.random((L, 2))
    fresh = np.searchsorted(cum, u[:, 1] * cum[-1], side="right")  # a newly drawn state per clip
    redraw = u[:, 0] > _LATENT["stay"]
    redraw[0] = True
    states = fresh[np.maximum.accumulate(np.where(redraw, np.arange(L), 0))]  # the latest redraw holds
    r = np.ones(L)  # ramp in / out over the first / last clip of events of 4+ clips
    if L >= 4:
        r[0] = r[-1] = _LATENT["ramp"]
    latent[s:e] += (r * vis_v[states])[:, None] * world.verb_codes[v]
    latent[s:e] += (r * vis_o[states])[:, None] * world.obj_codes[o]
    both[s:e] = states == 0
    latent[s] += world.onset_code
    latent[e - 1] += world.offset_code


def _make_video(world: _World, n_queries: int, rng: np.random.Generator):
    """Sample one video: its events, its latent/features, and ``n_queries`` target (verb, object) pairs."""
    p = world.p
    nv, no = p["num_verbs"], p["num_objects"]
    T = int(rng.integers(p["min_clips"], p["max_clips"] + 1))
    emax = max(1, min(p["max_event_clips"], T // 3))
    emin = min(p["min_event_clips"], emax)

    # --- which events: targets (1-2 occurrences), hard negatives per target, then distractors up to the coverage
    all_pairs = [(v, o) for v in range(nv) for o in range(no)]
    perm = rng.permutation(len(all_pairs))
    targets = [all_pairs[i] for i in perm[:n_queries]]
    target_set = set(targets)
    events: list[tuple[int, int, int]] = []  # (verb, obj, length)
    for v, o in targets:
        k = 2 if rng.random() < 0.15 else 1
        for _ in range(k):
            events.append((v, o, _sample_len(rng, emin, emax)))
    for v, o in targets:
        kinds = ["verb", "obj"] + [["verb", "obj"][rng.integers(2)] for _ in range(rng.poisson(_LATENT["extra_neg"]))]
        for kind in kinds:
            for _ in range(10):
                if kind == "verb":
                    cand = (v, int(rng.integers(no)))
                else:
                    cand = (int(rng.integers(nv)), o)
                if cand not in target_set:
                    events.append((*cand, _sample_len(rng, emin, emax)))
                    break
    budget = rng.uniform(*p["event_coverage"]) * T
    while sum(e[2] for e in events) < budget and len(target_set) < len(all_pairs):
        cand = all_pairs[int(rng.integers(len(all_pairs)))]
        if cand in target_set:
            continue
        events.append((*cand, _sample_len(rng, emin, emax)))
    # fit into the video: shrink the longest events if needed
    lengths = np.array([e[2] for e in events])
    while lengths.sum() > T - 1 and lengths.max() > 1:
        lengths[int(np.argmax(lengths))] -= 1
    while lengths.sum() > T - 1:  # still too many one-clip events: drop trailing distractors
        events.pop()
        lengths = lengths[:-1]
    order = rng.permutation(len(events))
    free = T - int(lengths.sum())
    gaps = rng.multinomial(free, rng.dirichlet(np.ones(len(events) + 1)))
    for i in range(len(order) - 1):  # two events of the same pair never touch (they would read as one)
        if events[order[i]][:2] == events[order[i + 1]][:2] and gaps[i + 1] == 0:
            j = int(np.argmax(gaps))
            if gaps[j] > 0:
                gaps[j] -= 1
                gaps[i + 1] += 1
    placed = []  # (verb, obj, start, end) with end exclusive
    t = int(gaps[0])
    for i, idx in enumerate(order):
        v, o, _ = events[idx]
        L = int(lengths[idx])
        placed.append((v, o, t, t + L))
        t += L + int(gaps[i + 1])

    latent = _background_latent(world, T, rng)
    both = np.zeros(T, dtype=bool)  # clips where both verb and object are visible (for saliency)
    for v, o, s, e in placed:
        _paint_event(world, latent, both, v, o, s, e, rng)
    noise = rng.standard_normal((T, p["video_dim"]))
    return T, placed, targets, latent, noise, both


def _saliency(s: int, e: int, both: np.ndarray, ann_bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    L = e - s
    u = (np.arange(L) + 0.5) / L
    core = 1.0 - np.abs(2.0 * u - 1.0)  # 1 at the event centre, ~0 at its ends
    base = 1.4 + 2.2 * np.minimum(1.0, 1.4 * core) + 0.5 * both[s:e]
    sc = base[:, None] + ann_bias[None, :] + 0.7 * rng.standard_normal((L, 3))
    return np.clip(np.rint(sc), 0, 4).astype(int)


def _generate_split(world: _World, split: str, split_id: int, num_queries: int, qid_start: int, root: Path):
    p = world.p
    qpv = p["queries_per_video"]
    lines = []
    pending = []  # (vid, latent, noise), rendered in batches

    def flush():
        if pending:
            feats = world.render([x[1] for x in pending], [x[2] for x in pending])
            for (vid, _, _), f in zip(pending, feats):
                save_npz_deterministic(root / "video" / f"{vid}.npz", features=f)
            pending.clear()

    qid = qid_start
    vi = 0
    n_pending_clips = 0
    while qid - qid_start < num_queries:
        n_q = min(qpv, num_queries - (qid - qid_start))
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], split_id, vi]))
        T, placed, targets, latent, noise, both = _make_video(world, n_q, rng)
        vid = f"syn_{split}_{vi:06d}"
        pending.append((vid, latent, noise))
        n_pending_clips += T
        for v, o in targets:
            occ = sorted((s, e) for (ev, eo, s, e) in placed if (ev, eo) == (v, o))
            text, tokens = world.make_query(v, o, rng)
            save_npz_deterministic(root / "text" / f"qid{qid}.npz",
                                   last_hidden_state=world.encode_query(tokens, rng))
            ann_bias = 0.4 * rng.standard_normal(3)
            clip_ids, scores = [], []
            for s, e in occ:
                clip_ids += list(range(s, e))
                scores += _saliency(s, e, both, ann_bias, rng).tolist()
            lines.append(json.dumps({
                "qid": qid, "query": text, "vid": vid, "duration": float(T * CLIP_LEN),
                "relevant_windows": [[float(s * CLIP_LEN), float(e * CLIP_LEN)] for s, e in occ],
                "relevant_clip_ids": clip_ids, "saliency_scores": scores,
            }))
            qid += 1
        vi += 1
        if n_pending_clips >= 32768:
            flush()
            n_pending_clips = 0
    flush()
    (root / f"{split}.jsonl").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return vi


def _meta(p: dict, world: _World | None = None, sizes: dict | None = None) -> dict:
    m = {"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": p["seed"],
         "params": p, "clip_len": CLIP_LEN,
         "dims": {"video": p["video_dim"], "text": p["text_dim"]},
         "format": {"video": "video/<vid>.npz:features", "text": "text/qid<qid>.npz:last_hidden_state",
                    "splits": ["train", "val"]}}
    if world is not None:
        m["vocabulary"] = {"verbs": [[s[0] for s in syns] for syns in world.verbs],
                           "objects": [list(syns) for syns in world.objects], "words": world.vocab}
    if sizes is not None:
        m["sizes"] = sizes
    return m


def _write_into(root: Path, p: dict) -> None:
    (root / "video").mkdir(parents=True, exist_ok=True)
    (root / "text").mkdir(parents=True, exist_ok=True)
    world = _World(p)
    n_tr_v = _generate_split(world, "train", 1, p["num_train"], 0, root)
    n_va_v = _generate_split(world, "val", 2, p["num_val"], p["num_train"], root)
    sizes = {"train_queries": p["num_train"], "val_queries": p["num_val"], "train_videos": n_tr_v,
             "val_videos": n_va_v}
    # meta.json last: its presence marks a complete benchmark
    (root / "meta.json").write_text(json.dumps(_meta(p, world, sizes), indent=1, sort_keys=True) + "\n",
                                    encoding="utf-8")


def _meta_matches(root: Path, p: dict) -> bool:
    return meta_matches(root, GENERATOR, GENERATOR_VERSION, p)


def generate_grounding_benchmark(root, **params) -> Path:
    """Generate the benchmark into ``root`` (replacing what is there) and return ``root``.

    Parameters are those of ``DEFAULT_PARAMS`` (keyword-only): ``num_train`` / ``num_val`` (queries),
    ``min_clips`` / ``max_clips`` (video length in 2-s clips), ``min_event_clips`` / ``max_event_clips``,
    ``queries_per_video``, ``event_coverage``, ``num_verbs``, ``num_objects``, ``num_scenes``, ``video_dim``,
    ``text_dim``, ``latent_dim``, ``hidden_dim``, ``obs_noise``, ``seed``. Output is a pure function of the parameters
    (byte-identical files for the same parameters). The folder is built next to ``root`` and renamed into place.
    """
    p = _resolve_params(params)
    return build_atomically(root, lambda tmp: _write_into(tmp, p), lambda r: _meta_matches(r, p))


def ensure_grounding_benchmark(cache_dir, **params) -> Path:
    """Return ``cache_dir`` holding the benchmark for ``params``: re-used when its ``meta.json`` matches (generator
    version and every parameter), generated (atomically) otherwise."""
    p = _resolve_params(params)
    root = Path(cache_dir)
    if _meta_matches(root, p):
        return root
    return generate_grounding_benchmark(root, **params)
