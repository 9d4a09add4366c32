"""Same seed, same thread count -> bit-identical training, whether the numba kernels were just compiled (empty cache)
or loaded from the cache, alone or beside another run, with 512- or 256-bit vectors (fresh processes, the demo's
MLVTG, a few AdamW steps)."""
import os
import subprocess
import sys

import pytest

from vidmamba.ssm.scan_kernel import kernel_available

# a few training steps of the demo's MLVTG on seeded random batches (lengths 30-150 clips, padded); prints a
# sha256 of every weight's bytes after the steps
TRAIN = """
import hashlib, torch
from vidmamba.data.collate import collate_padded
from vidmamba.data.lighthouse import MomentDataset
from vidmamba.demo import DEMO_MODEL, DEMO_TRAIN
from vidmamba.engine.optim import build_optimizer
from vidmamba.models import create_model
torch.set_num_threads(2)
g = torch.Generator().manual_seed(0)
def sample(T):
    fg = torch.zeros(T, dtype=torch.bool); fg[T // 3:T // 3 + 4] = True
    w = torch.tensor([[T // 3 * 2.0, (T // 3 + 4) * 2.0]])
    return {"qid": 0, "vid": "v", "query": "q", "duration": T * 2.0, "clip_length": 2.0,
            "video": torch.randn(T, 128, generator=g), "text": torch.randn(7, 64, generator=g), "windows": w,
            "windows_norm": w / (T * 2.0), "foreground": fg, "saliency": fg.float() * 2}
batches = [collate_padded([sample(T + 9 * i) for i in range(6)], MomentDataset.sequence_keys) for T in (30, 100)]
torch.manual_seed(0)
model = create_model("mlvtg", video_dim=128, text_dim=64, **DEMO_MODEL)
opt = build_optimizer(model, lr=DEMO_TRAIN["lr"], weight_decay=DEMO_TRAIN["weight_decay"])
model.train()
for step in range(4):
    opt.zero_grad(set_to_none=True)
    model(batches[step % 2])["loss"].backward()
    opt.step()
h = hashlib.sha256()
for name, t in sorted(model.state_dict().items()):
    h.update(t.contiguous().numpy().tobytes())
print(h.hexdigest())
"""


def start(cache_dir, **env_vars):
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "NUMBA_CACHE_DIR": str(cache_dir), **env_vars}  # as the CLI
    return subprocess.Popen([sys.executable, "-c", TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def digest(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out.split()[-1]


@pytest.mark.slow
@pytest.mark.skipif(not kernel_available(), reason="numba not importable")
def test_training_is_bit_identical_cold_warm_busy_and_at_either_vector_width(tmp_path):
    cold = digest(start(tmp_path))                         # empty cache: every kernel compiled in the process
    assert any(tmp_path.rglob("*.nbi"))
    warm = digest(start(tmp_path))                         # every kernel loaded from the cache
    busy = [start(tmp_path), start(tmp_path)]              # two at once on the same cores
    assert [warm] + [digest(p) for p in busy] == [cold] * 3
    from numba.core.codegen import get_host_cpu_features

    features = get_host_cpu_features()                     # on AVX-512 the kernels have 512-bit vectors; with the
    if "+avx512f" in features.split(","):                  # host's features as they are, LLVM's 256-bit ones
        assert digest(start(tmp_path, NUMBA_CPU_FEATURES=features)) == cold


# what the kernels' first load sets numba's CPU features to (scan_kernel._prefer_wide_vectors)
PROBE = """
from vidmamba.ssm.scan_kernel import kernel_available
kernel_available()
import numba
from numba.core.codegen import get_host_cpu_features
print(numba.config.CPU_FEATURES == get_host_cpu_features() + ",-prefer-256-bit", "+avx512f" in get_host_cpu_features())
"""


def probe(code=PROBE, **env_vars):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **env_vars}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", out[1] == "True"


@pytest.mark.skipif(not kernel_available(), reason="numba not importable")
def test_wide_vectors_only_on_avx512_and_never_over_the_users_settings():
    lifted, avx512 = probe()
    assert lifted == avx512                                             # on AVX-512 hosts, and only there
    assert probe(NUMBA_CPU_FEATURES="+sse2") == (False, avx512)         # the user's features win
    assert probe(NUMBA_CPU_NAME="generic") == (False, avx512)
    assert probe("import numba\n" + PROBE) == (False, avx512)           # numba imported before: left alone

