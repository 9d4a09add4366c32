"""The one error type raised for bad data on disk."""
from __future__ import annotations

import os
from typing import Any

from vidmamba.errors import VidmambaError


class DataFormatError(VidmambaError, ValueError):
    """A data file (annotation or feature) does not have the expected format.

    The message always names the file, and when known the item (qid, video id, line or row number), the field,
    and what was expected vs what was found, e.g.::

        DataFormatError: /d/anno.jsonl: line 12 (qid 77): field 'relevant_windows': window [3.0, 200.0] ends after
        the video (expected inside [0, 150] +- 0.5 s, found end 200.0)

    The parts are also kept as attributes (``file``, ``item``, ``field``, ``expected``, ``found``) for programs.
    """

    def __init__(self, file: Any, problem: str, *, item: str | None = None, field: str | None = None,
                 expected: Any = None, found: Any = None):
        self.file = os.fspath(file) if file is not None else None
        self.problem = problem
        self.item = item
        self.field = field
        self.expected = expected
        self.found = found
        parts = [str(self.file) if self.file is not None else "<no file>"]
        if item is not None:
            parts.append(str(item))
        if field is not None:
            parts.append(f"field '{field}'")
        msg = ": ".join(parts) + ": " + problem
        details = []
        if expected is not None:
            details.append(f"expected {expected}")
        if found is not None:
            details.append(f"found {found}")
        if details:
            msg += " (" + ", ".join(details) + ")"
        super().__init__(msg)
