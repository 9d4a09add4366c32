"""Constants and helpers shared by the metric modules."""
from __future__ import annotations

import numpy as np

__all__ = ["QVH_IOU_THRESHOLDS", "round_percent", "threshold_key"]

#: ``np.linspace(0.5, 0.95, 10)`` rounded to 2 decimals, as the official QVHighlights evaluation does.
QVH_IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{x:.2f}") for x in np.linspace(0.5, 0.95, 10))


def round_percent(value) -> float:
    """The official rounding: ``float(f"{100 * v:.2f}")`` (a percentage with 2 decimals)."""
    return float(f"{100 * value:.2f}")


def threshold_key(thr: float) -> str:
    """Key of a threshold in the output dicts: ``str`` of the 2-decimal rounded float (``0.5 -> "0.5"``)."""
    return str(float(f"{thr:.2f}"))
