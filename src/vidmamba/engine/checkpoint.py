"""Checkpoint folders, written atomically.

A checkpoint is a folder::

    model.safetensors   the model's state_dict (tied tensors stored once; aliases in the file's metadata)
    ema.safetensors     EMA of the trainable weights (when EMA is on)
    config.json         {"trainer": ..., "experiment": ..., "vidmamba_version": ...}
    trainer_state.pt    optimizer, scheduler, epoch/step, best metric, RNG states (torch.load(weights_only=True))
    meta.json           written last: format version, summary, the byte size and sha256 of every other file

It is written into a hidden temp folder ``.<name>.tmp-<pid>-<hex>`` beside the target, which then replaces the target
by two renames (target -> ``.<name>.old``, temp -> target). A crash at any point leaves either the old or the new
checkpoint complete; readers fall back to ``.<name>.old`` when the target is missing (:func:`resolve_checkpoint`,
:func:`run_checkpoint`). Only a checkpoint folder of the same kind that holds nothing but what vidmamba wrote is ever
replaced: anything else in the way is refused (:func:`check_replaceable`), and a folder that is or holds a training
run always is. Temp folders left by a killed writer are removed at the next save in that folder
(:func:`sweep_stale_temps`). ``meta.json``'s ``format`` is checked on load: a checkpoint from a newer format is refused.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import uuid
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .. import __version__
from ..errors import MissingFileError, VidmambaError
from ..utils import atomic_write_bytes, atomic_write_text, file_digest

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
CONFIG_FILE = "config.json"
STATE_FILE = "trainer_state.pt"
META_FILE = "meta.json"


class CheckpointError(VidmambaError, RuntimeError):
    """A checkpoint that is incomplete, corrupt, or does not match the model."""


class RunFolderError(CheckpointError):
    """An output folder vidmamba will not write: it holds files vidmamba did not write, or a training run."""


LOCK_FILE = ".train.lock"
#: Files that only a training run writes: a folder holding one of them (at any depth) is or holds a run.
RUN_MARKERS = ("metrics.jsonl", STATE_FILE, LOCK_FILE)


def describe_mismatch(expected: dict, found: dict, limit: int = 10) -> str:
    """Human-readable difference between two ``{name: shape}`` maps ('' when they agree)."""

    def show(names):
        names = sorted(names)
        more = f" ... (+{len(names) - limit} more)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    parts = []
    missing, unexpected = expected.keys() - found.keys(), found.keys() - expected.keys()
    if missing:
        parts.append(f"missing keys: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected keys: {show(unexpected)}")
    shapes = [
        f"{k} (expected {tuple(expected[k])}, found {tuple(found[k])})"
        for k in sorted(expected.keys() & found.keys())
        if tuple(expected[k]) != tuple(found[k])
    ]
    if shapes:
        parts.append("shape mismatches: " + "; ".join(shapes[:limit]) + (" ..." if len(shapes) > limit else ""))
    return "; ".join(parts)


def dedupe_tensors(state: dict) -> tuple[dict, dict]:
    """Split a state_dict into unique CPU tensors and ``{alias: kept_name}`` for tensors that share memory."""
    unique, aliases, seen = {}, {}, {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
               tensor.stride(), tensor.dtype)
        if key in seen and tensor.numel() > 0:  # empty tensors share the null pointer without being tied
            aliases[name] = seen[key]
        else:
            seen[key] = name
            unique[name] = tensor.detach().to("cpu", copy=True).contiguous()
    return unique, aliases


def _safetensors_payload(tensors: dict, metadata: dict) -> bytes:
    return safetensors_bytes(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()})


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def backup_path(folder) -> Path:
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.old")


#: ``.<name>.tmp-<pid>-<8 hex>``: the temp folders :func:`save_checkpoint` writes (and nothing else matches).
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>[0-9]+)-[0-9a-f]{8}$")


def _not_ours(folder: Path, kind) -> str:
    """Why ``folder`` is not a complete checkpoint folder of ``kind`` (``meta.json``'s ``kind``; None for training
    checkpoints) holding exactly what :func:`save_checkpoint` wrote; '' when it is one."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        written = set(meta["files"]) | {META_FILE}
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {META_FILE} of a vidmamba checkpoint"
    if meta.get("kind") != kind:
        return f"a {meta.get('kind') or 'training'} checkpoint, not a {kind or 'training'} one"
    others = sorted(e.name for e in folder.iterdir() if e.name not in written or not e.is_file() or e.is_symlink())
    if others:
        more = f" (+{len(others) - 5} more)" if len(others) > 5 else ""
        return f"it holds entries vidmamba did not write there: {', '.join(others[:5])}{more}"
    return ""


def _run_marker(folder: Path) -> Path | None:
    """The first file in ``folder`` (at any depth, links not followed) that only a training run writes, or None."""
    def fail(exc):
        raise exc

    for root, _, names in os.walk(folder, onerror=fail):
        for name in names:
            if name in RUN_MARKERS:
                return Path(root) / name
    return None


def check_replaceable(folder, kind=None, force: bool = False,
                      force_hint: str | None = "force=True (vidmamba export: --force)") -> None:
    """Raise :class:`RunFolderError` unless :func:`save_checkpoint` may replace ``folder`` (and its ``.old``
    backup): each must be absent, or a checkpoint folder of ``kind`` holding only what vidmamba wrote there, or, with
    ``force``, any folder that neither is nor holds a training run (:data:`RUN_MARKERS`). A file or a link is never
    replaced. ``force_hint``: how the caller's user asks for ``force`` (None: they cannot)."""
    folder = Path(folder)
    for path in (folder, backup_path(folder)):
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_symlink() or not path.is_dir():
            raise RunFolderError(f"{path} is a {'link' if path.is_symlink() else 'file'}, not a folder; vidmamba "
                                 "replaces only folders it wrote: choose another output folder")
        reason = _not_ours(path, kind)
        if not reason:
            continue
        try:
            marker = _run_marker(path)
        except OSError as exc:
            raise RunFolderError(f"{path} exists and cannot be searched for a training run ({exc}); not replacing "
                                 "it: choose another output folder") from None
        if marker is not None:
            raise RunFolderError(f"{path} is or holds a training run ({marker}); vidmamba never replaces a run: "
                                 "choose another output folder")
        if not force or path != folder:
            remedy = (f", or pass {force_hint} to replace it" if force_hint else "") if path == folder else \
                ", or move it away"
            raise RunFolderError(f"{path} exists and is not a {kind or 'training'} checkpoint folder written by "
                                 f"vidmamba ({reason}); choose another output folder{remedy}")


class RunLock:
    """An exclusive ``flock`` on ``<out_dir>/.train.lock``: one writer per run folder.

    Taken at construction (a second holder, in this or another process, gets a :class:`RunFolderError` naming the
    pid that holds it) and released by :meth:`release`, or by the kernel when the process ends, even by ``kill -9``.
    The file stays (removing it would let a third writer lock a new file while the second holds the old one).
    """

    def __init__(self, out_dir):
        self.path = Path(out_dir) / LOCK_FILE
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunFolderError(f"{self.path.parent} is being written by another training (pid {holder}, lock "
                                 f"{self.path}); wait for it to end, or choose another train.out_dir") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor of the open file drops the lock
            self.fd = None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's live process, or a pid we cannot probe: keep its files
        return True
    return True


def sweep_stale_temps(directory) -> list[Path]:
    """Remove the temp folders (or files) of checkpoint writes that were killed mid-write, in ``directory``.

    Only entries named as :func:`save_checkpoint` names them (``.<name>.tmp-<pid>-<8 hex>``) whose writing process
    is no longer running are removed; a live writer's temp folder and every other entry are left alone. (A writer on
    another machine sharing the folder cannot be probed: only one process, rank 0, writes a run's checkpoints.)
    Returns the removed paths.
    """
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _TEMP_NAME.match(entry.name)
        if m is None or int(m["pid"]) == os.getpid() or _pid_alive(int(m["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def save_checkpoint(folder, model: nn.Module, *, config: dict | None = None, training_state: dict | None = None,
                    ema_state: dict | None = None, info: dict | None = None, force: bool = False) -> Path:
    """Write a checkpoint folder atomically (see the module docstring); returns its path.

    ``ema_state`` is ``EMA.state_dict()``; ``info`` is a small JSON-able summary copied into ``meta.json`` (its
    ``kind`` names the kind of folder). An existing ``folder`` is replaced only when :func:`check_replaceable` allows
    it (``force``: also a folder of other files that holds no run). Stale temp folders of killed writes beside
    ``folder`` are swept first (:func:`sweep_stale_temps`).
    """
    folder = Path(folder)
    check_replaceable(folder, (info or {}).get("kind"), force)
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(folder.parent)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        files, digests = {}, {}

        def write(name, payload: bytes):
            atomic_write_bytes(tmp / name, payload)
            files[name], digests[name] = len(payload), hashlib.sha256(payload).hexdigest()

        tensors, aliases = dedupe_tensors(model.state_dict())
        write(MODEL_FILE, _safetensors_payload(tensors, {"aliases": aliases}))
        if ema_state is not None:
            shadow = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in ema_state["shadow"].items()}
            meta = {"decay": ema_state["decay"], "num_updates": ema_state["num_updates"]}
            write(EMA_FILE, _safetensors_payload(shadow, meta))
        write(CONFIG_FILE, json.dumps({**(config or {}), "vidmamba_version": __version__}, indent=2).encode())
        if training_state is not None:
            buffer = io.BytesIO()
            torch.save(training_state, buffer)
            write(STATE_FILE, buffer.getvalue())
        meta = {"format": FORMAT_VERSION, "files": files, "sha256": digests, **(info or {})}
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=2))
        _fsync_dir(tmp)
        _replace_dir(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _replace_dir(tmp: Path, folder: Path) -> None:
    backup = backup_path(folder)
    if folder.exists():
        if backup.exists():
            shutil.rmtree(backup)
        os.replace(folder, backup)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    shutil.rmtree(backup, ignore_errors=True)


def resolve_checkpoint(folder) -> Path:
    """The complete checkpoint at ``folder`` or, after a crash mid-replace, its ``.old`` backup."""
    folder = Path(folder)
    for candidate in (folder, backup_path(folder)):
        if (candidate / META_FILE).is_file():
            return candidate
    if folder.is_file():
        raise CheckpointError(f"{folder} is a file; expected a checkpoint folder (a run folder, its best/ or last/, "
                              "or a pretrained folder)")
    if folder.exists():
        raise CheckpointError(f"{folder} is not a complete checkpoint: {folder / META_FILE} is missing")
    raise MissingFileError(f"checkpoint folder {folder} not found")


def run_checkpoint(path) -> Path:
    """The checkpoint a user means by ``path``: a run folder's ``best`` (or its ``.best.old`` backup when a crash
    mid-replace left only that), else ``path`` itself (each resolved as :func:`resolve_checkpoint` does)."""
    path = Path(path).expanduser()
    best = path / "best"
    return resolve_checkpoint(best if best.exists() or backup_path(best).exists() else path)


class Checkpoint:
    """A verified checkpoint folder: every file named in ``meta.json`` exists with the recorded size, and each file
    read matches its recorded sha256 (checked once, when first read; folders written before checksums were recorded
    are checked by size only, with a warning)."""

    def __init__(self, folder):
        self.path = resolve_checkpoint(folder)
        meta_file = self.path / META_FILE
        try:
            self.meta = json.loads(meta_file.read_text())
            files = dict(self.meta["files"])
            fmt = self.meta["format"]
        except OSError as exc:
            raise CheckpointError(f"cannot read checkpoint metadata {meta_file}: {exc.strerror or exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"corrupt checkpoint metadata {meta_file}: {exc!r}") from exc
        if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
            raise CheckpointError(f"corrupt checkpoint metadata {meta_file}: 'format' is {fmt!r}, expected a "
                                  f"positive integer")
        if fmt > FORMAT_VERSION:
            raise CheckpointError(f"checkpoint {self.path} has format {fmt}, newer than this vidmamba ({__version__}) "
                                  f"reads (format {FORMAT_VERSION} or older): it was written by a newer vidmamba; "
                                  f"upgrade vidmamba to load it")
        for name, size in files.items():
            path = self.path / name
            if not path.is_file():
                raise CheckpointError(f"checkpoint {self.path} is missing {path}")
            if path.stat().st_size != size:
                raise CheckpointError(f"{path} is truncated or modified: {path.stat().st_size} bytes, expected {size}")
        self.files = files
        self.digests = self.meta.get("sha256")
        if not isinstance(self.digests, dict):
            self.digests = {}
            warnings.warn(f"checkpoint {self.path} records no sha256 checksums (written by an older vidmamba): its "
                          f"files are checked by size only", stacklevel=2)
        self._checked = set()

    def verified(self, name: str) -> Path:
        """The path of file ``name``, its content checked against the sha256 in ``meta.json`` (once)."""
        path = self.path / name
        if name in self.digests and name not in self._checked:
            try:
                digest = file_digest(path)
            except OSError as exc:
                raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if digest != self.digests[name]:
                raise CheckpointError(f"{path} is corrupt or was modified: its sha256 differs from the one recorded in "
                                      f"{self.path / META_FILE}")
            self._checked.add(name)
        return path

    def has(self, name: str) -> bool:
        return name in self.files

    @property
    def config(self) -> dict:
        path = self.verified(CONFIG_FILE)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from exc

    def _read_tensors(self, name: str) -> tuple[dict, dict]:
        if not self.has(name):
            raise CheckpointError(f"checkpoint {self.path} has no {name}")
        path = self.verified(name)
        try:
            with safe_open(path, framework="pt", device="cpu") as f:
                metadata = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for corrupt headers/data
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
        return tensors, metadata

    def load_model(self, model: nn.Module) -> None:
        """Load the weights into ``model``; a key or shape mismatch raises ``CheckpointError`` naming them."""
        tensors, metadata = self._read_tensors(MODEL_FILE)
        for alias, target in metadata.get("aliases", {}).items():
            tensors[alias] = tensors[target]
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        problem = describe_mismatch(expected, {k: tuple(v.shape) for k, v in tensors.items()})
        if problem:
            raise CheckpointError(f"{self.path / MODEL_FILE} does not match the model ({type(model).__name__}): "
                                  f"{problem}")
        model.load_state_dict(tensors, strict=True)

    def ema_state(self) -> dict:
        shadow, metadata = self._read_tensors(EMA_FILE)
        return {"shadow": shadow, "decay": metadata.get("decay"), "num_updates": metadata.get("num_updates", 0)}

    def load_ema_into(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters with the EMA weights (for inference; call after ``load_model``)."""
        shadow = self.ema_state()["shadow"]
        params = dict(model.named_parameters())
        problem = describe_mismatch({k: tuple(params[k].shape) for k in shadow if k in params},
                                    {k: tuple(v.shape) for k, v in shadow.items()})
        if problem:
            raise CheckpointError(f"{self.path / EMA_FILE} does not match the model: {problem}")
        with torch.no_grad():
            for name, value in shadow.items():
                params[name].copy_(value)

    def training_state(self, map_location="cpu") -> dict:
        if not self.has(STATE_FILE):
            raise CheckpointError(f"checkpoint {self.path} has no training state ({STATE_FILE}); cannot resume")
        path = self.verified(STATE_FILE)
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # unpickling errors come in many types; PyTorch's text suggests an unsafe load
            raise CheckpointError(f"cannot read the training state {path}: the file is corrupt, or holds objects "
                                  f"other than tensors and plain Python values ({type(exc).__name__}); resume from "
                                  f"another checkpoint, or load only the weights") from None


def load_weights(folder, model: nn.Module, use_ema: bool = True) -> Checkpoint:
    """Load a checkpoint's weights into ``model`` for inference (the EMA weights when present and ``use_ema``).
    ``folder``: a checkpoint folder or an already verified :class:`Checkpoint`."""
    ckpt = folder if isinstance(folder, Checkpoint) else Checkpoint(folder)
    ckpt.load_model(model)
    if use_ema and ckpt.has(EMA_FILE):
        ckpt.load_ema_into(model)
    return ckpt
