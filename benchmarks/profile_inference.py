"""CPU seconds of one ``model.predict`` (batch 1, one query, eval mode, ``torch.no_grad``, 1 thread) at given lengths.

Models and inputs are those of ``benchmarks/long_video.py`` (real widths from the YAML configs, random clips, one
20-token query); each (model, length) runs in a fresh process after a 1024-clip warm-up. CPU seconds
(``time.process_time``) are reported because the wall clock of a shared machine is inflated by other load.
``--save-dir`` stores the predictions (to compare implementations: ``--compare-dir``, max |diff| / max |value|).

    python benchmarks/profile_inference.py --runs hieramamba:16384 hieramamba:36000 mlvtg:4096 mlvtg:16384 \\
        --out benchmarks/results_profile_inference.json
"""
from __future__ import annotations

import argparse
import io
import json
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))


def _tensors(obj):
    """All tensors of a nested predict output, in a fixed order."""
    import torch

    if torch.is_tensor(obj):
        return [obj.float()]
    if isinstance(obj, dict):
        return [t for k in sorted(obj) for t in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    if isinstance(obj, float):
        return [torch.tensor([obj])]
    return []


def worker(model_name: str, length: int, save_dir: str | None, compare_dir: str | None) -> dict:
    import torch

    from long_video import MODELS, WARMUP_CLIPS, make_batch, model_config
    from vidmamba.allocator import keep_freed_memory
    from vidmamba.models import create_model

    keep_freed_memory()  # as the vidmamba command does
    torch.set_num_threads(1)
    torch.manual_seed(0)
    family = MODELS[model_name][0]
    model = create_model(model_name, **model_config(model_name, "real")).eval()
    batch = make_batch(family, model.cfg, length, "infer", "cpu")
    with torch.no_grad():
        model.predict(make_batch(family, model.cfg, WARMUP_CLIPS, "infer", "cpu"))
        start = time.process_time()
        out = model.predict(batch)
        cpu_s = time.process_time() - start
    row = {"model": model_name, "clips": length, "cpu_s": round(cpu_s, 2)}
    name = f"{model_name}_{length}.pt"
    if save_dir:
        from vidmamba.utils import atomic_write_bytes

        buf = io.BytesIO()
        torch.save(out, buf)
        atomic_write_bytes(pathlib.Path(save_dir) / name, buf.getvalue())
    if compare_dir:
        ref = _tensors(torch.load(pathlib.Path(compare_dir) / name))
        new = _tensors(out)
        if len(ref) != len(new) or any(a.shape != b.shape for a, b in zip(ref, new)):
            raise ValueError(f"{name}: prediction structure differs from {compare_dir}")
        row["max_rel_diff"] = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-12)).item()
                                  for a, b in zip(ref, new) if a.numel())
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", default=["hieramamba:16384", "hieramamba:36000", "mlvtg:4096", "mlvtg:16384"],
                    help="model:clips pairs")
    ap.add_argument("--out", help="JSON file to write (default: print only)")
    ap.add_argument("--save-dir")
    ap.add_argument("--compare-dir")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        model_name, length = args.worker.split(":")
        print(json.dumps(worker(model_name, int(length), args.save_dir, args.compare_dir)))
        return
    rows = []
    for run in args.runs:
        cmd = [sys.executable, __file__, "--worker", run]
        for flag, val in (("--save-dir", args.save_dir), ("--compare-dir", args.compare_dir)):
            if val:
                cmd += [flag, val]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        from vidmamba.utils import atomic_write_text

        atomic_write_text(args.out, json.dumps({"threads": 1, "unit": "CPU seconds of one predict", "rows": rows},
                                               indent=2) + "\n")


if __name__ == "__main__":
    main()
