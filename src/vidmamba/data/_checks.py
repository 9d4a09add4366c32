"""Field validators shared by the annotation readers; each raises DataFormatError naming file, item and field."""
from __future__ import annotations

import math
from typing import Any

from .errors import DataFormatError


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_real(value: Any) -> bool:
    """A finite int/float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    """An int (not bool), or a float with an integral value (json writers sometimes emit 3.0)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())


def expect_real(value: Any, file, item: str, field: str, *, positive: bool = False) -> float:
    if not is_real(value) or (positive and value <= 0):
        want = "a positive finite number" if positive else "a finite number"
        raise DataFormatError(file, "bad value", item=item, field=field, expected=want, found=short_repr(value))
    return float(value)


def expect_int(value: Any, file, item: str, field: str, *, minimum: int | None = None) -> int:
    if not is_int(value) or (minimum is not None and value < minimum):
        want = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise DataFormatError(file, "bad value", item=item, field=field, expected=want, found=short_repr(value))
    return int(value)


def expect_str(value: Any, file, item: str, field: str, *, nonempty: bool = True) -> str:
    if not isinstance(value, str) or (nonempty and not value.strip()):
        want = "a non-empty string" if nonempty else "a string"
        raise DataFormatError(file, "bad value", item=item, field=field, expected=want, found=short_repr(value))
    return value


def expect_matrix(value: Any, file, item: str, field: str) -> list[list[float]]:
    """A non-empty rectangular list of lists of finite numbers."""
    if not isinstance(value, list) or not value:
        raise DataFormatError(file, "bad value", item=item, field=field,
                              expected="a non-empty list of lists of numbers", found=short_repr(value))
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row or not all(is_real(v) for v in row):
            raise DataFormatError(file, f"bad row {r}", item=item, field=field,
                                  expected="a non-empty list of finite numbers", found=short_repr(row))
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise DataFormatError(file, f"ragged rows (row {r})", item=item, field=field,
                                  expected=f"{width} values per row as in row 0", found=f"{len(row)} values")
    return [[float(v) for v in row] for row in value]
