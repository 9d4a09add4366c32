"""Long-context grounding: does a model read beyond a window? HieraMamba (whole videos) vs its transformer twin in
128-clip windows vs a per-clip model vs MLVTG (whole videos), on :mod:`vidmamba.data.synthetic_long_context`.

Data and recipe: ``configs/hieramamba_long_context.yaml`` ("the first time X after Y", "the last time X before Y",
"the second / third time X"; every copy of X and the context >= W + e clips apart, W = 128; val videos at
context-to-answer gaps of 1, 4, 16 and 64 windows; ``ceiling.json`` beside the data: the windowed ceiling E[1/K] and
a position-aware ceiling). Every model gets the same data, epochs, batch, optimiser and seeds; the last epoch's EMA
weights are scored (no selection on val). Per model (:data:`VARIANTS`, :func:`stages`):

* ``hieramamba``: a short-to-long curriculum (``--curriculum LEN:EPOCHS ...``, default ``128:2``): each stage
  trains that many epochs on windows of LEN clips that keep the truth (128-clip windows with :data:`SHORT`'s batch,
  longer ones with the config's; a window keeps each query's context too where both fit, which 128 clips never
  do), each from the last stage's weights, then the rest of ``train.epochs`` on whole videos; scored on whole videos;
* ``hieramamba-transformer``: every epoch on the 128-clip windows, scored in half-overlapping 128-clip windows
  merged by NMS (a model that reads 128 clips);
* ``mlvtg-perclip``: MLVTG's heads on each clip alone (no temporal context), trained and scored like the twin;
* ``mlvtg``: MLVTG as it is in ``vidmamba.models``, the curriculum of HieraMamba, scored on whole videos.

Scores: R1@0.5 (percent) on val per gap and per query kind; for the whole-video models also on the counterfactual
split ``val_cf`` (the same videos with each query's context edited so that another copy of X is the answer; a
windowed model's windows without the edit answer as before) and the flip rate = the fraction of queries answered
right on both the original and the counterfactual video (a model that ignores the context cannot do both: only the
context differs); ``any_copy``: the top-1 hits some copy of X (finding X, without the context); ``stay``: the
counterfactual top-1 lies where the original's did (the answer did not move with the context); ``misled``: on the
queries whose position rule (ceiling.json) misses the answer, how often the top-1 takes the rule's pick instead (a
model that answers a place) and how often the answer. Baselines without training, on the same files: ``random`` (a
span of an event's length at a uniform place), ``position-only`` (the training answers' most frequent place in the
video, ignoring the query) and ``text-only`` (the same per query kind, read from the query text).

    python benchmarks/long_context.py                                  # every model, seed 0
    python benchmarks/long_context.py --models hieramamba --seeds 0 1 2 --out /tmp/h.json
    python benchmarks/long_context.py --merge /tmp/h.json /tmp/t.json  # one results file + the figure
    python benchmarks/long_context.py --render benchmarks/results_long_context.json
    python benchmarks/long_context.py --rescore /tmp/h.json --runs RUNS --out /tmp/h2.json  # scored again from
                                                                       # the predictions saved under RUNS
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vidmamba.config import apply_overrides, load_config  # noqa: E402
from vidmamba.data.snag import read_snag_json  # noqa: E402
from vidmamba.data.synthetic import CLIP_LEN  # noqa: E402
from vidmamba.metrics.moment_retrieval import top1_ious  # noqa: E402
from vidmamba.engine.checkpoint import load_weights  # noqa: E402
from vidmamba.tasks import get_task  # noqa: E402
from vidmamba.tasks.long_grounding import NLQTask  # noqa: E402
from vidmamba.utils import atomic_write_bytes, atomic_write_text  # noqa: E402

CONFIG = REPO / "configs" / "hieramamba_long_context.yaml"
DEFAULT_OUT = REPO / "benchmarks" / "results_long_context.json"
NLQ = get_task("nlq")


class _Stage(NLQTask):
    """The nlq task as trained here: no val pass during training (the last epoch is scored once, on val and val_cf,
    by :func:`run_model`), and optionally the (EMA) weights of an earlier stage as the start (the curriculum)."""

    def __init__(self, init: Path | None = None):
        super().__init__("nlq", "avg")
        self.init = init

    def has_split(self, data: dict, split: str) -> bool:
        return split != "val"

    def build_model(self, config: dict):
        model = super().build_model(config)
        if self.init is not None:
            load_weights(self.init, model, use_ema=True)
        return model


WINDOW = 128
# the first stage of the curriculum, and all the training of the windowed models: 128-clip windows that keep the
# truth, several queries per window (the recipe of configs/hieramamba_synthetic_long.yaml)
SHORT = {"data": {"max_clips": WINDOW, "max_queries": 8}, "train": {"batch_size": 4}}
_MLVTG = {"hidden_dim": 32, "num_layers": 2, "d_state": 16, "score_mode": "fg", "w_sal_intra": 0.0,
          "w_sal_inter": 0.0, "max_windows": 10}
# model -> (model section replacing the config's, or None: the config's; scored in windows of WINDOW clips?)
# Windowed models train every epoch on SHORT windows; the others follow --curriculum, then whole videos.
VARIANTS = {
    "hieramamba": (None, False),
    "hieramamba-transformer": ({"name": "hieramamba-transformer"}, True),
    "mlvtg-perclip": ({"name": "mlvtg-perclip", **_MLVTG}, True),
    # MLVTG's long-video options (README "Long videos"): the query enters each clip before the scan, one pass
    "mlvtg": ({"name": "mlvtg", **_MLVTG, "query_fusion": "product", "long_video": "whole"}, False),
}
THRESHOLD = 0.5


def stages(name: str, config: dict, curriculum: list[tuple[int, int]]) -> list[dict]:
    """The training stages of model ``name`` (:data:`VARIANTS`): configs whose epochs sum to ``train.epochs``.
    Whole-video models: one stage per ``(clips, epochs)`` of ``curriculum`` (windows of that many clips keeping the
    truth; :data:`SHORT`'s batch up to ``WINDOW`` clips, the config's beyond), then whole videos for the rest."""
    cfg = json.loads(json.dumps(config))
    model, windowed = VARIANTS[name]
    if model is not None:
        cfg["model"] = ({**cfg["model"], **model} if name.startswith("hieramamba") else dict(model))
    total = cfg["train"]["epochs"]
    short = {"data": {**cfg["data"], **SHORT["data"]}, "train": {**cfg["train"], **SHORT["train"]}}
    if windowed:
        short["data"]["eval_window"] = WINDOW
        return [{**cfg, **short}]
    used = sum(epochs for _, epochs in curriculum)
    if any(clips < 1 or epochs < 1 for clips, epochs in curriculum) or used >= total:
        raise ValueError(f"--curriculum: stages of >= 1 clip and >= 1 epoch whose epochs sum below train.epochs = "
                         f"{total} (the rest trains on whole videos), got {curriculum}")
    out = []
    for clips, epochs in curriculum:
        base = short if clips <= WINDOW else cfg
        out.append({**cfg, "data": {**base["data"], "max_clips": clips},
                    "train": {**base["train"], "epochs": epochs}})
    return out + [{**cfg, "train": {**cfg["train"], "epochs": total - used}}]


def hits(rows: list[dict], truth: dict[str, list]) -> dict[str, bool]:
    """Per query id: the top-1 window's IoU with one of the query's ``truth`` windows (seconds) >= 0.5."""
    qids = [r["qid"] for r in rows]
    ious = top1_ious([r["pred_relevant_windows"] or [[0.0, 0.0, 0.0]] for r in rows], [truth[q] for q in qids])
    return {q: bool(v >= THRESHOLD) for q, v in zip(qids, ious)}


def truths(ceiling: dict) -> dict[str, dict[str, list]]:
    """Per split ("val", "val_cf", "any": every copy of X, "position": the copies the position rule ranks first,
    when ceiling.json names them) the windows (seconds) a query's top-1 must hit."""
    sec = lambda w: [CLIP_LEN * w[0], CLIP_LEN * w[1]]  # noqa: E731
    qs = ceiling["queries"]
    out = {"val": {f"qid{q['qid']}": [sec(q["candidates"][q["answer"]])] for q in qs},
           "val_cf": {f"qid{q['cf_qid']}": [sec(q["candidates"][q["cf_answer"]])] for q in qs},
           "any": {f"qid{q['qid']}": [sec(c) for c in q["candidates"]] for q in qs}}
    if all("position_best" in q for q in qs):
        out["position"] = {f"qid{q['qid']}": [sec(q["candidates"][i]) for i in q["position_best"]] for q in qs}
    return out


def score(ceiling: dict, val: dict[str, bool], cf: dict[str, bool] | None, any_copy: dict[str, bool],
          stay: dict[str, bool] | None = None, on_position: dict[str, bool] | None = None) -> dict:
    """Percent of queries: R1@0.5 overall, per gap, per kind and per gap x kind; R1@0.5 on the counterfactual
    split and the flip rate (None without ``cf``); ``any_copy``: the top-1 hits some copy of X (localisation
    without the context); ``stay``: the counterfactual top-1 hits the original top-1 (the answer did not move);
    ``misled``: over the queries whose position rule (ceiling.json ``position_best``) misses the answer, the top-1
    on a copy the rule ranks first (``follows``; ``chance`` for a uniform pick among the copies) or on the answer
    (``right``)."""
    def pct(sel, fn):
        if fn is None or not sel:
            return None
        return round(100.0 * float(np.mean([fn(q) for q in sel])), 2)

    qs = ceiling["queries"]
    orig = lambda q: val[f"qid{q['qid']}"]  # noqa: E731
    flip = (lambda q: val[f"qid{q['qid']}"] and cf[f"qid{q['cf_qid']}"]) if cf else None  # noqa: E731
    on_cf = (lambda q: cf[f"qid{q['cf_qid']}"]) if cf else None  # noqa: E731
    copy = lambda q: any_copy[f"qid{q['qid']}"]  # noqa: E731
    stays = (lambda q: stay[f"qid{q['cf_qid']}"]) if stay else None  # noqa: E731
    out = {"R1@0.5": pct(qs, orig), "cf_R1@0.5": pct(qs, on_cf), "flip": pct(qs, flip), "any_copy": pct(qs, copy),
           "stay": pct(qs, stays), "misled": None}
    if on_position is not None:
        wrong = [q for q in qs if q["answer"] not in q["position_best"]]
        out["misled"] = {"queries": len(wrong), "follows": pct(wrong, lambda q: on_position[f"qid{q['qid']}"]),
                         "right": pct(wrong, orig),
                         "chance": pct(wrong, lambda q: len(q["position_best"]) / len(q["candidates"]))}
    gaps = sorted({q["gap"] for q in qs})
    kinds = sorted({q["kind"] for q in qs})
    out["by_gap"] = {str(g): {"R1@0.5": pct([q for q in qs if q["gap"] == g], orig),
                              "flip": pct([q for q in qs if q["gap"] == g], flip),
                              "any_copy": pct([q for q in qs if q["gap"] == g], copy)} for g in gaps}
    out["by_kind"] = {k: {"R1@0.5": pct([q for q in qs if q["kind"] == k], orig),
                          "flip": pct([q for q in qs if q["kind"] == k], flip)} for k in kinds}
    out["by_gap_kind"] = {f"{g}/{k}": pct([q for q in qs if q["gap"] == g and q["kind"] == k], orig)
                          for g in gaps for k in kinds}
    return out


def scored_predictions(ceiling: dict, preds: dict[str, list[dict]]) -> dict:
    """:func:`score` of a model's prediction rows (``{"val": rows, "val_cf": rows}``, val_cf absent for a windowed
    model); ``misled`` needs ceiling.json's ``position_best``."""
    truth = truths(ceiling)
    val, any_copy = hits(preds["val"], truth["val"]), hits(preds["val"], truth["any"])
    cf = stay = on_position = None
    if "val_cf" in preds:
        cf = hits(preds["val_cf"], truth["val_cf"])
        top1 = {r["qid"]: (r["pred_relevant_windows"] or [[0.0, 0.0]])[0][:2] for r in preds["val"]}
        stay = hits(preds["val_cf"], {f"qid{q['cf_qid']}": [top1[f"qid{q['qid']}"]] for q in ceiling["queries"]})
    if "position" in truth:
        on_position = hits(preds["val"], truth["position"])
    return score(ceiling, val, cf, any_copy, stay, on_position)


def read_predictions(eval_dir: Path, windowed: bool) -> dict[str, list[dict]]:
    """The prediction rows an evaluation wrote into ``eval_dir`` (``<split>_preds.jsonl``; val, and val_cf unless
    ``windowed``)."""
    splits = ("val",) if windowed else ("val", "val_cf")
    return {s: [json.loads(line) for line in (eval_dir / f"{s}_preds.jsonl").read_text().splitlines()]
            for s in splits}


def run_model(name: str, config: dict, runs: Path, seed: int, ceiling: dict,
              curriculum: list[tuple[int, int]]) -> dict:
    """Train ``name`` with ``seed`` (its :func:`stages`, each from the last's weights) and score the last epoch on
    val and, for whole-video models, on val_cf (a windowed model's windows without the edit answer the same)."""
    started, init, train_s, steps = time.perf_counter(), None, 0.0, 0
    for i, cfg in enumerate(stages(name, config, curriculum)):
        run_dir = runs / f"{name}-s{seed}-stage{i}"
        cfg["train"].update(out_dir=str(run_dir), progress=False, tensorboard=False, seed=seed)
        summary = _Stage(init).train(cfg)
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        train_s += sum(r["time_s"] for r in log if r["split"] == "train")
        steps += summary["step"]
        init = run_dir / "last"
    window = cfg["data"].get("eval_window")
    started_eval = time.perf_counter()
    splits = ("val",) if window else ("val", "val_cf")
    preds = {split: NLQ.evaluate(init, init.parent / "eval", split=split, data={"eval_window": window})[1]
             for split in splits}
    model, _ = NLQ.load_trained(init)
    return {"model": name, "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "scores": scored_predictions(ceiling, preds), "final_train_loss": summary["train"]["loss"],
            "steps": steps, "curriculum": [] if window else curriculum, "train_s": round(train_s, 1),
            "eval_s": round(time.perf_counter() - started_eval, 1),
            "total_s": round(time.perf_counter() - started, 1), "eval_window": window, "loadavg": os.getloadavg()}


def with_generator(config: dict, synthetic: dict) -> dict:
    """``config`` with ``data.synthetic`` replaced (the generator settings a results file records)."""
    return {**config, "data": {**config["data"], "synthetic": synthetic}}


def benchmark_root(config: dict) -> Path:
    """The folder of the config's benchmark (generated when not cached)."""
    return Path(NLQ.data_options(dict(config["data"]))["annotations"]).parent


# ------------------------------------------------------------------------------------------------------ baselines
def baselines(root: Path, ceiling: dict, draws: int = 20) -> list[dict]:
    """random / position-only / text-only top-1 spans, scored like the models (mean of ``draws`` for random)."""
    ann = root / "annotations.json"
    train = read_snag_json(ann, "train")
    truth = truths(ceiling)
    kind_of = {f"qid{q['qid']}": q["kind"] for q in ceiling["queries"]}
    kind_of.update({f"qid{q['cf_qid']}": q["kind"] for q in ceiling["queries"]})
    durations = {q.text_id: v.duration for split in ("val", "val_cf") for v in read_snag_json(ann, split)
                 for q in v.queries}
    length = float(np.median([q.segment[1] - q.segment[0] for v in train for q in v.queries]))
    bins = 20

    def best_place(sel):  # the centre of the most frequent bin of the answers' relative centres
        centres = [(q.segment[0] + q.segment[1]) / 2 / v.duration for v, q in sel]
        counts = np.bincount(np.minimum((np.asarray(centres) * bins).astype(int), bins - 1), minlength=bins)
        return (np.argmax(counts) + 0.5) / bins

    pairs = [(v, q) for v in train for q in v.queries]
    anywhere = best_place(pairs)
    per_kind = {k: best_place([(v, q) for v, q in pairs if _kind(q.sentence) == k]) for k in set(kind_of.values())}

    def at(place):
        return lambda qid: [[place(qid) * durations[qid] - length / 2, place(qid) * durations[qid] + length / 2, 1.0]]

    def scored(fn):
        rows = {s: [{"qid": q, "pred_relevant_windows": fn(q)} for q in truth[s]] for s in ("val", "val_cf")}
        return score(ceiling, *(hits(rows[s], truth[t]) for s, t in (("val", "val"), ("val_cf", "val_cf"),
                                                                     ("val", "any"))))

    out = [{"model": name, "seed": None, "scores": scored(fn)} for name, fn in (
        ("position-only", at(lambda q: anywhere)), ("text-only", at(lambda q: per_kind[kind_of[q]])))]
    draws_scores = []
    for d in range(draws):
        rng = np.random.default_rng(d)
        draws_scores.append(scored(at(lambda q: rng.uniform(0, 1))))
    out.append({"model": "random", "seed": None, "draws": draws, "scores": _mean_scores(draws_scores)})
    return out


def _kind(sentence: str) -> str:
    """The query kind named by a query's words."""
    words = sentence.split()
    if words[1] in ("second", "third"):
        return words[1]
    return "first_after" if words[1] == "first" else "last_before"


def _mean_scores(scores: list[dict]):
    """The element-wise mean of nested score dicts (None stays None)."""
    first = scores[0]
    if isinstance(first, dict):
        return {k: _mean_scores([s[k] for s in scores]) for k in first}
    return None if first is None else round(float(np.mean(scores)), 2)


# ---------------------------------------------------------------------------------------------------- summarising
def summarise(rows: list[dict], ceiling: dict) -> dict:
    """Per model: R1@0.5 and flip rate overall and per gap, stay and misled, mean and sample std over seeds
    (percent); the ceilings."""
    out = {"ceiling": {"windowed": round(100 * ceiling["overall"]["windowed"], 2),
                       "position": round(100 * ceiling["overall"]["position"], 2),
                       "by_gap": {g: {"windowed": round(100 * c["windowed"], 2),
                                      "position": round(100 * c["position"], 2),
                                      "position_mc": round(100 * c["position_mc"], 2)}
                                  for g, c in ceiling["by_gap"].items()}},
           "models": {}}
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]

        def ms(get):
            v = [get(r["scores"]) for r in rs]
            if any(x is None for x in v):
                return None
            return [round(float(np.mean(v)), 2), round(float(np.std(v, ddof=1)), 2) if len(v) > 1 else 0.0]

        out["models"][name] = {
            "seeds": [r["seed"] for r in rs], "R1@0.5": ms(lambda s: s["R1@0.5"]),
            "cf_R1@0.5": ms(lambda s: s["cf_R1@0.5"]), "flip": ms(lambda s: s["flip"]),
            "any_copy": ms(lambda s: s["any_copy"]), "stay": ms(lambda s: s.get("stay")),
            "misled": {k: ms(lambda s: (s.get("misled") or {}).get(k)) for k in ("follows", "right", "chance")},
            "by_gap": {g: {k: ms(lambda s: s["by_gap"][g][k]) for k in ("R1@0.5", "flip", "any_copy")}
                       for g in rs[0]["scores"]["by_gap"]},
            "by_kind": {k: ms(lambda s: s["by_kind"][k]["R1@0.5"]) for k in rs[0]["scores"]["by_kind"]}}
    return out


def goals(summary: dict) -> dict:
    """The benchmark's three checks, from the summary (percent)."""
    c, m = summary["ceiling"], summary["models"]
    out = {}
    if "hieramamba-transformer" in m:
        mean, std = m["hieramamba-transformer"]["R1@0.5"]
        out["windowed twin within 2 std of the windowed ceiling"] = abs(mean - c["windowed"]) <= 2 * std
    mamba = [k for k in ("hieramamba", "mlvtg") if k in m]
    if mamba:
        best = max(mamba, key=lambda k: m[k]["R1@0.5"][0])
        g4, g16 = m[best]["by_gap"].get("4"), m[best]["by_gap"].get("16")
        out["best Mamba model"] = best
        if g4:
            out["R1@0.5 at gap 4W >= 2x the windowed ceiling"] = g4["R1@0.5"][0] >= 2 * c["by_gap"]["4"]["windowed"]
        if g16:
            out["R1@0.5 at gap 16W > windowed ceiling + 2 std"] = (g16["R1@0.5"][0] > c["by_gap"]["16"]["windowed"]
                                                                   + 2 * g16["R1@0.5"][1])
        out["flip rate >= 0.8x R1@0.5 (> 0)"] = 0 < 0.8 * m[best]["R1@0.5"][0] <= m[best]["flip"][0]
    return out


def render(result: dict) -> str:
    """Markdown table: R1@0.5 per gap (mean ± std over seeds), overall, counterfactual, flip rate, top-1 on some
    copy, the answer staying on the counterfactual, and where the position rule misleads: the top-1 on its pick /
    right (a uniform pick's chance of the first)."""
    s = result["summary"]
    gaps = list(s["ceiling"]["by_gap"])
    head = ("| model | seeds | " + " | ".join(f"gap {g}W" for g in gaps)
            + " | all | counterfactual | flip rate | top-1 on some copy of X | stays on the counterfactual "
              "| position misleads: follows / right (chance) |")
    lines = [head, "|---|---:|" + "---:|" * (len(gaps) + 6)]
    for name, g in s["models"].items():
        one = len(g["seeds"]) == 1  # no spread to show
        fmt = lambda v: "-" if v is None else f"{v[0]:.1f}" if one else f"{v[0]:.1f} ± {v[1]:.1f}"  # noqa: E731
        misled = g.get("misled") or {}
        led = ("-" if misled.get("follows") is None else
               f"{misled['follows'][0]:.1f} / {misled['right'][0]:.1f} ({misled['chance'][0]:.1f})")
        lines.append(f"| {name} | {len(g['seeds'])} | " + " | ".join(fmt(g["by_gap"][k]["R1@0.5"]) for k in gaps)
                     + f" | {fmt(g['R1@0.5'])} | {fmt(g['cf_R1@0.5'])} | {fmt(g['flip'])} | {fmt(g['any_copy'])} "
                       f"| {fmt(g.get('stay'))} | {led} |")
    for r in result["baselines"]:
        sc = r["scores"]
        lines.append(f"| {r['model']} | - | " + " | ".join(f"{sc['by_gap'][k]['R1@0.5']:.1f}" for k in gaps)
                     + f" | {sc['R1@0.5']:.1f} | {sc['cf_R1@0.5']:.1f} | {sc['flip']:.1f} | {sc['any_copy']:.1f} "
                       "| - | - |")
    for key, label in (("windowed", "windowed ceiling E[1/K]"), ("position", "position-aware ceiling")):
        lines.append(f"| {label} | - | " + " | ".join(f"{s['ceiling']['by_gap'][k][key]:.1f}" for k in gaps)
                     + f" | {s['ceiling'][key]:.1f} | - | - | - | - | - |")
    lines += ["", "Goals: " + json.dumps(result.get("goals", {}))]
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    """R1@0.5 against the context-to-answer distance per model (mean ± std over seeds), the ceilings drawn."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    gaps = list(s["ceiling"]["by_gap"])
    x = [int(g) for g in gaps]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, g in s["models"].items():
        mean = [g["by_gap"][k]["R1@0.5"][0] for k in gaps]
        std = [g["by_gap"][k]["R1@0.5"][1] for k in gaps]
        ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=f"{name} ({len(g['seeds'])} seeds)")
    ax.plot(x, [s["ceiling"]["by_gap"][k]["windowed"] for k in gaps], "k--", label="windowed ceiling E[1/K]")
    ax.plot(x, [s["ceiling"]["by_gap"][k]["position"] for k in gaps], ":", color="gray",
            label="position-aware ceiling")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"{g}W" for g in gaps])
    ax.set_xlabel(f"context-to-answer distance (W = {WINDOW} clips)")
    ax.set_ylabel("R1@0.5 (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title("Long-context grounding: accuracy vs context distance")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def finish(result: dict, out: Path, quiet: bool = False) -> None:
    """Summary and goals into ``result``; write it to ``out`` and its figure beside it (``long_context.png`` for the
    default ``out``); print the table unless ``quiet``."""
    result["summary"] = summarise(result["rows"], result["ceiling_file"])
    result["goals"] = goals(result["summary"])
    stored = {k: v for k, v in result.items() if k != "ceiling_file"}
    atomic_write_text(out, json.dumps(stored, indent=2) + "\n")
    figure(result, out.with_name("long_context.png") if out.resolve() == DEFAULT_OUT else out.with_suffix(".png"))
    if not quiet:
        print(render(result))


def read_results(path: Path) -> dict:
    """A results file of this script (ValueError naming the file when it is not one)."""
    part = json.loads(path.read_text())
    missing = [k for k in ("synthetic", "data_sizes", "rows", "baselines") if k not in part]
    if missing:
        raise ValueError(f"{path}: not a results file of this script (no {missing[0]!r})")
    return part


def merge(files: list[Path]) -> dict:
    """One result from several runs of this script on the same benchmark data (generator settings and split
    sizes): all model rows, the first's baselines; ``runs`` keeps each run's command, machine, config and overrides
    (a run's overrides may set what a later config file holds)."""
    parts = [read_results(f) for f in files]
    for key in ("synthetic", "data_sizes"):
        if any(p[key] != parts[0][key] for p in parts):
            raise ValueError(f"cannot merge results of different benchmark data: {key!r} differs")
    result = {k: v for k, v in parts[0].items() if k not in ("rows", "summary", "goals", "runs", "command",
                                                              "machine", "config", "overrides", "rescore_command")}
    result["runs"] = []
    for p in parts:
        setting = {k: p[k] for k in ("config", "overrides") if k in p}           # a merged file's runs hold theirs
        runs = p["runs"] if "runs" in p else [{k: p[k] for k in ("command", "machine", "rescore_command") if k in p}]
        result["runs"] += [{**setting, **r} for r in runs]
    result["rows"] = [r for p in parts for r in p["rows"]]
    return result


def rescore(result: dict, ceiling: dict, sizes: dict, runs: Path | None) -> None:
    """Replace the scores of ``result``'s rows by :func:`scored_predictions` of the predictions their last stage
    saved under ``runs`` (``<model>-s<seed>-stage<i>/eval``), scored against ``ceiling`` of the same data."""
    if runs is None:
        raise ValueError("--rescore needs --runs: the folder the results file's runs wrote")
    if result["data_sizes"] != sizes:
        raise ValueError("--rescore: the results file's benchmark data differ from this generator's (data_sizes)")
    for row in result["rows"]:
        stage_dirs = sorted(runs.glob(f"{row['model']}-s{row['seed']}-stage*/eval"),
                            key=lambda d: int(d.parent.name.rsplit("stage", 1)[1]))
        if not stage_dirs:
            raise ValueError(f"--rescore: no {row['model']}-s{row['seed']}-stage*/eval under {runs}")
        windowed = row.get("eval_window") is not None
        row["scores"] = scored_predictions(ceiling, read_predictions(stage_dirs[-1], windowed))


def _stage_arg(text: str) -> tuple[int, int]:
    """``CLIPS:EPOCHS`` -> (clips, epochs)."""
    try:
        clips, epochs = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CLIPS:EPOCHS (two integers), got {text!r}") from None
    return clips, epochs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE", help="config overrides (YAML values)")
    ap.add_argument("--curriculum", nargs="+", type=_stage_arg, default=[(WINDOW, 2)], metavar="CLIPS:EPOCHS",
                    help="the whole-video models' first stages: EPOCHS epochs on windows of CLIPS clips that keep "
                    "the truth (and the query's context where both fit), in order; the rest of train.epochs on whole "
                    "videos (default 128:2)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads")
    ap.add_argument("--runs", type=Path, help="folder for the checkpoints (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    done = ap.add_mutually_exclusive_group()  # instead of training: results files already made
    done.add_argument("--merge", nargs="+", type=Path, metavar="RESULTS_JSON", help="merge results files into --out")
    done.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="print the table of a results file")
    done.add_argument("--rescore", type=Path, metavar="RESULTS_JSON",
                    help="score a results file's runs again from the predictions they saved under --runs into --out")
    args = ap.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    config = apply_overrides(load_config(CONFIG), args.set)
    try:                          # a bad --merge file, generator setting or --curriculum: one line, before training
        result = (merge(args.merge) if args.merge else read_results(args.rescore) if args.rescore
                  else None)
        if result is not None:    # earlier runs are scored against the data they ran on, not this call's config
            config = with_generator(config, result["synthetic"])
        root = benchmark_root(config)
        ceiling = json.loads((root / "ceiling.json").read_text())
        for name in args.models:
            stages(name, config, args.curriculum)
        if args.rescore:
            rescore(result, ceiling, json.loads((root / "meta.json").read_text())["sizes"], args.runs)
    except (OSError, ValueError) as err:
        raise SystemExit(f"long_context.py: {err}")
    if result is not None:
        if args.rescore:
            result["rescore_command"] = "python benchmarks/long_context.py " + " ".join(
                argv if argv is not None else sys.argv[1:])
        result["ceiling_file"] = ceiling
        finish(result, args.out)
        return 0
    meta = json.loads((root / "meta.json").read_text())
    result = {"command": "python benchmarks/long_context.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                          "torch": torch.__version__, "loadavg_start": os.getloadavg()},
              "config": str(CONFIG.relative_to(REPO)), "overrides": args.set,
              "synthetic": config["data"]["synthetic"], "train": config["train"], "data_sizes": meta["sizes"],
              "variants": {m: VARIANTS[m] for m in args.models}, "short_stage": SHORT,
              "curriculum": args.curriculum, "rows": [],
              "baselines": baselines(root, ceiling), "ceiling_file": ceiling}
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        for seed in args.seeds:
            for name in args.models:
                row = run_model(name, config, runs, seed, ceiling, args.curriculum)
                result["rows"].append(row)
                print(json.dumps({k: row[k] for k in ("model", "seed", "train_s", "eval_s")}
                                 | {"R1@0.5": row["scores"]["R1@0.5"], "flip": row["scores"]["flip"],
                                    "by_gap": {g: v["R1@0.5"] for g, v in row["scores"]["by_gap"].items()}}),
                      file=sys.stderr, flush=True)
                result["machine"]["loadavg_end"] = os.getloadavg()
                finish(result, args.out, quiet=True)  # what is measured so far, kept if the run is stopped
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
