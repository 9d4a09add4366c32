"""Run log: a JSONL file (one record per epoch and per evaluation) plus TensorBoard scalars when available."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from ..utils import atomic_write_text


def _json_value(value):
    # JSON has no NaN/Inf: write them as strings so every line stays valid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to ``path`` by rewriting the whole file atomically (a crash never leaves a torn line).

    Records carry a ``step`` field (optimizer steps done); ``truncate_after(step)`` drops those of later steps, which
    a resumed run uses to forget what was logged after the checkpoint it continues from (a redone epoch is then
    logged once).
    """

    def __init__(self, path, tensorboard_dir=None):
        self.path = Path(path)
        self.records = []
        if self.path.is_file():
            for number, line in enumerate(self.path.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        self.records.append(json.loads(line))
                    except ValueError as exc:
                        raise ValueError(f"{self.path}:{number}: not a JSON line ({exc})") from exc
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                try:
                    self.writer = SummaryWriter(str(tensorboard_dir))
                except Exception as exc:  # noqa: BLE001 - a broken TB install must not stop training
                    warnings.warn(f"TensorBoard disabled: {exc}", stacklevel=2)

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step`` (one atomic rewrite of the file)."""
        kept = [r for r in self.records if r.get("step", 0) <= step]
        if len(kept) != len(self.records):
            self.records = kept
            self._flush()

    def write(self, record: dict) -> None:
        self.records.append({k: _json_value(v) for k, v in record.items()})
        self._flush()
        if self.writer is not None:
            split, step = record.get("split", "train"), record.get("step", 0)
            for key, value in record.items():
                if key not in ("split", "step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"{split}/{key}", value, step)
            self.writer.flush()

    def _flush(self) -> None:
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
