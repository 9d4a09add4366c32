"""Same seed, same thread count -> bit-identical training, whether the numba kernels were just compiled (empty cache)
or loaded from the cache, alone or beside another run (fresh processes, the demo's MLVTG, a few AdamW steps)."""
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


def start(cache_dir):
    env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}     # as the CLI runs
    return subprocess.Popen([sys.executable, "-c", TRAIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def digest(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out.split()[-1]


@pytest.mark.slow
@pytest.mark.skipif(not kernel_available(), reason="numba not importable")
def test_training_is_bit_identical_cold_warm_and_busy(tmp_path):
    cold = digest(start(tmp_path))                         # empty cache: every kernel compiled in the process
    assert any(tmp_path.rglob("*.nbi"))
    warm = digest(start(tmp_path))                         # every kernel loaded from the cache
    busy = [start(tmp_path), start(tmp_path)]              # two at once on the same cores
    assert [warm] + [digest(p) for p in busy] == [cold] * 3
