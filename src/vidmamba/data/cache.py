"""Cached generated data: where it lives and how a folder is built atomically and recognised as complete.

A generated folder holds ``meta.json`` (written last) with at least ``generator``, ``version`` and ``params``; a
folder whose meta matches all three is complete and is re-used as is.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from vidmamba.utils import default_cache_dir  # the cache folder (defined in utils: ssm uses it too)

META_FILE = "meta.json"


def params_cache_dir(kind: str, version: int, params: dict) -> Path:
    """``<default cache>/<kind>/v<version>-<12 hex digits of the params' hash>``."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    return default_cache_dir() / kind / f"v{version}-{digest}"


def read_meta(root) -> dict | None:
    """The parsed ``meta.json`` of a generated folder, or None if absent / unreadable."""
    try:
        return json.loads((Path(root) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def meta_matches(root, generator: str, version: int, params: dict) -> bool:
    """Whether ``root`` is a complete folder made by ``generator`` at ``version`` from exactly ``params``."""
    m = read_meta(root)
    return (m is not None and m.get("generator") == generator and m.get("version") == version
            and m.get("params") == params)


def build_atomically(root, write: Callable[[Path], None], is_complete: Callable[[Path], bool]) -> Path:
    """Build a folder with ``write(tmp)`` in a sibling temporary folder and rename it to ``root``, replacing what is
    there; a concurrent builder that got there first is accepted when ``is_complete(root)``. Returns ``root``."""
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        write(tmp / "data")
        if root.exists():
            os.replace(root, tmp / "old")
        try:
            os.replace(tmp / "data", root)
        except OSError:  # another process created it meanwhile
            if not is_complete(root):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
