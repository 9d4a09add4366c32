"""Seeded long-context grounding benchmark: queries whose answer no window of ``window`` (W) clips can determine.

Same world as :mod:`vidmamba.data.synthetic` and :mod:`vidmamba.data.synthetic_long` (vocabulary, frozen text
encoder, visual codes, rendering MLP, AR(1) background, event painting). Every query names an event X that occurs
K times in its video (K in ``[min_copies, max_copies]``) and asks for one copy, picked by context:

* ``first_after`` / ``last_before``: "the first time X after Y" / "the last time X before Y" (one Y; at least one X
  on each side of Y);
* ``second`` / ``third``: "the second / third time X happens" (K >= ordinal + 1).

Every two events of a query (its X copies and its context Y) start at least ``sep = W + max_event_clips`` clips
apart, so no W-clip window holds two of them: the X windows are exchangeable to a windowed model, whose best
accuracy is 1/K per query (the *windowed ceiling*). The context-to-answer distance (start to start, from Y or from
the preceding copy) is ``gap * W + max_event_clips`` clips: val videos sweep ``gaps`` (``val_videos_per_gap``
videos each), training videos ``train_gaps``; a video is long enough to hold all its queries, context and answer
together. Several queries per video (distinct X and Y pairs, kinds in turn; each query's events in a span of its
own at a uniform offset in a video ``pad`` spans long, so that with ``pad`` > 1 an event's place in the video tells
little about which copy it is), distractor events of other pairs (one hard negative sharing the verb and one
sharing the object per key pair unless ``hard_negatives`` is false, then random pairs up to ``event_coverage``).

Counterfactual split ``val_cf``: the same val videos with every query's context edited and all else fixed by the
seed (background, noise and every other event are drawn from their own random streams): anchored queries get Y moved
to a slot reserved at generation (another X becomes the answer); ordinal queries lose one earlier copy of X (the next
copy becomes the answer). Only the clips of the edited events change.

Layout (read by both :mod:`vidmamba.data.snag` and :mod:`vidmamba.data.lighthouse`; one copy of every feature)::

    <root>/meta.json             generator, version, every parameter, sizes (written last)
    <root>/annotations.json      SnAG: {"train"|"val"|"val_cf": {vid: {"fps": 0.5, "duration", "num_clips",
                                        "annotations": [{"segment", "sentence", "sentence_id": "qid<qid>",
                                                         "context"}]}}}
                                 context: what the answer depends on (Y, or the copies of X before the answer)
    <root>/{train,val,val_cf}.jsonl  lighthouse / moment_detr lines (qid, query, vid, duration, relevant_windows,
                                     relevant_clip_ids, saliency_scores from 3 noisy annotators)
    <root>/video/<vid>.npz       key "features": (T, video_dim) float32, one row per 2-s clip
    <root>/text/qid<qid>.npz     key "last_hidden_state": (L, text_dim) float32, one row per word
    <root>/ceiling.json          per val query: kind, gap, K, the windowed ceiling 1/K, the position-aware ceiling
                                 and the candidates its rule ranks first (position_best), candidates, answer and its
                                 counterfactual; means per gap and kind; the position rule's accuracy on the
                                 training law (train_position_mc, per training gap and kind)

The position-aware ceiling is the accuracy of the best rule that scores each candidate by its relative position in
the video (t / T, ``position_bins`` bins) per kind and gap, fitted and scored by Monte Carlo over this generator's
placement law (``ceiling_draws`` videos per gap each); per query it is that rule's hit (ties shared).
Output is a pure function of the parameters; :func:`ensure_long_context_benchmark` caches it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .cache import build_atomically, meta_matches, params_cache_dir, read_meta
from .synthetic import (CLIP_LEN, DEFAULT_PARAMS, _background_latent, _paint_event, _resolve_params, _sample_len,
                        _saliency, _World, save_npz_deterministic)
from .synthetic_long import SNAG_GRID, _resolve as _resolve_long, ensure_long_benchmark

__all__ = ["LC_GENERATOR_VERSION", "LC_PARAMS", "KINDS", "SNAG_GRID", "generate_long_context_benchmark",
           "ensure_long_context_benchmark", "ensure_synthetic_snag", "window_conflicts", "read_meta"]

LC_GENERATOR_VERSION = 3  # 2: the SnAG annotations' context (training windows keep it); 3: pad, ceiling.json's
                          # position_best and train_position_mc
GENERATOR = "vidmamba.data.synthetic_long_context"
KINDS = ("first_after", "last_before", "second", "third")
TEMPLATES = {"first_after": "the first time {x} after {y}", "last_before": "the last time {x} before {y}",
             "second": "the second time {x}", "third": "the third time {x}"}
ORDINAL = {"second": 2, "third": 3}
_WORDS = ("first", "last", "second", "third", "time", "after", "before")  # words beyond the base vocabulary

# num_train counts videos; val has val_videos_per_gap videos per entry of gaps.
LC_PARAMS: dict = dict(
    DEFAULT_PARAMS,
    num_train=64,
    num_val=0,  # unused (val size = val_videos_per_gap * len(gaps))
    min_event_clips=2,
    max_event_clips=8,
    event_coverage=(0.04, 0.1),
    queries_per_video=8,
    window=128,
    min_copies=3,
    max_copies=6,
    kinds=list(KINDS),
    gaps=[1, 4, 16, 64],
    val_videos_per_gap=3,
    train_gaps=[1, 2, 4],
    stretch=(1.2, 1.5),  # a query's span / the longest span its events need
    pad=1.0,  # video length / a query's span: each query's events lie in a span of their own at a uniform offset
    position_bins=20,
    ceiling_draws=200,
    hard_negatives=True,  # per key pair, one distractor sharing its verb and one sharing its object
)
_OWN = ("window", "min_copies", "max_copies", "kinds", "gaps", "val_videos_per_gap", "train_gaps", "stretch", "pad",
        "position_bins", "ceiling_draws", "hard_negatives")
_TRIES = 30  # placements of one query before the video is lengthened


def _resolve(params: dict) -> dict:
    unknown = set(params) - set(LC_PARAMS)
    if unknown:
        raise TypeError(f"unknown long-context synthetic benchmark parameter(s): {sorted(unknown)}")
    merged = {**LC_PARAMS, **params}
    p = _resolve_params({k: v for k, v in merged.items() if k not in _OWN})
    own = {k: merged[k] for k in _OWN}
    own["kinds"], own["gaps"], own["train_gaps"] = list(own["kinds"]), list(own["gaps"]), list(own["train_gaps"])
    own["stretch"] = [float(s) for s in own["stretch"]]
    if own["window"] < 1 or any(not (isinstance(g, int) and g >= 1) for g in own["gaps"] + own["train_gaps"]):
        raise ValueError("window must be >= 1 and gaps / train_gaps lists of integers >= 1")
    if not own["gaps"] or not own["train_gaps"] or own["val_videos_per_gap"] < 1:
        raise ValueError("gaps and train_gaps must be non-empty and val_videos_per_gap >= 1")
    if not isinstance(own["hard_negatives"], bool):
        raise ValueError(f"hard_negatives must be true or false, got {own['hard_negatives']!r}")
    if not own["kinds"] or set(own["kinds"]) - set(KINDS):
        raise ValueError(f"kinds must be a non-empty subset of {list(KINDS)}, got {own['kinds']!r}")
    if not 3 <= own["min_copies"] <= own["max_copies"] or own["max_copies"] < 4:
        raise ValueError("need 3 <= min_copies <= max_copies and max_copies >= 4 (a third copy and one after it)")
    if 2 * p["queries_per_video"] > p["num_verbs"] * p["num_objects"] - 4:
        raise ValueError("queries_per_video too large: each query needs two pairs of its own (X, Y)")
    if not 1.0 <= own["stretch"][0] <= own["stretch"][1]:
        raise ValueError("stretch must be [lo, hi] with 1 <= lo <= hi")
    if not (isinstance(own["pad"], (int, float)) and not isinstance(own["pad"], bool) and own["pad"] >= 1):
        raise ValueError(f"pad must be a number >= 1, got {own['pad']!r}")
    own["pad"] = float(own["pad"])
    return {**p, **own}


# ------------------------------------------------------------------------------------------------------ placement
def _sep(p: dict) -> int:
    return p["window"] + p["max_event_clips"]


def _distance(p: dict, gap: int) -> int:
    """Start-to-start clips from the context to the answer at ``gap`` (in windows)."""
    return gap * p["window"] + p["max_event_clips"]


def _allowed(occ: np.ndarray, L: int, lo: int, hi: int, away=(), sep: int = 0) -> np.ndarray:
    """Starts ``s`` in ``[lo, hi]`` where clips ``[s - 1, s + L]`` are free in ``occ`` (T,) and ``|s - a| >= sep``
    for every ``a`` in ``away``."""
    T = len(occ)
    lo, hi = max(lo, 0), min(hi, T - L)
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    cs = np.concatenate([[0], np.cumsum(occ)])
    s = np.arange(lo, hi + 1)
    ok = cs[np.minimum(s + L + 1, T)] - cs[np.maximum(s - 1, 0)] == 0
    for a in away:
        ok &= np.abs(s - a) >= sep
    return s[ok]


def _take(occ, L, rng, lo, hi, away=(), sep=0, fixed=None):
    """Place an event of ``L`` clips uniformly among the allowed starts (or at ``fixed`` when allowed); marks
    ``occ``; returns the start or None."""
    starts = _allowed(occ, L, lo if fixed is None else fixed, hi if fixed is None else fixed, away, sep)
    if not len(starts):
        return None
    s = int(starts[rng.integers(len(starts))])
    occ[s:s + L] = True
    return s


def _place_query(p: dict, kind: str, gap: int, occ: np.ndarray, rng: np.random.Generator) -> dict | None:
    """One query's key events placed into ``occ`` (marked), or None (``occ`` untouched) when they do not fit.

    Returns ``{"x": [[s, e], ...] sorted (the K candidates), "answer": index, "context": [s, e] (Y, or the copy
    before the answer), "y": [s, e] | None, "ghost": [s, e] | None (Y's counterfactual slot), "delete": index |
    None (the copy the counterfactual removes), "cf_answer": index}``.
    """
    T, sep, D, e = len(occ), _sep(p), _distance(p, gap), p["max_event_clips"]
    work = occ.copy()
    n = ORDINAL.get(kind)
    K = int(rng.integers(max(p["min_copies"], (n or 0) + 1), p["max_copies"] + 1))
    lengths = [_sample_len(rng, p["min_event_clips"], e) for _ in range(K + 1)]  # K copies, then Y
    keys: list[int] = []  # starts of the placed key events (they keep `sep` apart)
    copies: list[tuple[int, int]] = []  # (start, length) of the copies of X

    def put(L, lo, hi, fixed=None, copy=True):
        s = _take(work, L, rng, lo, hi, keys, sep, fixed)
        if s is not None:
            keys.append(s)
            if copy:
                copies.append((s, L))
        return s

    y = None
    if n is None:  # anchored: Y, the answer at distance D, the other copies on both sides
        k_far = int(rng.integers(1, K))  # copies on the far side of Y from the answer (>= 1)
        k_near = K - 1 - k_far  # further copies beyond the answer
        after = kind == "first_after"
        lo, hi = (k_far * sep, T - e - D - k_near * sep) if after else (D + k_near * sep, T - e - k_far * sep)
        y = put(lengths[K], lo, hi, copy=False)
        if y is None:
            return None
        ans = put(lengths[0], 0, 0, fixed=y + D if after else y - D)
        if ans is None:
            return None
        far, near = ((0, y - sep), (ans + sep, T - e)) if after else ((y + sep, T - e), (0, ans - sep))
        for i in range(1, K):
            if put(lengths[i], *(far if i <= k_far else near)) is None:
                return None
    else:  # ordinal: the copy before the answer (the context), the answer at D, earlier and later copies
        ctx = put(lengths[0], (n - 2) * sep, T - e - D - (K - n) * sep)
        if ctx is None:
            return None
        ans = put(lengths[1], 0, 0, fixed=ctx + D)
        if ans is None:
            return None
        for i in range(2, K):
            if put(lengths[i], *((0, ctx - sep) if i < n else (ans + sep, T - e))) is None:
                return None
    x = sorted([s, s + L] for s, L in copies)
    xs = [s for s, _ in x]
    answer = xs.index(ans)
    ghost = delete = None
    if n is None:  # Y's counterfactual slot: X on both sides, >= sep from every X, another answer
        slots = _allowed(work, lengths[K], xs[0] + 1, xs[-1] - 1, xs, sep)
        lo, hi = (xs[answer - 1], ans) if kind == "first_after" else (ans, xs[answer + 1])
        slots = slots[(slots < lo) | (slots > hi)]
        if not len(slots):
            return None
        g = int(slots[rng.integers(len(slots))])
        work[g:g + lengths[K]] = True
        ghost = [g, g + lengths[K]]
        cf_answer = int(np.searchsorted(xs, g)) - (kind == "last_before")
        context = [y, y + lengths[K]]
    else:
        delete = int(rng.integers(n - 1))
        cf_answer = answer + 1
        context = x[answer - 1]
    occ[:] = work
    return {"x": x, "answer": answer, "context": context, "y": None if y is None else [y, y + lengths[K]],
            "ghost": ghost, "delete": delete, "cf_answer": cf_answer}


def _place_video(p: dict, gap: int, rng: np.random.Generator) -> tuple[int, list[dict]]:
    """(T, queries): the key events of ``queries_per_video`` queries (kinds in turn), each query's in a span of its
    own (``stretch`` x what it needs) at a uniform offset in a video ``pad`` spans long (``pad`` 1: every query spans
    the video); both lengthened by 15% and re-drawn while one does not fit. Each query: :func:`_place_query` +
    ``kind``."""
    need = (p["max_copies"] + 2) * _sep(p) + _distance(p, gap) + p["max_event_clips"]
    span = int(math.ceil(need * rng.uniform(*p["stretch"])))
    while True:
        T = int(math.ceil(span * p["pad"]))
        occ = np.zeros(T, dtype=bool)
        queries = []
        for j in range(p["queries_per_video"]):
            kind = p["kinds"][j % len(p["kinds"])]
            for _ in range(_TRIES):
                lo = int(rng.integers(T - span + 1)) if T > span else 0
                q = _place_query(p, kind, gap, occ[lo:lo + span], rng)  # a view: placed events mark occ
                if q is not None:
                    queries.append({"kind": kind, **_shifted(q, lo)})
                    break
            else:
                break
        if len(queries) == p["queries_per_video"]:
            return T, queries
        span = int(math.ceil(span * 1.15))


def _shifted(q: dict, lo: int) -> dict:
    """Query ``q`` of :func:`_place_query` with its clip positions moved ``lo`` clips later."""
    move = lambda r: None if r is None else [r[0] + lo, r[1] + lo]  # noqa: E731
    return {**q, "x": [move(r) for r in q["x"]], "context": move(q["context"]), "y": move(q["y"]),
            "ghost": move(q["ghost"])}


def window_conflicts(events: list[list[int]], window: int) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` of ``events`` ([start, end) clips) that one window of ``window`` consecutive clips can hold
    together (the last clip of the earlier is less than ``window`` clips before the first clip of the later)."""
    out = []
    for i, (si, ei) in enumerate(events):
        for j, (sj, ej) in enumerate(events[i + 1:], i + 1):
            (a, b), (c, _) = sorted([(si, ei), (sj, ej)])
            if c - (b - 1) < window:
                out.append((i, j))
    return out


# ------------------------------------------------------------------------------------------------------- ceilings
def _bins(p: dict, starts, T: int) -> np.ndarray:
    return np.minimum((np.asarray(starts) / T * p["position_bins"]).astype(int), p["position_bins"] - 1)


def _rule_best(rule: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Indices of the candidates (their position ``bins``) that ``rule[bin]`` scores highest (ties: all)."""
    score = rule[bins]
    return np.flatnonzero(score == score.max())


def _rule_hit(rule: np.ndarray, bins: np.ndarray, answer: int) -> float:
    """Accuracy of scoring candidates by ``rule[bin]`` on one query: 1 / #ties when the answer is among the best."""
    best = _rule_best(rule, bins)
    return 1.0 / len(best) if answer in best else 0.0


def _monte_carlo(p: dict, gap: int, stream: int) -> list[tuple[str, np.ndarray, int]]:
    """(kind, bins of the candidates, answer) of the queries of ``ceiling_draws`` videos placed at ``gap``."""
    out = []
    for d in range(p["ceiling_draws"]):
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0x1C, 0xCE1, stream, gap, d]))
        T, queries = _place_video(p, gap, rng)
        out += [(q["kind"], _bins(p, [s for s, _ in q["x"]], T), q["answer"]) for q in queries]
    return out


def position_rules(p: dict, gaps: list[int]) -> dict:
    """Per gap of ``gaps`` and kind: the position rule (``position_bins`` values: P(a candidate in that bin is the
    answer), fitted on one Monte Carlo set) and its accuracy on an independent one (``mc``)."""
    out = {}
    for gap in gaps:
        fit, score = _monte_carlo(p, gap, 0), _monte_carlo(p, gap, 1)
        out[gap] = {}
        for kind in p["kinds"]:
            hits, total = np.zeros(p["position_bins"]), np.zeros(p["position_bins"])
            for k, b, a in fit:
                if k == kind:
                    np.add.at(total, b, 1)
                    hits[b[a]] += 1
            rule = hits / np.maximum(total, 1)
            mc = [_rule_hit(rule, b, a) for k, b, a in score if k == kind]
            out[gap][kind] = {"rule": rule.round(4).tolist(), "mc": float(np.mean(mc))}
    return out


# ------------------------------------------------------------------------------------------------------ rendering
def _add_words(world: _World, p: dict) -> None:
    """Vectors for the benchmark's extra words (independent of the base vocabulary's)."""
    rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 0x1C, 0x7E47]))
    for w in _WORDS:
        vec = rng.standard_normal(p["text_dim"])
        world.word_table.setdefault(w, vec)


def _key_pairs(p: dict, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Distinct (verb, object) pairs: X and Y of every query."""
    pairs = [(v, o) for v in range(p["num_verbs"]) for o in range(p["num_objects"])]
    return [pairs[i] for i in rng.permutation(len(pairs))[:2 * p["queries_per_video"]]]


def _distractors(p: dict, occ: np.ndarray, keys: list, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Events of pairs other than ``keys``: a hard negative sharing the verb and one sharing the object per key pair
    (unless ``hard_negatives`` is false), then random pairs until ``event_coverage`` of the video is covered (or no
    room is left); placed uniformly in the free clips."""
    nv, no, T = p["num_verbs"], p["num_objects"], len(occ)
    others = [(v, o) for v in range(nv) for o in range(no) if (v, o) not in set(keys)]
    wanted = []
    sharing = keys if p["hard_negatives"] else []
    for v, o in sharing:  # one hard negative sharing the verb, one sharing the object
        for shared in ([c for c in others if c[0] == v], [c for c in others if c[1] == o]):
            if shared:
                wanted.append(shared[int(rng.integers(len(shared)))])
    budget = rng.uniform(*p["event_coverage"]) * T - occ.sum()
    out, covered, i = [], 0, 0
    while i < len(wanted) or covered < budget:
        pair = wanted[i] if i < len(wanted) else others[int(rng.integers(len(others)))]
        i += 1
        L = _sample_len(rng, p["min_event_clips"], p["max_event_clips"])
        s = _take(occ, L, rng, 0, T - L)
        if s is None:
            break
        out.append((*pair, s, s + L))
        covered += L
    return out


def _video(world: _World, p: dict, split_id: int, vi: int, gap: int) -> dict:
    """One video: its placement, key pairs, distractors, and the original / counterfactual latent + noise."""
    def stream(*words):
        return np.random.default_rng(np.random.SeedSequence([p["seed"], 0x1C, split_id, vi, *words]))

    rng = stream(0)
    T, queries = _place_video(p, gap, rng)
    keys = _key_pairs(p, rng)
    occ = np.zeros(T, dtype=bool)
    for q in queries:
        for r in q["x"] + [q["y"], q["ghost"]]:
            if r is not None:
                occ[r[0]:r[1]] = True
    # every key event: (pair, [s, e], stream id); events only in the original / only in the counterfactual
    events, original_only, cf_only = [], set(), set()
    for j, q in enumerate(queries):
        q["pair"], q["y_pair"] = keys[2 * j], keys[2 * j + 1]
        for c, (s, e) in enumerate(q["x"]):
            events.append((q["pair"], s, e, (j, c)))
            if q["delete"] == c:
                original_only.add(len(events) - 1)
        if q["y"] is not None:
            events.append((q["y_pair"], *q["y"], (j, "y")))
            original_only.add(len(events) - 1)
            events.append((q["y_pair"], *q["ghost"], (j, "y")))  # the same stream: the same Y, moved
            cf_only.add(len(events) - 1)
    distract = _distractors(p, occ, keys, rng)
    events += [((v, o), s, e, ("d", i)) for i, (v, o, s, e) in enumerate(distract)]
    background = _background_latent(world, T, stream(1))
    noise = stream(2).standard_normal((T, p["video_dim"]))
    out = {"T": T, "queries": queries, "noise": noise, "events": events}
    for name, skip in (("original", cf_only), ("cf", original_only)):
        latent, both = background.copy(), np.zeros(T, dtype=bool)
        for i, ((v, o), s, e, sid) in enumerate(events):
            if i not in skip:
                _paint_event(world, latent, both, v, o, s, e, stream(3, *_stream_words(sid)))
        out[name] = (latent, both)
    return out


def _stream_words(sid: tuple) -> tuple[int, ...]:
    """The integer words of an event's stream id (query, copy | "y") or ("d", index)."""
    a, b = sid
    return (0, 0xD, b) if a == "d" else (1, a, 0xE if b == "y" else b)


def _query_text(world: _World, kind: str, x: tuple, y: tuple | None, rng) -> tuple[str, list[str]]:
    xt, _ = world.make_query(*x, rng)
    yt = world.make_query(*y, rng)[0] if y is not None else None
    text = TEMPLATES[kind].format(x=xt, y=yt)
    return text, text.split()


def _generate_split(world: _World, p: dict, split: str, split_id: int, qid0: int, root: Path) -> tuple:
    """Write the videos of ``split`` (and of ``val_cf`` for val: the same query texts under their own qids, those of
    val + the number of val queries); return ({split: SnAG videos}, {split: lighthouse lines}, ceiling rows, next
    qid)."""
    gaps = ([p["train_gaps"][i % len(p["train_gaps"])] for i in range(p["num_train"])] if split == "train" else
            [g for g in p["gaps"] for _ in range(p["val_videos_per_gap"])])
    names = [split] + (["val_cf"] if split == "val" else [])
    snag, lines, rows, qid = {n: {} for n in names}, {n: [] for n in names}, [], qid0
    cf_offset = len(gaps) * p["queries_per_video"]
    for vi, gap in enumerate(gaps):
        v = _video(world, p, split_id, vi, gap)
        T, rng = v["T"], np.random.default_rng(np.random.SeedSequence([p["seed"], 0x1C, split_id, vi, 4]))
        vids = {n: f"lc_{split}_{vi:05d}" + ("_cf" if n == "val_cf" else "") for n in names}
        feats = world.render([v["original"][0]] + ([v["cf"][0]] if split == "val" else []),
                             [v["noise"]] * len(names))
        for n, f in zip(names, feats):
            save_npz_deterministic(root / "video" / f"{vids[n]}.npz", features=f)
            snag[n][vids[n]] = {"fps": 1.0 / CLIP_LEN, "duration": T * CLIP_LEN, "num_clips": T, "annotations": []}
        for q in v["queries"]:
            text, tokens = _query_text(world, q["kind"], q["pair"], q["y_pair"] if q["y"] else None, rng)
            tokens = world.encode_query(tokens, rng)
            ann_bias = 0.4 * rng.standard_normal(3)
            for n in names:
                cf = n == "val_cf"
                s, e = q["x"][q["cf_answer"] if cf else q["answer"]]
                both = v["cf" if cf else "original"][1]
                nq = qid + cf_offset * cf
                save_npz_deterministic(root / "text" / f"qid{nq}.npz", last_hidden_state=tokens)
                cs, ce = _context(q, cf)
                snag[n][vids[n]]["annotations"].append(
                    {"segment": [s * CLIP_LEN, e * CLIP_LEN], "sentence": text, "sentence_id": f"qid{nq}",
                     "context": [cs * CLIP_LEN, ce * CLIP_LEN]})
                lines[n].append(json.dumps({
                    "qid": nq, "query": text, "vid": vids[n], "duration": T * CLIP_LEN,
                    "relevant_windows": [[s * CLIP_LEN, e * CLIP_LEN]], "relevant_clip_ids": list(range(s, e)),
                    "saliency_scores": _saliency(s, e, both, ann_bias, rng).tolist(), "kind": q["kind"],
                    "gap": gap}))
            if split == "val":
                rows.append({"qid": qid, "vid": vids["val"], "cf_qid": qid + cf_offset, "cf_vid": vids["val_cf"],
                             "kind": q["kind"],
                             "gap": gap, "T": T, "K": len(q["x"]), "windowed": 1.0 / len(q["x"]),
                             "candidates": q["x"], "answer": q["answer"], "context": q["context"], "y": q["y"],
                             "cf_y": q["ghost"], "cf_deleted": q["delete"], "cf_answer": q["cf_answer"]})
            qid += 1
        check_video(p, v)
    return snag, lines, rows, qid


def _context(q: dict, cf: bool) -> list[int]:
    """[start, end) clips of what query ``q``'s answer depends on, in the original or the counterfactual video: Y
    (anchored), or the span from the first copy of X to the one before the answer (ordinal)."""
    if q["y"] is not None:
        return q["ghost"] if cf else q["y"]
    before = [c for i, c in enumerate(q["x"][:q["cf_answer" if cf else "answer"]]) if not (cf and i == q["delete"])]
    return [before[0][0], before[-1][1]]


def check_video(p: dict, v: dict) -> None:
    """The generator's self-check: no W-window holds two key events of one query (its copies, Y, Y's
    counterfactual slot), and no other event has a query's pair. Raises AssertionError otherwise."""
    for q in v["queries"]:
        for context in (q["y"], q["ghost"]):  # Y in the original video, its slot in the counterfactual
            key = q["x"] + ([context] if context is not None else [])
            bad = window_conflicts(key, p["window"])
            assert not bad, f"a window of {p['window']} clips holds two key events of a query: {bad} of {key}"
        copies = sum(pair == q["pair"] for pair, *_ in v["events"])
        assert copies == len(q["x"]), f"pair {q['pair']} occurs {copies} times, expected {len(q['x'])}"


def _ceiling(p: dict, rows: list[dict]) -> dict:
    """ceiling.json: the per-query rows with their position-aware hit, and the means per gap and kind."""
    rules = position_rules(p, sorted(set(p["gaps"]) | set(p["train_gaps"])))  # a gap's rule: the same in both
    for r in rows:
        rule, bins = np.asarray(rules[r["gap"]][r["kind"]]["rule"]), _bins(p, [s for s, _ in r["candidates"]], r["T"])
        r["position"] = _rule_hit(rule, bins, r["answer"])
        r["position_best"] = _rule_best(rule, bins).tolist()

    def means(sel):
        return {"queries": len(sel), "windowed": float(np.mean([r["windowed"] for r in sel])),
                "position": float(np.mean([r["position"] for r in sel]))}

    by_gap = {str(g): {**means([r for r in rows if r["gap"] == g]),
                       "position_mc": float(np.mean([rules[g][k]["mc"] for k in p["kinds"]])),
                       "kinds": {k: {**means([r for r in rows if r["gap"] == g and r["kind"] == k]),
                                     "position_mc": rules[g][k]["mc"]} for k in p["kinds"]}} for g in p["gaps"]}
    return {"window": p["window"], "sep": _sep(p), "fraction": "all values are fractions of queries (0..1)",
            "overall": means(rows), "by_gap": by_gap,
            "position_rules": {str(g): {k: rules[g][k]["rule"] for k in p["kinds"]} for g in p["gaps"]},
            "train_position_mc": {str(g): {k: rules[g][k]["mc"] for k in p["kinds"]} for g in p["train_gaps"]},
            "queries": rows}


# -------------------------------------------------------------------------------------------------------- writing
def _meta(p: dict, sizes: dict | None = None) -> dict:
    m = {"generator": GENERATOR, "version": LC_GENERATOR_VERSION, "params": p, "clip_len": CLIP_LEN,
         "dims": {"video": p["video_dim"], "text": p["text_dim"]}, "grid": SNAG_GRID,
         "format": {"annotations": "annotations.json", "lighthouse": "<split>.jsonl", "video": "video/<vid>.npz",
                    "text": "text/qid<qid>.npz", "ceiling": "ceiling.json", "splits": ["train", "val", "val_cf"]}}
    if sizes is not None:
        m["sizes"] = sizes
    return m


def _write_into(root: Path, p: dict) -> None:
    (root / "video").mkdir(parents=True)
    (root / "text").mkdir()
    world = _World(p)
    _add_words(world, p)
    snag, lines, _, qid = _generate_split(world, p, "train", 1, 0, root)
    val_snag, val_lines, rows, _ = _generate_split(world, p, "val", 2, qid, root)
    snag.update(val_snag)
    lines.update(val_lines)
    (root / "annotations.json").write_text(json.dumps(snag, indent=1) + "\n", encoding="utf-8")
    for name, ls in lines.items():
        (root / f"{name}.jsonl").write_text("\n".join(ls) + "\n", encoding="utf-8")
    (root / "ceiling.json").write_text(json.dumps(_ceiling(p, rows), indent=1) + "\n", encoding="utf-8")
    sizes = {f"{s}_{k}": n for s, vids in snag.items() for k, n in (
        ("videos", len(vids)), ("queries", sum(len(v["annotations"]) for v in vids.values())),
        ("clips", sum(v["num_clips"] for v in vids.values())))}
    # meta.json last: its presence marks a complete benchmark
    (root / "meta.json").write_text(json.dumps(_meta(p, sizes), indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _matches(root: Path, p: dict) -> bool:
    return meta_matches(root, GENERATOR, LC_GENERATOR_VERSION, p)


def generate_long_context_benchmark(root, **params) -> Path:
    """Generate the benchmark into ``root`` (replacing what is there) and return ``root``. Parameters: those of
    ``LC_PARAMS`` (keyword-only; see the module docstring). Built in a sibling temporary folder and renamed into
    place (``meta.json`` written last marks it complete)."""
    p = _resolve(params)
    return build_atomically(root, lambda tmp: _write_into(tmp, p), lambda r: _matches(r, p))


def ensure_long_context_benchmark(cache_dir=None, **params) -> Path:
    """``cache_dir`` (default ``$VIDMAMBA_CACHE/synthetic_long_context/v<version>-<hash of params>``) holding the
    benchmark for ``params``: re-used when its ``meta.json`` matches, generated otherwise."""
    p = _resolve(params)
    root = (Path(cache_dir) if cache_dir is not None else
            params_cache_dir("synthetic_long_context", LC_GENERATOR_VERSION, p))
    return root if _matches(root, p) else generate_long_context_benchmark(root, **params)


def ensure_synthetic_snag(params: dict) -> Path:
    """The cached SnAG-format synthetic benchmark of a config's ``data.synthetic``: ``generator`` "long" (default,
    :func:`vidmamba.data.synthetic_long.ensure_long_benchmark`) or "long_context" (this module), the other keys its
    parameters. A bad parameter is a :class:`~vidmamba.errors.ConfigError` naming ``data.synthetic``."""
    params = dict(params)
    generator = params.pop("generator", "long")
    generators = {"long": (_resolve_long, ensure_long_benchmark),
                  "long_context": (_resolve, ensure_long_context_benchmark)}
    if generator not in generators:
        raise ConfigError(f"data.synthetic.generator: expected 'long' or 'long_context', got {generator!r}")
    resolve, ensure = generators[generator]
    try:
        resolve(params)
    except (TypeError, ValueError) as err:  # a config's mistake: one line naming the section
        raise ConfigError(f"data.synthetic: {err}") from None
    return ensure(**params)
