"""Where the numba kernels are cached on disk, and a cache that cannot stop the library.

The compiled kernels live in the user cache folder, not inside the installed package (which may be read-only and is
shared by every Python that imports it): ``$NUMBA_CACHE_DIR`` when set, else ``<vidmamba cache>/numba/py<X><Y>``
(``vidmamba.utils.default_cache_dir``), in a sub-folder per source folder (two installs never share files; numba's
index also records the numba version, the source file's hash and the CPU). A cache file that cannot be read (a
truncated or corrupted index or data file, another format) is a miss: one warning, the kernel is recompiled and the
file rewritten. A folder that cannot be written: one warning, the kernels compile in every process. Imported by
``_numba_kernels.py`` only (it imports numba).
"""
from __future__ import annotations

import os
import sys
import warnings

from numba import config
from numba.core.caching import CompileResultCacheImpl, FunctionCache, UserProvidedCacheLocator

from vidmamba.utils import default_cache_dir

_warned = False


def kernel_cache_dir() -> str:
    """The folder the kernels are cached under (see the module docstring)."""
    if config.CACHE_DIR:
        return config.CACHE_DIR
    return os.path.join(default_cache_dir(), "numba", f"py{sys.version_info[0]}{sys.version_info[1]}")


def _warn_once(message: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"vidmamba: {message}", RuntimeWarning, stacklevel=3)


class _Locator(UserProvidedCacheLocator):
    """numba's NUMBA_CACHE_DIR locator, rooted at ``kernel_cache_dir()``."""

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(kernel_cache_dir(), self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        return super(UserProvidedCacheLocator, cls).from_function(py_func, py_file)   # None if not writable


class _Impl(CompileResultCacheImpl):
    _locator_classes = [_Locator]


class KernelCache(FunctionCache):
    """numba's per-function cache in ``kernel_cache_dir()``; an unreadable entry is a miss (recompile, rewrite)."""

    _impl_class = _Impl

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as e:                   # any unreadable content: unpickling, bitcode, object code errors
            _warn_once(f"unreadable kernel cache in {self.cache_path} ({type(e).__name__}: {e}); recompiling")
            try:
                self.flush()                     # an empty index replaces the unreadable one (atomic rename)
            except OSError:
                self.disable()
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception as e:
            _warn_once(f"cannot write the kernel cache in {self.cache_path} ({type(e).__name__}: {e}); the kernels "
                       "compile in every process (set NUMBA_CACHE_DIR to a writable folder)")
            self.disable()


def use_kernel_cache(dispatcher):
    """Cache ``dispatcher`` (a numba ``njit`` function made without ``cache=True``) with ``KernelCache``."""
    try:
        dispatcher._cache = KernelCache(dispatcher.py_func)
    except RuntimeError:                         # no writable folder: numba's "no locator available"
        _warn_once(f"cannot create the kernel cache folder under {kernel_cache_dir()}; the kernels compile in every "
                   "process (set NUMBA_CACHE_DIR to a writable folder)")
    return dispatcher
