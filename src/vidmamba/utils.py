"""Small I/O helpers used across the package: atomic writes, file digests, hub ids."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from vidmamba.errors import InputError, MissingFileError

HUB_PREFIX = "hf://"
_HUB_ID = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<revision>[\w./-]+))?$")
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def default_cache_dir() -> Path:
    """``$VIDMAMBA_CACHE``, else ``$XDG_CACHE_HOME/vidmamba``, else ``~/.cache/vidmamba``."""
    if os.environ.get("VIDMAMBA_CACHE"):
        return Path(os.environ["VIDMAMBA_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidmamba"


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temp file in the same folder, fsync, then rename over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are ordinary readable files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    """Atomically write UTF-8 text (see ``atomic_write_bytes``)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def print_and_write_json(result: dict, out=None, indent: int = 1) -> None:
    """Print ``result`` as indented JSON (a benchmark's output) and, when ``out`` is given, write it there atomically."""
    import json

    text = json.dumps(result, indent=indent)
    print(text)
    if out:
        atomic_write_text(out, text + "\n")


def file_digest(path, chunk: int = 1 << 20) -> str:
    """sha256 (hex) of a file's bytes, read in ``chunk``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hub_ref(name) -> tuple[str, str | None] | None:
    """``(repo id, revision or None)`` for a Hugging Face hub id written ``hf://owner/name[@revision]``; None for
    anything else, which is a local path (the hub is asked only when the user says so). A malformed ``hf://`` id is
    an :class:`~vidmamba.errors.InputError`."""
    if not isinstance(name, str) or not name.startswith(HUB_PREFIX):
        return None
    match = _HUB_ID.match(name)
    if match is None:
        raise InputError(f"hub id {name!r}: expected hf://owner/name or hf://owner/name@revision")
    return match["repo"], match["revision"]


def no_such_folder(what: str, name) -> MissingFileError:
    """The error for a local folder ``name`` that does not exist; when it reads as ``owner/name``, it says how to ask
    the hub for it instead."""
    text = os.fspath(name)
    hint = f" (to fetch it from the Hugging Face hub, write {HUB_PREFIX}{text})" if _OWNER_NAME.match(text) else ""
    return MissingFileError(f"{what} {text}: no such folder{hint}")
