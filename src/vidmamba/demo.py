"""The built-in demo (``vidmamba demo``): the synthetic grounding benchmark, three models, the official metrics.

1. Generates (or re-uses from the cache) the seeded synthetic grounding benchmark, written in the QVHighlights
   on-disk format (:mod:`vidmamba.data.synthetic`).
2. Trains MLVTG, its transformer twin and a per-clip no-context baseline on CPU with the same budget, predicts the
   val split and scores it with our implementation of the official QVHighlights evaluation; random predictions are
   scored the same way.
3. Given a data folder (``vidmamba demo --data DIR``, else ``$VIDMAMBA_DATA``) holding ``qvhighlights_eval/`` (the
   Moment-DETR sample predictions, the val annotations and their official metrics), checks that evaluation value for
   value against the official metrics; without one the check is skipped.

Writes ``<out>/results.json`` ({"models": {name: {metric: value}}, "seconds": ...}), ``<out>/figure.png`` and each
model's run folder (checkpoints, metrics log, val predictions).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from vidmamba.data.cache import default_cache_dir
from vidmamba.utils import atomic_write_text

MODELS = {"mlvtg": "MLVTG (Mamba aligner)", "mlvtg-transformer": "transformer twin",
          "mlvtg-perclip": "per-clip, no context"}
# The official metric keys of the table and their column names.
TABLE_METRICS = {"MR-full-R1@0.5": "R1@0.5", "MR-full-R1@0.7": "R1@0.7", "MR-full-mAP": "mAP",
                 "HL-min-VeryGood-mAP": "HL mAP", "HL-min-VeryGood-Hit1": "HL Hit1"}
# One budget for every model: fixed beforehand, never tuned on the val split.
DEMO_MODEL = {"hidden_dim": 64, "num_layers": 2, "input_dropout": 0.1, "drop_path": 0.0}
DEMO_TRAIN = {"epochs": 5, "batch_size": 32, "lr": 2e-3, "weight_decay": 1e-4, "warmup_epochs": 1,
              "schedule": "cosine", "grad_clip": 1.0, "eval_every": 5, "progress": False, "seed": 0,
              "length_pool_batches": 8}


DATA_ENV = "VIDMAMBA_DATA"
OFFICIAL_EVAL_FILES = ("sample_val_preds.jsonl", "highlight_val_release.jsonl", "sample_val_preds_metrics_raw.json")


def official_eval_folder(data_dir: Path | str | None = None) -> Path | None:
    """``<data>/qvhighlights_eval`` for the official-evaluation check, ``data`` being ``data_dir`` (``--data``) or else
    ``$VIDMAMBA_DATA``; None when neither is set (no search anywhere else). A named folder without the three
    :data:`OFFICIAL_EVAL_FILES` there is an error naming what is missing."""
    given = data_dir if data_dir is not None else os.environ.get(DATA_ENV) or None
    if given is None:
        return None
    folder = Path(given) / "qvhighlights_eval"
    missing = [name for name in OFFICIAL_EVAL_FILES if not (folder / name).is_file()]
    if missing:
        from vidmamba.errors import MissingFileError

        source = "--data" if data_dir is not None else f"${DATA_ENV}"
        raise MissingFileError(f"{source} {given}: {folder} lacks {', '.join(missing)} (the official QVHighlights "
                               f"evaluation files; leave {source} unset to skip the check)")
    return folder


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}/") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def golden_qvhighlights(root: Path) -> dict:
    """Evaluate the official sample predictions in ``root`` (:func:`official_eval_folder`) and compare every leaf
    value with the official metrics JSON."""
    from vidmamba.metrics.evaluate import evaluate_prediction_files

    ours = evaluate_prediction_files("qvhighlights", root / "sample_val_preds.jsonl",
                                     root / "highlight_val_release.jsonl")
    official = _flatten(json.loads((root / "sample_val_preds_metrics_raw.json").read_text()))
    mine = _flatten(ours)
    return {"values_checked": len(official), "mismatched": sorted(k for k in official if mine.get(k) != official[k])}


def random_predictions(gt_rows: list[dict], seed: int = 0) -> list[dict]:
    """Random windows (10 per query, uniform in the video) and random saliency: the floor of every metric."""
    rng = np.random.default_rng(seed)
    rows = []
    for gt in gt_rows:
        n_clips = int(round(gt["duration"] / 2))
        ends = np.sort(rng.uniform(0, gt["duration"], size=(10, 2)), axis=1)
        scores = np.sort(rng.uniform(size=10))[::-1]
        rows.append({"qid": gt["qid"], "pred_relevant_windows": [[float(a), float(b), float(s)]
                                                                  for (a, b), s in zip(ends, scores)],
                     "pred_saliency_scores": rng.uniform(size=n_clips).tolist()})
    return rows


def demo_benchmark() -> Path:
    """The demo's synthetic grounding benchmark folder in the cache, generated on first use."""
    from vidmamba.data.synthetic import GENERATOR_VERSION, ensure_grounding_benchmark

    return ensure_grounding_benchmark(default_cache_dir() / f"synthetic_grounding_v{GENERATOR_VERSION}")


def demo_config(bench: Path, name: str, out_dir: Path) -> dict:
    return {"task": "qvhighlights",
            "model": {"name": name, **DEMO_MODEL},
            "data": {"dataset": "qvhighlight", "feature_root": str(bench), "train": str(bench / "train.jsonl"),
                     "val": str(bench / "val.jsonl"), "video_features": ["video"], "text_features": "text"},
            "train": {**DEMO_TRAIN, "out_dir": str(out_dir / name)}}


def plot_examples(path: Path, gt_rows: list[dict], predictions: dict[str, list[dict]], n: int = 4):
    """For ``n`` val videos: ground-truth windows, each model's top-1 window and MLVTG's saliency curve (its y axis,
    min-max scaled to 0..1 per video); writes the PNG atomically and returns the (closed) matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n, 1, figsize=(10, 2.2 * n), squeeze=False)
    by_qid = {name: {r["qid"]: r for r in rows} for name, rows in predictions.items()}
    for ax, gt in zip(axes[:, 0], gt_rows[:n]):
        for st, ed in gt["relevant_windows"]:
            ax.axvspan(st, ed, ymin=0.0, ymax=1.0, color="tab:green", alpha=0.2, label="ground truth")
        for k, name in enumerate(predictions):
            st, ed, _ = by_qid[name][gt["qid"]]["pred_relevant_windows"][0]
            ax.hlines(1.05 + 0.1 * k, st, ed, colors=f"C{k}", linewidth=4, label=f"{MODELS[name]}: top-1")
        sal = np.asarray(by_qid["mlvtg"][gt["qid"]]["pred_saliency_scores"])
        sal = (sal - sal.min()) / (np.ptp(sal) + 1e-9)
        ax.plot(np.arange(len(sal)) * 2 + 1, sal, color="black", linewidth=1, label="MLVTG saliency")
        ax.set_xlim(0, gt["duration"])
        ax.set_ylim(-0.05, 1.1 + 0.1 * len(predictions))
        ax.set_title(f"\"{gt['query']}\"", fontsize=9)
        ax.set_yticks([0, 1])
        ax.set_ylabel("saliency\n(scaled)", fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.suptitle("Synthetic grounding benchmark (val): ground truth, each model's top-1 moment (bars above the curve) "
                 "and MLVTG's per-clip saliency", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=3, fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return fig


def format_table(models: dict[str, dict]) -> str:
    """The demo's table: one row per model ({name: official metrics}), the :data:`TABLE_METRICS` columns, a legend."""
    lines = [f"{'model':<24}" + "".join(f"{label:>9}" for label in TABLE_METRICS.values())]
    lines += [f"{MODELS.get(name, name):<24}" + "".join(f"{brief[m]:>9.2f}" for m in TABLE_METRICS)
              for name, brief in models.items()]
    lines += ["R1@x: the top moment matches a true one at IoU >= x; mAP: mean over IoU 0.5-0.95",
              "HL mAP / Hit1: per-clip saliency, clips rated 'very good' as the positives"]
    return "\n".join(lines)


def run_demo(out_dir: Path, threads: int | None = None, data_dir: Path | str | None = None) -> dict:
    """Run the demo, print the table, write ``out_dir/results.json`` and ``out_dir/figure.png``; returns results.
    ``data_dir``: the folder of the official-evaluation check (:func:`official_eval_folder`)."""
    from vidmamba.tasks import get_task
    from vidmamba.metrics.evaluate import evaluate_predictions
    from vidmamba.metrics.validation import GroundTruthError, read_jsonl

    start = time.perf_counter()
    eval_folder = official_eval_folder(data_dir)          # a wrong folder fails before the minutes of training
    torch.set_num_threads(threads or os.cpu_count() or 1)
    out_dir = Path(out_dir)
    bench = demo_benchmark()
    gt_rows = read_jsonl(bench / "val.jsonl", GroundTruthError)
    # The first optimizer a process builds imports torch._dynamo (1.4-1.8 s of CPU): a cost of the process, not of
    # the first model, so it is paid here, before the models' seconds are counted.
    from torch import _dynamo  # noqa: F401
    print(f"synthetic grounding benchmark: {bench} ({time.perf_counter() - start:.1f} s)")

    results = {"models": {}, "train_seconds": {}, "benchmark": str(bench)}
    predictions = {}
    for name, label in MODELS.items():
        t0 = time.perf_counter()
        config = demo_config(bench, name, out_dir)
        task = get_task(config["task"])
        task.train(config)
        metrics, predictions[name] = task.evaluate(Path(config["train"]["out_dir"]) / "last",
                                                   Path(config["train"]["out_dir"]))
        results["models"][name] = metrics["brief"]
        results["train_seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"  trained + evaluated {label:<24} {results['train_seconds'][name]:6.1f} s")
    results["models"]["random"] = evaluate_predictions("qvhighlights", random_predictions(gt_rows), gt_rows)["brief"]

    print("\nsynthetic grounding benchmark, val split, official QVHighlights metrics (%)\n"
          + format_table(results["models"]))

    if eval_folder is not None:
        golden = golden_qvhighlights(eval_folder)
        results["qvhighlights_official_eval"] = golden
        status = "all equal" if not golden["mismatched"] else f"MISMATCH {golden['mismatched']}"
        print(f"\nofficial QVHighlights evaluation check (Moment-DETR sample predictions): "
              f"{golden['values_checked']} values, {status}")
    try:
        plot_examples(out_dir / "figure.png", gt_rows, predictions)
        results["figure"] = str(out_dir / "figure.png")
    except ImportError:
        print("matplotlib not installed: no figure (pip install 'vidmamba[plot]')")
    results["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=2))
    written = [out_dir / "results.json", *([results["figure"]] if "figure" in results else [])]
    print(f"\nwrote {' and '.join(map(str, written))} ({results['seconds']} s in all)")
    return results
