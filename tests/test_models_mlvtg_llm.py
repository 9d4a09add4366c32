"""MLVTG's paper configs (MambaAligner + LLMRefiner on layer 20 of a Mamba LLM) and their aligner-only ablations,
built with a tiny random Mamba LM of the same family (no download); the frozen layer's size for the real LLM."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from vidmamba.data.collate import collate_padded
from vidmamba.data.lighthouse import MomentDataset
from vidmamba.models import MLVTG, MLVTGConfig

transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASETS = ("qvhighlights", "charades")
PAPER_LLM, PAPER_LAYER = "hf://state-spaces/mamba-2.8b-hf", 20


def model_section(name: str) -> dict:
    with open(CONFIGS / f"{name}.yaml") as f:
        section = dict(yaml.safe_load(f)["model"])
    assert section.pop("name") == "mlvtg"
    return section


@pytest.mark.parametrize("dataset", DATASETS)
def test_paper_configs_have_the_refiner_and_ablations_do_not(dataset):
    paper, ablation = model_section(f"mlvtg_{dataset}"), model_section(f"mlvtg_{dataset}_aligner_only")
    assert paper["llm_refiner"]["model"] == PAPER_LLM and paper["llm_refiner"]["layer"] == PAPER_LAYER
    assert ablation["llm_refiner"] is None
    assert {k: v for k, v in paper.items() if k != "llm_refiner"} == \
        {k: v for k, v in ablation.items() if k != "llm_refiner"}


def tiny_mamba_lm(path: Path, layers: int = 24) -> transformers.MambaForCausalLM:
    """A random Mamba LM (the paper LLM's family) deep enough to have layer 20, saved in small safetensors shards."""
    torch.manual_seed(3)
    lm = transformers.MambaForCausalLM(transformers.MambaConfig(
        vocab_size=32, hidden_size=16, state_size=4, num_hidden_layers=layers, expand=2, conv_kernel=4))
    lm.save_pretrained(path, safe_serialization=True, max_shard_size="20KB")
    return lm


def make_sample(T: int, L: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    fg = torch.zeros(T, dtype=torch.bool)
    fg[1:3] = True
    return {"video": torch.randn(T, 12, generator=g), "text": torch.randn(L, 8, generator=g), "foreground": fg,
            "windows": torch.tensor([[2.0, 6.0]]), "saliency": fg.float() * 2, "clip_length": 2.0,
            "duration": 2.0 * T}


@pytest.mark.parametrize("dataset", DATASETS)
def test_paper_config_loads_only_layer_20_of_a_tiny_mamba_lm(dataset, tmp_path):
    lm = tiny_mamba_lm(tmp_path / "lm")
    # keep only the shard(s) holding layer 20: building must not need any other tensor of the LLM
    index = json.loads((tmp_path / "lm" / "model.safetensors.index.json").read_text())["weight_map"]
    needed = {shard for name, shard in index.items() if f"layers.{PAPER_LAYER}." in name}
    assert len(set(index.values()) - needed) >= 2
    for shard in set(index.values()) - needed:
        (tmp_path / "lm" / shard).unlink()
    section = model_section(f"mlvtg_{dataset}")
    refiner = {**section.pop("llm_refiner"), "model": str(tmp_path / "lm")}
    torch.manual_seed(0)
    model = MLVTG(MLVTGConfig(**{**section, "video_dim": 12, "text_dim": 8, "hidden_dim": 16, "num_layers": 1,
                                 "d_state": 4, "llm_refiner": refiner}))
    layer = model.refiner.layer
    assert model.refiner.layer_index == PAPER_LAYER and model.refiner.llm_dim == 16
    saved = lm.backbone.layers[PAPER_LAYER].state_dict()
    assert layer.state_dict().keys() == saved.keys()
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in saved.items())
    per_layer = sum(p.numel() for p in lm.backbone.layers[0].parameters())
    assert sum(p.numel() for p in layer.parameters()) == per_layer            # one layer, not the LLM
    assert not any(p.requires_grad for p in layer.parameters())
    batch = collate_padded([make_sample(7, 3, 1), make_sample(5, 4, 2)], MomentDataset.sequence_keys)
    out = model(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.refiner.in_proj.weight.grad is not None and all(p.grad is None for p in layer.parameters())


def mamba_layer_parameters(h: int, inner: int, state: int, conv: int, rank: int) -> int:
    """Parameters of one transformers Mamba block, by hand: in_proj (h -> 2 inner, no bias), depthwise conv (inner x
    conv + bias), x_proj (inner -> rank + 2 state, no bias), dt_proj (rank -> inner + bias), A_log and D, out_proj
    (inner -> h, no bias), RMSNorm (h)."""
    return (h * 2 * inner + inner * conv + inner + inner * (rank + 2 * state) + rank * inner + inner
            + inner * state + inner + inner * h + h)


def test_layer_footprint_counts_one_layer_by_hand():
    from vidmamba.models.llm_refiner import layer_footprint

    tiny = transformers.MambaConfig(hidden_size=16, state_size=4, num_hidden_layers=3, expand=2, conv_kernel=4)
    k = mamba_layer_parameters(16, 32, 4, 4, 1)                                # dt rank = ceil(16 / 16)
    assert layer_footprint(tiny, 1) == (k, 4 * k)
    # state-spaces/mamba-2.8b-hf (config.json: hidden 2560, intermediate 5120, state 16, conv 4, dt rank 160, 64
    # layers): its layer 20, what the paper configs hold frozen
    real = transformers.MambaConfig(vocab_size=50280, hidden_size=2560, intermediate_size=5120, state_size=16,
                                    num_hidden_layers=64, conv_kernel=4, expand=2, time_step_rank=160,
                                    use_bias=False, use_conv_bias=True)
    n = mamba_layer_parameters(2560, 5120, 16, 4, 160)
    assert n == 41_244_160
    assert layer_footprint(real, PAPER_LAYER) == (n, 4 * n)                    # 165 MB in float32
    assert layer_footprint(real, PAPER_LAYER, torch.bfloat16) == (n, 2 * n)    # 82.5 MB in bfloat16
