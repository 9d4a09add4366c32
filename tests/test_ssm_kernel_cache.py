"""The kernels' disk cache and failures: where the cache lives, a corrupted cache (recompiled, one warning, same
results), a cache folder that cannot be written, and a kernel that cannot compile (the PyTorch path, one warning)."""
import importlib
import os
import subprocess
import sys
import warnings

import pytest
import torch

from vidmamba.ssm import MaskedDepthwiseConv1d, selective_scan, selective_scan_ref, ssd_scan

kernel_mod = importlib.import_module("vidmamba.ssm.scan_kernel")
needs_numba = pytest.mark.skipif(not kernel_mod._load(), reason="numba not importable")

# a fresh process: one float32 kernel scan (forward) on fixed inputs; prints the output's bytes and its max error
# against the float64 reference
SCAN = """
import warnings, torch
warnings.simplefilter("always")
torch.set_num_threads(1)
from vidmamba.ssm import selective_scan, selective_scan_ref
g = torch.Generator().manual_seed(0)
u, dt = torch.randn(2, 70, 9, generator=g), torch.rand(2, 70, 9, generator=g)
A = -torch.rand(70, 3, generator=g) - 0.1
B, C = torch.randn(2, 3, 9, generator=g), torch.randn(2, 3, 9, generator=g)
y = selective_scan(u, dt, A, B, C, impl="auto")
ref, _ = selective_scan_ref(*(t.double() for t in (u, dt, A, B, C)))
print(y.numpy().tobytes().hex(), float((y.double() - ref).abs().max() / ref.abs().max()))
"""


def run_scan(env):
    """(stdout fields, stderr lines) of SCAN in a fresh process with ``env`` added to the environment."""
    out = subprocess.run([sys.executable, "-c", SCAN], capture_output=True, text=True, timeout=600,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split(), [line for line in out.stderr.splitlines() if "Warning" in line]


@needs_numba
def test_corrupted_kernel_cache_is_recompiled_with_one_warning(tmp_path):
    """Garbage in the cache's index and data files (the numba cache of a previous run): the next process warns once,
    recompiles, gives the same bytes as the first run (and the reference's values), and rewrites the cache so the
    process after it runs silently."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first, warned = run_scan(env)
    assert warned == [] and float(first[1]) < 1e-5
    files = sorted(p for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc"))
    assert {p.suffix for p in files} == {".nbi", ".nbc"}
    for p in files:
        p.write_bytes(b"\x80\x04garbage, not a pickle")
    again, warned = run_scan(env)
    assert again == first
    assert len(warned) == 1 and "unreadable kernel cache" in warned[0], warned
    third, warned = run_scan(env)
    assert third == first and warned == []


@needs_numba
def test_kernel_cache_folder_that_cannot_be_made(tmp_path):
    """A cache folder that cannot be created (here: below a regular file; root may write anywhere else): one
    warning, the kernels compile in the process and agree with the reference."""
    (tmp_path / "file").write_text("not a folder")
    got, warned = run_scan({"NUMBA_CACHE_DIR": "", "VIDMAMBA_CACHE": str(tmp_path / "file" / "cache")})
    assert float(got[1]) < 1e-5
    assert len(warned) == 1 and "cannot create the kernel cache folder" in warned[0], warned
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


@needs_numba
def test_kernel_cache_location(tmp_path, monkeypatch):
    """Not inside the installed package: NUMBA_CACHE_DIR when set, else the user cache folder per Python version,
    with a sub-folder per source folder (two installs of the package never share files)."""
    from numba import config

    from vidmamba.ssm import _kernel_cache, _numba_kernels

    fn = _numba_kernels.scan_fwd.py_func
    monkeypatch.setattr(config, "CACHE_DIR", "")
    monkeypatch.setenv("VIDMAMBA_CACHE", str(tmp_path / "user"))
    path = _kernel_cache.KernelCache(fn).cache_path
    version = f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert os.path.dirname(path) == str(tmp_path / "user" / "numba" / version)
    assert os.path.basename(path).startswith("ssm_")           # the source folder's name + a hash of its path
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "numba_dir"))
    assert os.path.dirname(_kernel_cache.KernelCache(fn).cache_path) == str(tmp_path / "numba_dir")


@needs_numba
def test_kernel_that_cannot_compile_falls_back_to_pytorch(monkeypatch):
    """A kernel that raises when called (a failed compilation): one warning, then impl="auto" gives the PyTorch
    path's results for the scan, the SSD scan and the conv; impl="kernel" raises ``KernelError``."""
    from numba.core.errors import TypingError

    def broken(name, args, nblocks):
        raise TypingError("Failed in nopython mode pipeline (a stand-in)")

    monkeypatch.setattr(kernel_mod, "_failure", None)
    monkeypatch.setattr(kernel_mod, "_run_blocks_on_threads", broken)
    g = torch.Generator().manual_seed(0)
    u, dt = torch.randn(2, 8, 11, generator=g), torch.rand(2, 8, 11, generator=g)
    A, B = -torch.rand(8, 3, generator=g), torch.randn(2, 3, 11, generator=g)
    with pytest.warns(RuntimeWarning, match="kernels failed .*TypingError.*PyTorch path") as record:
        y = selective_scan(u, dt, A, B, B, impl="auto")
    assert len(record) == 1
    assert torch.equal(y, selective_scan(u, dt, A, B, B, impl="fast"))
    ref, _ = selective_scan_ref(u.double(), dt.double(), A.double(), B.double(), B.double())
    assert (y.double() - ref).abs().max() <= 1e-5 * ref.abs().max()
    conv = MaskedDepthwiseConv1d(8, 4, activation="silu")
    x = torch.randn(2, 8, 11, generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                             # no second warning
        xs, dts = torch.randn(2, 11, 2, 4, generator=g), torch.rand(2, 11, 2, generator=g)
        As, Bs = -torch.rand(2, generator=g), torch.randn(2, 11, 1, 3, generator=g)
        assert torch.equal(ssd_scan(xs, dts, As, Bs, Bs, impl="auto"), ssd_scan(xs, dts, As, Bs, Bs, impl="fast"))
        conv.impl = "auto"
        y_auto = conv(x)
        conv.impl = "fast"
        assert torch.equal(y_auto, conv(x))
    for call in (lambda: selective_scan(u, dt, A, B, B, impl="kernel"),
                 lambda: MaskedDepthwiseConv1d(8, 4, impl="kernel")(x)):
        with pytest.raises(kernel_mod.KernelError, match="failed in this process"):
            call()
