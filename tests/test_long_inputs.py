"""Long inputs: the allocator settings of the ``vidmamba`` command (``vidmamba.allocator.keep_freed_memory``: no
trimming, huge pages, blocks reused instead of fresh) change where tensors live, never what ``predict`` answers."""
import json
import os
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
for _ in range(2):   # the second call runs on memory the first one freed
    out = model.predict(batch)
print(json.dumps(dict(applied=applied, preds=out)))
"""


def _predict(name, length, keep):
    env = dict(os.environ, VIDMAMBA_KEEP_FREED_MEMORY="1" if keep else "0")
    env.pop("THP_MEM_ALLOC_ENABLE", None)
    out = subprocess.run([sys.executable, "-c", CHILD, name, str(length)], capture_output=True, text=True, check=True,
                         env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlvtg", "hieramamba"])
def test_predictions_do_not_depend_on_the_allocator_settings(name):
    kept, plain = _predict(name, 12000, keep=True), _predict(name, 12000, keep=False)
    assert plain["applied"] is False and kept["applied"] is (os.name == "posix" and
                                                            __import__("platform").libc_ver()[0] == "glibc")
    assert len(kept["preds"][0]["pred_saliency_scores"]) > 5000 and kept["preds"][0]["pred_relevant_windows"]
    assert kept["preds"] == plain["preds"]          # exactly: same windows, scores and saliency to the last bit
