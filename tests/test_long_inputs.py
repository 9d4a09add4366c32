"""Long inputs: what ``vidmamba.allocator.keep_freed_memory`` does for them (freed blocks reused, never trimmed,
huge pages) changes where tensors live, never what ``predict`` answers: a call on fresh memory, one on memory the
previous call freed and one on freed memory filled with junk answer alike, with and without huge pages."""
import json
import os
import platform
import subprocess
import sys

import pytest

CHILD = """
import json, sys, torch
from vidmamba.allocator import keep_freed_memory
applied = keep_freed_memory()
torch.set_num_threads(1)
from vidmamba.models import create_model
configs = {
    "mlvtg": dict(video_dim=256, text_dim=64, hidden_dim=128, num_layers=2, d_state=8, use_tef=True),
    "hieramamba": dict(preset="mad", video_dim=128, text_dim=32, embd_dim=128, text_embd_dim=32, num_blocks=3,
                       d_state=8, headdim=32, fusion_heads=2, max_seq_len=1024, pre_nms_thresh=0.0, min_score=0.0,
                       seg_len_thresh=-1.0),   # random weights: offsets are 0, keep the empty segments too
}
name, length = sys.argv[1], int(sys.argv[2])
torch.manual_seed(0)
model = create_model(name, **configs[name]).eval()
g = torch.Generator().manual_seed(1)
video = torch.randn(1, length, model.cfg.video_dim, generator=g)
text = torch.randn(1, 12, model.cfg.text_dim, generator=g)
batch = dict(video=video, video_mask=torch.ones(1, length, dtype=torch.bool), text=text,
             text_mask=torch.ones(1, 12, dtype=torch.bool))
if name == "hieramamba":
    batch["query_index"] = torch.zeros(1, dtype=torch.long)
outs = []
for i in range(3):   # fresh memory, then memory the previous call freed, then freed memory filled with junk
    if i == 2:
        junk = [torch.full((2**22,), float(k + 1)) for k in range(16)]
        del junk
    outs.append(model.predict(batch))
print(json.dumps(dict(applied=applied, preds=outs)))
"""


def _predict(name, length, huge_pages):
    env = dict(os.environ, VIDMAMBA_KEEP_FREED_MEMORY="1")
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    if not huge_pages:
        env["THP_MEM_ALLOC_ENABLE"] = "0"
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(length)], capture_output=True, text=True, check=True,
                         env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only (a no-op elsewhere)")
@pytest.mark.parametrize("name", ["mlvtg", "hieramamba"])
def test_predictions_do_not_depend_on_memory_reuse_or_huge_pages(name):
    huge, small = _predict(name, 12000, huge_pages=True), _predict(name, 12000, huge_pages=False)
    assert huge["applied"] and small["applied"]
    first = huge["preds"][0][0]
    assert len(first["pred_saliency_scores"]) > 5000 and first["pred_relevant_windows"]
    # exactly: same windows, scores and saliency to the last bit
    assert all(preds == huge["preds"][0] for preds in huge["preds"] + small["preds"])
