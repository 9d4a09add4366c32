"""The built-in demo (``vidmamba demo``): real work on what the library has today.

1. Scores the official Moment-DETR sample predictions on QVHighlights val with our own implementation of the official
   evaluation and checks every value against the official metrics file (when ``shared/data`` is present).
2. Checks the fast selective scans against their sequential references and times both on one long sequence.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from vidmamba.utils import atomic_write_text


def find_shared_data() -> Path | None:
    """``$VIDMAMBA_SHARED_DATA`` or the first ``shared/data`` found beside the working directory or this checkout."""
    candidates = [os.environ.get("VIDMAMBA_SHARED_DATA")]
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents[:2], *here.parents[:5]]:
        candidates.append(base / "shared" / "data")
        candidates.append(base.parent / "shared" / "data")
    for cand in candidates:
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def golden_qvhighlights(data_dir: Path) -> dict:
    """Evaluate the official sample predictions and compare every leaf value with the official metrics JSON."""
    from vidmamba.metrics.evaluate import evaluate_prediction_files

    root = data_dir / "qvhighlights_eval"
    start = time.perf_counter()
    ours = evaluate_prediction_files("qvhighlights", root / "sample_val_preds.jsonl",
                                     root / "highlight_val_release.jsonl")
    seconds = time.perf_counter() - start
    official = _flatten(json.loads((root / "sample_val_preds_metrics_raw.json").read_text()))
    mine = _flatten(ours)
    mismatched = sorted(k for k in official if mine.get(k) != official[k])
    return {"brief": ours["brief"], "values_checked": len(official), "mismatched": mismatched,
            "seconds": round(seconds, 2)}


def scan_check(length: int = 4096, d: int = 256, n: int = 16, heads: int = 8, headdim: int = 64,
               d_state: int = 64) -> dict:
    """Fast vs reference scans on one random sequence: max relative error and forward times (seconds)."""
    from vidmamba.ssm import selective_scan, ssd_scan

    gen = torch.Generator().manual_seed(0)
    rnd = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    mamba1 = dict(u=rnd(1, d, length), delta=rnd(1, d, length), A=-torch.rand(d, n, generator=gen) * n,
                  B=rnd(1, n, length), C=rnd(1, n, length), D=rnd(d), delta_softplus=True)
    mamba2 = dict(x=rnd(1, length, heads, headdim), dt=rnd(1, length, heads), A=-torch.rand(heads, generator=gen) * 8,
                  B=rnd(1, length, 1, d_state), C=rnd(1, length, 1, d_state), D=rnd(heads), dt_softplus=True)
    report = {}
    for name, fn, kwargs in [("selective_scan", selective_scan, mamba1), ("ssd_scan", ssd_scan, mamba2)]:
        times, outs = {}, {}
        for impl in ("ref", "fast"):
            with torch.no_grad():
                start = time.perf_counter()
                outs[impl] = fn(**kwargs, impl=impl)
                times[impl] = time.perf_counter() - start
        err = ((outs["fast"] - outs["ref"]).abs().max() / outs["ref"].abs().max()).item()
        report[name] = {"length": length, "ref_s": round(times["ref"], 3), "fast_s": round(times["fast"], 3),
                        "speedup": round(times["ref"] / times["fast"], 1), "max_rel_err": float(f"{err:.2e}")}
    return report


def run_demo(out_dir: Path) -> dict:
    """Run both parts, print a summary, write ``out_dir/results.json`` atomically; returns the results."""
    start = time.perf_counter()
    results = {}
    data_dir = find_shared_data()
    if data_dir is not None and (data_dir / "qvhighlights_eval").is_dir():
        golden = golden_qvhighlights(data_dir)
        results["qvhighlights_official_eval"] = golden
        status = "all match" if not golden["mismatched"] else f"MISMATCH: {golden['mismatched']}"
        print(f"QVHighlights val, official Moment-DETR sample predictions ({golden['values_checked']} metric values "
              f"checked against the official file: {status}, {golden['seconds']} s)")
        for key, value in golden["brief"].items():
            print(f"  {key:<24} {value:>7.2f}")
    else:
        print("shared/data/qvhighlights_eval not found (set VIDMAMBA_SHARED_DATA): skipping the golden evaluation")
    print("\nSelective scans, fast vs sequential reference (forward, fp32, batch 1):")
    results["scan_check"] = scan_check()
    for name, row in results["scan_check"].items():
        print(f"  {name:<15} L={row['length']}  ref {row['ref_s']:.3f} s  fast {row['fast_s']:.3f} s  "
              f"speed-up {row['speedup']}x  max rel err {row['max_rel_err']:.1e}")
    results["seconds"] = round(time.perf_counter() - start, 1)
    atomic_write_text(Path(out_dir) / "results.json", json.dumps(results, indent=2))
    print(f"\nwrote {Path(out_dir) / 'results.json'} ({results['seconds']} s)")
    return results
