"""CPU allocator setting for long videos: keep freed memory instead of returning it to the OS.

glibc's malloc serves every request above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and unmaps it
on ``free``. A long video's activations are such blocks (36,000 clips x 2048 channels = 281 MiB), so every new tensor
faults in freshly zeroed pages: HieraMamba inference on 65,536 clips took 11.6 M page faults and 33 s of system time
out of 99 s, and the faults grow faster than the length (the 64k/16k time ratio was 5.0 for 4x the clips).
:func:`keep_freed_memory` makes malloc serve every block from its heap and never give freed memory back to the OS
(no trimming of the heap's top), so freed activations are reused: 1.7 M faults and 6 s of system time at 65,536
clips (see BENCHMARKS.md). Trimming had to go entirely: with glibc's largest finite threshold (2 GiB) the free top of
a 64k-clip MLVTG call passed 2 GiB in every aligner block, was returned, and faulted in again (3.3 M faults and 7.4 s
of system time per call instead of 1.8 M and 3.7 s; the faults grew 7.7x from 16k to 64k clips instead of 4x).
The price: a process keeps its peak memory until it ends (a server: the largest request's, per malloc arena; see
:func:`limit_arenas`), and fragmentation adds to the peak. It also asks torch for transparent huge pages
(``THP_MEM_ALLOC_ENABLE=1``: CPU blocks of 2 MiB or more are 2 MiB-aligned and ``madvise(MADV_HUGEPAGE)``), so the
first touch of a block faults 2 MiB pages instead of 4 KiB ones: MLVTG predict on 8,192 clips took 6 k page faults
and 0.17 s of system time instead of 187 k and 0.36 s (Linux with transparent huge pages "madvise" or "always").

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
NO_TRIM = -1  # M_TRIM_THRESHOLD -1: never trim (mallopt(3))
TORCH_THP = "THP_MEM_ALLOC_ENABLE"  # read by torch at its first CPU allocation of 2 MiB or more
ENV_SWITCH = "VIDMAMBA_KEEP_FREED_MEMORY"
OFF, ON = ("0", "false", "off", "no"), ("1", "true", "on", "yes", "")  # any case; unset or empty: on


def keep_freed_memory() -> bool:
    """Set glibc malloc to never mmap and never trim the heap's free top, and torch's large CPU blocks to huge pages
    (unless ``THP_MEM_ALLOC_ENABLE`` is set; call it before the first large tensor). Returns True when applied;
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
    os.environ.setdefault(TORCH_THP, "1")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NO_TRIM))


def limit_arenas(n: int) -> bool:
    """Let at most ``n`` glibc malloc arenas serve this process's threads (the default is 8 per core). With
    :func:`keep_freed_memory` every arena keeps what it freed, so a server whose requests run on ever new threads
    would hold up to one request's peak per arena; ``n`` = the requests run at once + 1 bounds that. Returns True when
    applied (False without glibc)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(M_ARENA_MAX, max(1, int(n))))
