"""Action-recognition / anticipation metrics (EPIC-KITCHENS-100 style), numpy only.

Ranking convention everywhere: classes are ranked by descending score, ties broken by the lower class index
(a stable sort), so results never depend on the platform's sort.

Action (verb, noun) top-k is defined in one of two ways (``action_mode``):

``"outer"`` (default, the EK100 convention)
    action scores are the outer product ``softmax(verb) x softmax(noun)`` (or of the given probabilities when
    ``logits=False``); the top-k (verb, noun) pairs of that product are the action predictions (ties: lower
    ``verb * n_nouns + noun`` first). Top-1 is then "both top-1 correct".
``"both_in_topk"`` (SlowFast ``multitask_topks_correct``, used by MambaVL)
    an action is correct at k when the verb label is in the verb top-k **and** the noun label in the noun top-k.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vidmamba.metrics.common import round_percent

__all__ = [
    "softmax",
    "topk_indices",
    "topk_hits",
    "topk_accuracy",
    "action_topk_pairs",
    "action_topk_hits",
    "mean_class_recall",
    "mean_topk_recall",
    "ek100_metrics",
]

ACTION_MODES = ("outer", "both_in_topk")


def softmax(x, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _check_scores(scores, labels=None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or Inf")
    if labels is None:
        return scores, None
    labels = np.asarray(labels)
    if labels.shape != (len(scores),) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be ({len(scores)},) integers, got shape {labels.shape} dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]})")
    return scores, labels


def topk_indices(scores, k: int) -> np.ndarray:
    """``(N, min(k, C))`` class indices by descending score (ties: lower index first)."""
    scores, _ = _check_scores(scores)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def topk_hits(scores, labels, k: int) -> np.ndarray:
    """``(N,)`` bool: the label is among the top-k classes."""
    scores, labels = _check_scores(scores, labels)
    return np.any(topk_indices(scores, k) == labels[:, None], axis=1)


def topk_accuracy(scores, labels, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """``{k: fraction of samples whose label is in the top-k}``."""
    return {k: float(np.mean(topk_hits(scores, labels, k))) for k in ks}


def action_topk_pairs(verb_scores, noun_scores, k: int, logits: bool = True) -> np.ndarray:
    """``(N, k, 2)`` top-k (verb, noun) pairs of the outer product of verb and noun probabilities.

    The top-k pairs of a product of non-negative factors always lie within (top-k verbs) x (top-k nouns), so only
    those k*k candidates are scored (exact, and cheap for 97 x 300 classes).
    """
    pv, _ = _check_scores(verb_scores)
    pn, _ = _check_scores(noun_scores)
    if len(pv) != len(pn):
        raise ValueError(f"{len(pv)} verb rows but {len(pn)} noun rows")
    if logits:
        pv, pn = softmax(pv), softmax(pn)
    elif pv.min(initial=0) < 0 or pn.min(initial=0) < 0:
        raise ValueError("with logits=False the scores must be non-negative probabilities")
    tv, tn = topk_indices(pv, k), topk_indices(pn, k)
    rows = np.arange(len(pv))[:, None]
    prod = (pv[rows, tv][:, :, None] * pn[rows, tn][:, None, :]).reshape(len(pv), -1)
    cand_v = np.repeat(tv, tn.shape[1], axis=1)
    cand_n = np.tile(tn, (1, tv.shape[1]))
    flat = cand_v * pn.shape[1] + cand_n
    order = np.lexsort((flat, -prod), axis=1)[:, :k]
    return np.stack([np.take_along_axis(cand_v, order, 1), np.take_along_axis(cand_n, order, 1)], axis=-1)


def action_topk_hits(verb_scores, noun_scores, verb_labels, noun_labels, k: int, mode: str = "outer",
                     logits: bool = True) -> np.ndarray:
    """``(N,)`` bool: the (verb, noun) action is correct at k under ``mode`` (see the module docstring)."""
    _, verb_labels = _check_scores(verb_scores, verb_labels)
    _, noun_labels = _check_scores(noun_scores, noun_labels)
    if mode == "outer":
        pairs = action_topk_pairs(verb_scores, noun_scores, k, logits=logits)
        return np.any((pairs[..., 0] == verb_labels[:, None]) & (pairs[..., 1] == noun_labels[:, None]), axis=1)
    if mode == "both_in_topk":
        return topk_hits(verb_scores, verb_labels, k) & topk_hits(noun_scores, noun_labels, k)
    raise ValueError(f"unknown action mode {mode!r}; expected one of {ACTION_MODES}")


def mean_class_recall(hits, labels) -> float:
    """Class-averaged recall: the mean over the classes **present in** ``labels`` of the hit rate of their samples.

    ``labels`` may be ``(N,)`` class ids or ``(N, d)`` tuples (e.g. (verb, noun) for actions).
    """
    hits = np.asarray(hits, dtype=np.float64)
    labels = np.asarray(labels)
    if len(hits) == 0:
        return float("nan")
    _, inverse = np.unique(labels.reshape(len(labels), -1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    per_class = np.bincount(inverse, weights=hits) / np.bincount(inverse)
    return float(np.mean(per_class))


def mean_topk_recall(scores, labels, k: int = 5) -> float:
    """Mean top-k recall (EK100 anticipation, "MT5R" for k=5) over the classes present in ``labels``."""
    return mean_class_recall(topk_hits(scores, labels, k), labels)


def ek100_metrics(verb_scores, noun_scores, verb_labels, noun_labels, ks: Sequence[int] = (1, 5),
                  recall_k: int = 5, action_mode: str = "outer", logits: bool = True) -> dict:
    """Top-k accuracy and mean top-``recall_k`` recall for verb, noun and action, in percent (2 decimals).

    Returns ``{"verb": {"top1": .., "top5": .., "mean_top5_recall": ..}, "noun": {...}, "action": {...}}``.
    Action mean recall is over the (verb, noun) pairs present in the labels.
    """
    out = {}
    for name, scores, labels in (("verb", verb_scores, verb_labels), ("noun", noun_scores, noun_labels)):
        res = {f"top{k}": round_percent(np.mean(topk_hits(scores, labels, k))) for k in ks}
        res[f"mean_top{recall_k}_recall"] = round_percent(mean_topk_recall(scores, labels, recall_k))
        out[name] = res
    act = {}
    for k in ks:
        hits = action_topk_hits(verb_scores, noun_scores, verb_labels, noun_labels, k, action_mode, logits)
        act[f"top{k}"] = round_percent(np.mean(hits))
    hits = action_topk_hits(verb_scores, noun_scores, verb_labels, noun_labels, recall_k, action_mode, logits)
    act[f"mean_top{recall_k}_recall"] = round_percent(
        mean_class_recall(hits, np.stack([np.asarray(verb_labels), np.asarray(noun_labels)], axis=1)))
    out["action"] = act
    return out
