"""CPU allocator setting for long videos: keep freed memory instead of returning it to the OS.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it
on ``free``. A long video's activations are such blocks (36,000 clips x 2048 channels = 281 MiB), so every new tensor
faults in freshly zeroed pages: HieraMamba inference on 65,536 clips took 11.6 M page faults and 33 s of system time
out of 99 s, and the faults grow faster than the length (the 64k/16k time ratio was 5.0 for 4x the clips).
:func:`keep_freed_memory` makes malloc serve every block from its heap and keep up to 2 GiB of free memory at the
heap's top, so freed activations are reused: 1.7 M faults and 6 s of system time at 65,536 clips (see BENCHMARKS.md).
The price: memory freed below the top of the heap stays with the process until it ends, so fragmentation adds to
the peak (one HieraMamba query over 36k clips: 3.96 instead of 3.70 GiB; MLVTG over 65,536 clips: 10.45 instead of
8.36 GiB).

The ``vidmamba`` command applies it at start; ``VIDMAMBA_KEEP_FREED_MEMORY=0`` (or ``false`` / ``off`` / ``no``) turns
that off. A library user calls it once, early.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

from vidmamba.errors import InputError

M_TRIM_THRESHOLD = -1  # glibc <malloc.h> parameter numbers
M_MMAP_MAX = -4
M_ARENA_MAX = -8
TRIM_THRESHOLD = 2**31 - 1  # the largest value mallopt takes (an int)
ENV_SWITCH = "VIDMAMBA_KEEP_FREED_MEMORY"
OFF, ON = ("0", "false", "off", "no"), ("1", "true", "on", "yes", "")  # any case; unset or empty: on


def keep_freed_memory() -> bool:
    """Set glibc malloc to never mmap and to trim only above 2 GiB of free heap top. Returns True when applied;
    False (and nothing changed) without glibc or with ``VIDMAMBA_KEEP_FREED_MEMORY`` off (0 / false / off / no) in
    the environment; any other value than those and 1 / true / on / yes is an
    :class:`~vidmamba.errors.InputError`."""
    value = os.environ.get(ENV_SWITCH, "1")
    switch = value.strip().lower()
    if switch not in OFF + ON:
        raise InputError(f"{ENV_SWITCH}={value!r}: expected 0 / false / off / no (turn it off) or 1 / true / on / yes "
                         "(the default)")
    if switch in OFF or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def limit_arenas(n: int) -> bool:
    """Let at most ``n`` glibc malloc arenas serve this process's threads (the default is 8 per core). With
    :func:`keep_freed_memory` every arena keeps what it freed, so a server whose requests run on ever new threads
    would hold up to one request's peak per arena; ``n`` = the requests run at once + 1 bounds that. Returns True when
    applied (False without glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(M_ARENA_MAX, max(1, int(n))))
