"""keep_freed_memory: freed large blocks are reused (few page faults) instead of unmapped and faulted in again."""
import os
import platform
import subprocess
import sys

import pytest

CHILD = """
import resource, sys, torch
from vidmamba.allocator import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else False)
for i in range(30):
    if i == 10:  # glibc settles its heap within a few blocks; count the faults of the last 20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)  # 64 MiB, above glibc's largest mmap threshold
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

# more than glibc's largest finite trim threshold (2 GiB) freed at the heap's top, then 2 GiB asked for again
CHILD_TOP = """
import ctypes, ctypes.util, resource, sys
from vidmamba.allocator import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else False)
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
block = libc.malloc(9 * 2**28)  # 2.25 GiB
ctypes.memset(block, 1, 9 * 2**28)
libc.free(block)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(libc.malloc(2**31), 1, 2**31)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# the first touch of a fresh 256 MiB tensor
CHILD_FRESH = """
import resource, sys, torch
from vidmamba.allocator import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(2**26)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _thp_mode():
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")]


def run_child(mode, code=CHILD, **env):
    """Run ``code`` with ``mode``; ``env`` adds variables to the environment (None: removes one)."""
    env = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (a no-op elsewhere)")
def test_freed_blocks_are_reused():
    applied, faults_keep = run_child("keep")
    assert applied
    _, faults_default = run_child("default")
    pages = 64 * 2**20 // 4096
    assert faults_default > 19 * pages  # glibc: a fresh mmap per block, every page faulted in again
    assert faults_keep < pages // 10     # kept: the freed block is reused


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (a no-op elsewhere)")
def test_a_freed_block_above_2_gib_is_kept_too():
    # a 64k-clip call frees more than 2 GiB at the heap's top at once: trimming it would fault it all in again
    applied, faults = run_child("keep", CHILD_TOP)
    assert applied
    assert faults < 2**31 // 4096 // 100


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or _thp_mode() not in ("always", "madvise"),
                    reason="glibc and transparent huge pages only")
def test_fresh_blocks_are_faulted_in_huge_pages():
    pages = 2**28 // 4096
    applied, faults = run_child("keep", CHILD_FRESH, THP_MEM_ALLOC_ENABLE=None)
    assert applied and faults < pages // 20       # 2 MiB pages: 128 faults (+ the fill's threads), not 65,536
    _, faults_default = run_child("default", CHILD_FRESH, THP_MEM_ALLOC_ENABLE=None)
    assert faults_default > pages // 2


@pytest.mark.slow
@pytest.mark.parametrize("value", ["0", "false", "off", "no", "OFF", "False"])
def test_environment_switch_turns_it_off(value):
    applied, _ = run_child("keep", VIDMAMBA_KEEP_FREED_MEMORY=value)
    assert not applied


def test_an_invalid_switch_value_is_one_line():
    entry_point = os.path.join(os.path.dirname(sys.executable), "vidmamba")
    proc = subprocess.run([entry_point, "export", "run", "--out", "x"], capture_output=True, text=True,
                          env={**os.environ, "VIDMAMBA_KEEP_FREED_MEMORY": "maybe"})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "vidmamba export: error: VIDMAMBA_KEEP_FREED_MEMORY='maybe': expected 0 / false / off / no (turn it off) or "
        "1 / true / on / yes (the default)"]
