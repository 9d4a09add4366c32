"""Loading and checking pre-extracted feature files (``.npy``, ``.npz``, ``.pt``).

Every loader returns a C-contiguous ``float32`` numpy array and raises :class:`DataFormatError` naming the file and
the expected shape/dtype when the file is missing, unreadable (truncated, garbage), of the wrong dtype or rank, of the
wrong feature dimension, empty along time, or contains NaN/Inf.
"""
from __future__ import annotations

import os
import pickle
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from stat import S_ISREG
from typing import Sequence

import numpy as np

from .errors import DataFormatError

# What numpy / torch raise on a truncated or garbage file.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, RuntimeError, TypeError, AttributeError,
                IndexError, UnicodeDecodeError, pickle.UnpicklingError)


def _describe(ndim: int, dim: int | None, key: str | None) -> str:
    last = "D" if dim is None else str(dim)
    shape = {1: f"({last},)", 2: f"(T, {last})"}.get(ndim, f"rank {ndim} ending in {last}")
    where = f" under key '{key}'" if key is not None else ""
    return f"a finite float array of shape {shape}{where}"


def _pick_key(path: Path, key: str | None, names: list, container: str, item: str | None, expected: str):
    """The name of the array to read from an archive / dict with ``names``: ``key``, or its only entry when no key is
    asked for; otherwise a DataFormatError naming the key wanted and the keys the file has."""
    if key is None and len(names) == 1:
        return names[0]
    if key is None:
        raise DataFormatError(path, f"the {container} holds several arrays and no key says which to read", item=item,
                              expected=expected, found=f"keys {[str(n) for n in names]}")
    if key not in names:
        raise DataFormatError(path, f"key '{key}' missing from the {container}", item=item, field=key,
                              expected=expected, found=f"keys {[str(n) for n in names]}")
    return key


def _read_raw(path: Path, key: str | None, item: str | None, expected: str):
    """Read the array stored in ``path`` (by suffix), wrapping every reader error in a DataFormatError."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return archive[_pick_key(path, key, sorted(archive.files), ".npz archive", item, expected)]
        if suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict):
                obj = obj[_pick_key(path, key, sorted(obj, key=str), "saved dict", item, expected)]
            if not isinstance(obj, torch.Tensor):
                raise DataFormatError(path, "the file does not hold a tensor", item=item, field=key,
                                      expected=expected, found=type(obj).__name__)
            return obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.cpu().numpy()
    except DataFormatError:
        raise
    except _READ_ERRORS as e:
        raise DataFormatError(path, "cannot read the feature file (corrupt or truncated?)", item=item, field=key,
                              expected=expected, found=f"{type(e).__name__}: {e}") from e
    raise DataFormatError(path, "unsupported feature file type", item=item, expected=".npy, .npz, .pt or .pth",
                          found=suffix or "no suffix")


class FeatureCache:
    """Validated feature arrays kept in memory, so that a file read every epoch is parsed and checked once.

    At most ``max_bytes`` of arrays are held; the least recently used go first (an array larger than the bound is
    not kept). An entry is used only while its file is unchanged: same device, inode, size, modification and change
    time as when it was read; otherwise the file is read again. Thread-safe. Arrays are stored read-only and
    :func:`load_feature_array` returns a copy, so callers may change what they get.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes, self.nbytes = int(max_bytes), 0
        self._entries: OrderedDict = OrderedDict()     # (path, key, ndim) -> (file signature, array)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self):          # a copy (a DataLoader worker started by spawn) starts empty, with the same bound
        return FeatureCache, (self.max_bytes,)

    def get(self, name: tuple, signature: tuple) -> np.ndarray | None:
        """The array cached under ``name`` when it was read from a file of this ``signature``, else None."""
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry[0] != signature:
                return None
            self._entries.move_to_end(name)
            return entry[1]

    def put(self, name: tuple, signature: tuple, array: np.ndarray) -> None:
        """Keep ``array`` (made read-only) under ``name``, dropping the least recently used beyond ``max_bytes``."""
        with self._lock:
            old = self._entries.pop(name, None)
            if old is not None:
                self.nbytes -= old[1].nbytes
            if array.nbytes > self.max_bytes:
                return
            array.flags.writeable = False
            self._entries[name] = (signature, array)
            self.nbytes += array.nbytes
            while self.nbytes > self.max_bytes:
                self.nbytes -= self._entries.popitem(last=False)[1][1].nbytes


def _file_signature(path: Path) -> tuple | None:
    """(device, inode, size, mtime ns, ctime ns) of a regular file, or None when ``path`` is not one."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not S_ISREG(st.st_mode):
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def load_feature_array(path, *, key: str | None = None, ndim: int = 2, dim: int | None = None,
                       item: str | None = None, cache: FeatureCache | None = None) -> np.ndarray:
    """Load one feature array and validate it.

    Args:
        path: a ``.npy``, ``.npz`` (``key`` required), ``.pt``/``.pth`` (a tensor, or a dict holding ``key``) file.
        key: array name inside an ``.npz`` / dict (ignored for ``.npy``; a ``.pt`` may also hold a bare tensor). With
            no key, an archive / dict must hold exactly one array. A missing key raises DataFormatError naming the
            key wanted and the keys the file has.
        ndim: required rank (2 for (T, D) sequences).
        dim: required size of the last axis, or None for any.
        item: the annotation item the file belongs to (e.g. ``"vid abc"``), used in error messages.
        cache: a :class:`FeatureCache` to take the array from (the same bytes, unless the file changed since) and to
            keep it in.

    Returns: float32 array of rank ``ndim`` with a non-empty first axis and only finite values (a new array, also
    when it comes from ``cache``).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        key = None  # a .npy holds one unnamed array
    expected = _describe(ndim, dim, key)
    signature = _file_signature(path)
    if signature is None:
        raise DataFormatError(path, "feature file not found", item=item, field=key, expected=expected,
                              found="no such file")
    name = (os.path.abspath(path), key, ndim)
    cached = None if cache is None else cache.get(name, signature)
    if cached is not None:       # valid when it was stored: only the width asked for now is left to check
        _check_dim(cached, path, dim, item, key, expected)
        return cached.copy()
    arr = np.asarray(_read_raw(path, key, item, expected))
    if arr.dtype.kind not in "fiu":
        raise DataFormatError(path, "feature array has a non-numeric dtype", item=item, field=key,
                              expected=expected, found=f"dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise DataFormatError(path, "feature array has the wrong rank", item=item, field=key, expected=expected,
                              found=f"shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.size == 0:
        raise DataFormatError(path, "feature array is empty", item=item, field=key, expected=expected,
                              found=f"shape {tuple(arr.shape)}")
    _check_dim(arr, path, dim, item, key, expected)
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes Inf, reported just below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out)
    if not finite.all():
        n_nan = int(np.isnan(out).sum())
        n_inf = int(out.size - finite.sum() - n_nan)
        first = int(np.argwhere(~finite)[0][0])
        raise DataFormatError(path, "feature array contains non-finite values", item=item, field=key,
                              expected=expected,
                              found=f"{n_nan} NaN and {n_inf} Inf (after cast to float32), first at row {first}")
    if cache is not None:
        cache.put(name, signature, out.copy())
    return out


def _check_dim(arr: np.ndarray, path: Path, dim: int | None, item: str | None, key: str | None, expected: str):
    if dim is not None and arr.shape[-1] != dim:
        raise DataFormatError(path, "feature dimension mismatch", item=item, field=key, expected=expected,
                              found=f"shape {tuple(arr.shape)}")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Divide each row (last axis) by its L2 norm; all-zero rows stay zero."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(x.dtype, copy=False)


def align_lengths(arrays: Sequence[np.ndarray], files: Sequence, *, mode: str, item: str | None = None,
                  max_pad: int = 1) -> list[np.ndarray]:
    """Bring several (T_i, D_i) arrays of one video to one length before concatenating them along channels.

    ``mode="truncate"`` (moment_detr / lighthouse): cut every array to the shortest length.
    ``mode="pad_last"`` (SnAG / HieraMamba): when the longest and shortest differ by at most ``max_pad`` rows, pad the
    shorter ones to the longest by repeating their last row; a larger difference is a DataFormatError naming the files.
    """
    if not arrays:
        raise ValueError("align_lengths needs at least one array")
    lengths = [a.shape[0] for a in arrays]
    lo, hi = min(lengths), max(lengths)
    if lo == hi:
        return list(arrays)
    if mode == "truncate":
        return [a[:lo] for a in arrays]
    if mode == "pad_last":
        if hi - lo > max_pad:
            short = files[lengths.index(lo)]
            listing = ", ".join(f"{os.fspath(f)}: {n}" for f, n in zip(files, lengths))
            raise DataFormatError(short, "feature files of one video differ in length", item=item,
                                  expected=f"lengths within {max_pad} of each other", found=listing)
        return [a if a.shape[0] == hi else np.concatenate([a, np.repeat(a[-1:], hi - a.shape[0], axis=0)])
                for a in arrays]
    raise ValueError(f"unknown mode {mode!r}; expected 'truncate' or 'pad_last'")


def temporal_endpoint_features(num_clips: int) -> np.ndarray:
    """moment_detr / UniVTG "tef": row i is ``[i / T, (i + 1) / T]``, the clip's normalised start and end. (T, 2)."""
    if num_clips <= 0:
        raise ValueError(f"num_clips must be positive, got {num_clips}")
    start = np.arange(num_clips, dtype=np.float32) / num_clips
    return np.stack([start, start + np.float32(1.0 / num_clips)], axis=1)


def find_feature_file(directory, stem: str, exts: Sequence[str] = (".npy", ".pt"), *, item: str | None = None,
                      expected: str = "a (T, D) feature file") -> Path:
    """``<directory>/<stem><ext>`` for the first ext that exists; DataFormatError naming every path tried otherwise."""
    tried = [Path(directory) / f"{stem}{ext}" for ext in exts]
    for p in tried:
        if p.is_file():
            return p
    raise DataFormatError(tried[0], "feature file not found", item=item, expected=expected,
                          found="none of " + ", ".join(os.fspath(p) for p in tried))
