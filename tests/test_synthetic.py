"""Synthetic grounding benchmark: determinism, on-disk format, cache, hard negatives, need for temporal context."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vidmamba.data.synthetic import (
    CLIP_LEN,
    OBJECTS,
    VERBS,
    ensure_grounding_benchmark,
    generate_grounding_benchmark,
    read_meta,
)

SMALL = dict(num_train=40, num_val=12, min_clips=20, max_clips=60, video_dim=32, text_dim=16)


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rows(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return generate_grounding_benchmark(tmp_path_factory.mktemp("syn") / "bench", **SMALL)


def test_same_seed_identical_files(small, tmp_path):
    again = generate_grounding_benchmark(tmp_path / "again", **SMALL)
    a, b = _digest(small), _digest(again)
    assert len(a) == 1 + 2 + SMALL["num_train"] + SMALL["num_val"] + SMALL["num_train"] + SMALL["num_val"]
    assert a == b


def test_different_seed_differs(small, tmp_path):
    other = generate_grounding_benchmark(tmp_path / "other", seed=1, **SMALL)
    a, b = _digest(small), _digest(other)
    assert a.keys() == b.keys()
    differing = [k for k in a if a[k] != b[k]]
    assert len(differing) > 0.9 * len(a)
    assert _rows(small, "train") != _rows(other, "train")


@pytest.mark.parametrize("split", ["train", "val"])
def test_documented_format(small, split):
    rows = _rows(small, split)
    n = SMALL["num_train"] if split == "train" else SMALL["num_val"]
    assert len(rows) == n
    meta = read_meta(small)
    assert meta["seed"] == 0 and meta["dims"] == {"video": 32, "text": 16}
    assert meta["sizes"][f"{split}_queries"] == n
    vocab = set(meta["vocabulary"]["words"])
    for r in rows:
        assert set(r) == {"qid", "query", "vid", "duration", "relevant_windows", "relevant_clip_ids",
                          "saliency_scores"}
        assert isinstance(r["qid"], int) and isinstance(r["duration"], float)
        with np.load(small / "video" / f"{r['vid']}.npz") as z:
            assert list(z.keys()) == ["features"]
            feats = z["features"]
        assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[1] == 32
        assert np.isfinite(feats).all()
        T = feats.shape[0]
        assert SMALL["min_clips"] <= T <= SMALL["max_clips"]
        assert r["duration"] == T * CLIP_LEN
        ids = []
        for st, ed in r["relevant_windows"]:
            assert 0 <= st < ed <= r["duration"]
            assert st % CLIP_LEN == 0 and ed % CLIP_LEN == 0
            ids += list(range(int(st // CLIP_LEN), int(ed // CLIP_LEN)))
        assert r["relevant_clip_ids"] == ids and len(set(ids)) == len(ids)
        sal = np.asarray(r["saliency_scores"])
        assert sal.shape == (len(ids), 3) and sal.dtype.kind == "i"
        assert sal.min() >= 0 and sal.max() <= 4
        words = r["query"].split()
        assert set(words) <= vocab
        with np.load(small / "text" / f"qid{r['qid']}.npz") as z:
            assert list(z.keys()) == ["last_hidden_state"]
            txt = z["last_hidden_state"]
        assert txt.dtype == np.float32 and txt.shape == (len(words), 16) and np.isfinite(txt).all()
    assert len({r["qid"] for r in rows}) == len(rows)


def test_splits_disjoint_and_saliency_peaks_inside(small):
    tr, va = _rows(small, "train"), _rows(small, "val")
    assert not ({r["qid"] for r in tr} & {r["qid"] for r in va})
    assert not ({r["vid"] for r in tr} & {r["vid"] for r in va})
    # annotators score the core of an event higher than its ends
    core, ends = [], []
    for r in tr + va:
        sal = np.asarray(r["saliency_scores"]).mean(1)
        off = 0
        for st, ed in r["relevant_windows"]:
            L = int((ed - st) // CLIP_LEN)
            if L >= 6:
                seg = sal[off:off + L]
                core.append(seg[L // 2 - 1:L // 2 + 1].mean())
                ends.append((seg[0] + seg[-1]) / 2)
            off += L
    assert len(core) >= 10 and np.mean(core) > np.mean(ends) + 0.5


def test_cache_reuse_and_regeneration(tmp_path):
    root = tmp_path / "cache"
    p = dict(SMALL, num_train=8, num_val=4)
    assert ensure_grounding_benchmark(root, **p) == root
    d0 = _digest(root)
    stamp = (root / "meta.json").stat().st_mtime_ns
    marker = root / "video" / "marker.txt"  # survives only if the folder is re-used
    marker.write_text("x")
    ensure_grounding_benchmark(root, **p)
    assert marker.exists() and (root / "meta.json").stat().st_mtime_ns == stamp
    ensure_grounding_benchmark(root, **dict(p, num_train=9))
    assert not marker.exists()
    assert read_meta(root)["params"]["num_train"] == 9 and len(_rows(root, "train")) == 9
    ensure_grounding_benchmark(root, **p)
    assert _digest(root) == d0
    # a corrupt / partial folder (no meta.json) is regenerated; no temp folders are left behind
    (root / "meta.json").unlink()
    ensure_grounding_benchmark(root, **p)
    assert _digest(root) == d0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["cache"]
    with pytest.raises(TypeError):
        ensure_grounding_benchmark(root, not_a_param=1)


def _concept_of(word: str, table) -> int | None:
    for i, syns in enumerate(table):
        flat = [w for s in syns for w in (s if isinstance(s, tuple) else (s,))]
        if word in flat:
            return i
    return None


def test_queries_are_compositional_with_synonyms(small):
    rows = _rows(small, "train") + _rows(small, "val")
    verb_words, obj_words = set(), set()
    for r in rows:
        words = r["query"].split()
        verbs = [w for w in words if _concept_of(w, VERBS) is not None]
        objs = [w for w in words if _concept_of(w, OBJECTS) is not None]
        assert len(verbs) == 1 and len(objs) == 1, r["query"]
        verb_words.add(verbs[0])
        obj_words.add(objs[0])
    # several surface words per concept are used
    n_verb_concepts = len({_concept_of(w, VERBS) for w in verb_words})
    assert len(verb_words) > n_verb_concepts and len(obj_words) > len({_concept_of(w, OBJECTS) for w in obj_words})


def test_synonyms_have_nearby_text_features():
    # Same query text up to a synonym: token features of the synonym are closer than those of another concept.
    from vidmamba.data.synthetic import DEFAULT_PARAMS, _World

    w = _World(dict(DEFAULT_PARAMS))
    t = w.word_table

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    syn = [cos(t[s[0][0]], t[s[1][0]]) for s in w.verbs] + [cos(t[s[0]], t[s[1]]) for s in w.objects]
    other = [cos(t[w.verbs[i][0][0]], t[w.verbs[i + 1][0][0]]) for i in range(len(w.verbs) - 1)]
    assert min(syn) > 0.6 and max(other) < 0.5


def test_hard_negatives_present(small):
    """The generator's event list is not on disk; recover it by re-running the seeded video sampler."""
    from vidmamba.data.synthetic import _make_video, _resolve_params, _World

    p = _resolve_params(dict(SMALL))
    world = _World(p)
    n_with = 0
    for vi in range(30):
        rng = np.random.default_rng(np.random.SeedSequence([p["seed"], 1, vi]))
        T, placed, targets, latent, noise, both = _make_video(world, 1, rng)
        (v, o), = targets
        others = [(ev, eo) for ev, eo, s, e in placed if (ev, eo) != (v, o)]
        n_with += any((ev == v) != (eo == o) for ev, eo in others)
        # events lie inside the video and do not overlap
        spans = sorted((s, e) for _, _, s, e in placed)
        assert all(0 <= s < e <= T for s, e in spans)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        # the on-disk windows are exactly the target's occurrences
        if vi < SMALL["num_train"]:
            row = _rows(small, "train")[vi]
            assert row["relevant_windows"] == [[s * CLIP_LEN, e * CLIP_LEN] for ev, eo, s, e in sorted(
                placed, key=lambda x: x[2]) if (ev, eo) == (v, o)]
    assert n_with >= 25


def _probe_data(root: Path, split: str, K: int):
    """Per-clip design rows and 'inside a window of the query' labels. The query is represented by the one-hot of
    its verb and object concepts (parsed from its words), the clip by its features (K = 0) or by its features and the
    mean features of its +-K neighbourhood (zero padded); the row is their outer product, so a linear model on it is
    a per-concept linear read-out of the clip."""
    X, Y, G = [], [], []
    nv, no = len(VERBS), len(OBJECTS)
    for r in _rows(root, split):
        with np.load(root / "video" / f"{r['vid']}.npz") as z:
            v = z["features"].astype(np.float64)
        words = r["query"].split()
        q = np.zeros(nv + no + 1)
        q[[_concept_of(w, VERBS) for w in words if _concept_of(w, VERBS) is not None]] = 1.0
        q[[nv + _concept_of(w, OBJECTS) for w in words if _concept_of(w, OBJECTS) is not None]] = 1.0
        q[-1] = 1.0
        T = len(v)
        y = np.zeros(T)
        for st, ed in r["relevant_windows"]:
            y[int(st // CLIP_LEN):int(ed // CLIP_LEN)] = 1.0
        if K == 0:
            ctx = v
        else:
            c = np.cumsum(np.pad(v, ((K + 1, K), (0, 0))), 0)
            ctx = np.concatenate([v, (c[2 * K + 1:] - c[:T]) / (2 * K + 1)], 1)
        ctx = np.append(ctx, np.ones((T, 1)), 1)
        X.append((ctx[:, :, None] * q[None, None, :]).reshape(T, -1))
        Y.append(y)
        G.append(np.full(T, len(G)))
    return np.concatenate(X), np.concatenate(Y), np.concatenate(G)


def _auc(score, pos):
    """ROC AUC by the rank-sum formula (scores are continuous, ties have probability 0)."""
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(1, len(score) + 1)
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@pytest.mark.slow
def test_temporal_context_is_needed(tmp_path):
    """A ridge probe on a clip's features ranks the clips of a video by 'inside the query's window' worse than the
    same probe that also sees the mean features of the clip and its two neighbours (mean per-query ROC AUC on val).
    The query is given by its parsed verb / object concepts, so this measures the video side only."""
    root = generate_grounding_benchmark(tmp_path / "probe", num_train=400, num_val=100, min_clips=30, max_clips=80,
                                        video_dim=24, text_dim=12, seed=3)
    res = {}
    for K in (0, 1):
        Xtr, Ytr, _ = _probe_data(root, "train", K)
        Xva, Yva, Gva = _probe_data(root, "val", K)
        lam = len(Ytr) / 100
        w = np.linalg.solve(Xtr.T @ Xtr + lam * np.eye(Xtr.shape[1]), Xtr.T @ (2 * Ytr - 1))
        score = Xva @ w
        aucs = [_auc(score[Gva == g], Yva[Gva == g] > 0.5) for g in np.unique(Gva)
                if 0 < Yva[Gva == g].sum() < (Gva == g).sum()]
        res[K] = float(np.mean(aucs))
    assert res[0] > 0.75, res  # the per-clip probe learns something (the task is not noise) ...
    assert res[1] > res[0] + 0.01, res  # ... but temporal context helps clearly
