"""MLVTG's LLMRefiner: trainable Linear -> ONE frozen decoder layer of a pretrained causal LM -> trainable Linear.

The paper (arXiv 2506.08512) uses layer 20 of a frozen Mamba LLM (best among its sweep; 15-22 a "sweet spot");
that is ``configs/mlvtg_qvhighlights.yaml`` / ``configs/mlvtg_charades.yaml`` here
(``model="hf://state-spaces/mamba-2.8b-hf", layer=20``; the LLM is inferred from the paper's 2560-d space;
:func:`layer_footprint`: 41.2 M frozen parameters, 165 MB in float32). Only the chosen layer is ever built and
only its tensors are read: ``config.json`` gives the architecture, the decoder-layer class is instantiated alone,
and its weights are read with ``safetensors.safe_open`` from the one shard that ``model.safetensors.index.json``
names (or ``model.safetensors``). From the hub (``model="hf://owner/name[@revision]"``) only those files are
downloaded.

Supported ``model_type`` values: see :data:`LAYER_CLASSES` (Llama family: llama, mistral, qwen2, qwen3; and mamba).

Choices where the paper is silent (documented, configurable):
- ``residual=True``: output ``z + out_proj(layer(in_proj(z)))`` (False: no skip around the refiner).
- Attention layers are **bidirectional** by default (``causal=False``): every token of the packed ``[Q; V]`` sequence
  sees every valid token, as the rest of the model is bidirectional; ``causal=True`` keeps the LM's causal mask.
  Padded keys are masked either way; RoPE positions are 0..n-1 per sample (the sequence arrives packed, pads last).
  Mamba layers are causal scans by construction (pads at the end never reach valid steps).
- The frozen layer runs in ``dtype`` (float32 by default) and is kept in eval mode (no dropout) even when the model
  trains; its parameters have ``requires_grad=False``, so optimisers built from trainable parameters skip them. They
  stay in ``state_dict`` (a checkpoint is self-contained).
"""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from vidmamba.ssm.layers import masked_fill_pads
from vidmamba.utils import hub_ref, no_such_folder

# model_type -> (transformers module, decoder-layer class, rotary-embedding class or None)
LAYER_CLASSES: dict[str, tuple[str, str, str | None]] = {
    "llama": ("llama", "LlamaDecoderLayer", "LlamaRotaryEmbedding"),
    "mistral": ("mistral", "MistralDecoderLayer", "MistralRotaryEmbedding"),
    "qwen2": ("qwen2", "Qwen2DecoderLayer", "Qwen2RotaryEmbedding"),
    "qwen3": ("qwen3", "Qwen3DecoderLayer", "Qwen3RotaryEmbedding"),
    "mamba": ("mamba", "MambaBlock", None),
}
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


def _require_transformers():
    try:
        import transformers
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("LLMRefiner needs transformers: pip install 'vidmamba[llm]'") from e
    return transformers


def resolve_file(model: str, filename: str, revision: str | None = None, required: bool = True) -> Path | None:
    """``filename`` of ``model``: a local directory, or a hub id ``hf://owner/name[@revision]`` (downloads just that
    file; ``revision`` applies when the id names none). None if absent and not ``required``; FileNotFoundError
    naming the path otherwise."""
    ref = hub_ref(model)
    if ref is None:
        directory = Path(model).expanduser()
        if not directory.is_dir():
            raise no_such_folder("LLM folder", model)
        path = directory / filename
        if path.is_file():
            return path
        if required:
            raise FileNotFoundError(f"{path} not found (needed to load one LLM layer)")
        return None
    from huggingface_hub import hf_hub_download
    repo, pinned = ref
    try:
        return Path(hf_hub_download(repo, filename, revision=pinned or revision))
    except Exception as e:  # the hub raises several error types for a missing entry
        if required:
            raise FileNotFoundError(f"could not fetch {filename} of {model!r}: {e}") from e
        return None


def layer_shard(model: str, revision: str | None = None) -> tuple[Path | None, dict[str, str] | None]:
    """(single-file path, None) or (None, weight_map of the sharded index)."""
    index = resolve_file(model, INDEX_FILE, revision, required=False)
    if index is not None:
        return None, json.loads(index.read_text())["weight_map"]
    single = resolve_file(model, SINGLE_FILE, revision, required=False)
    if single is None:
        raise FileNotFoundError(f"{model}: neither {SINGLE_FILE} nor {INDEX_FILE} found (safetensors weights are "
                                f"required; save the model with save_pretrained(safe_serialization=True))")
    return single, None


def _prefix(names, expected: list[str], index: int, source: str) -> str:
    """The key prefix (e.g. ``model.layers.3.``) under which all of ``expected`` exist among ``names``."""
    pattern = re.compile(rf"^(.*?layers\.{index}\.)")
    candidates = sorted({m.group(1) for n in names if (m := pattern.match(n))}, key=len)
    for p in candidates:
        if all(p + k in names for k in expected):
            return p
    raise KeyError(f"{source}: no complete set of tensors for layer {index} (looked for '*layers.{index}.<name>' "
                   f"with names {expected[:3]}...; candidate prefixes {candidates})")


def load_layer_state(model: str, index: int, expected: list[str], revision: str | None = None) -> dict[str, Tensor]:
    """Read only layer ``index``'s tensors (names relative to the layer) from the safetensors file(s)."""
    from safetensors import safe_open
    single, weight_map = layer_shard(model, revision)
    if single is not None:
        with safe_open(str(single), framework="pt") as f:
            names = set(f.keys())
            prefix = _prefix(names, expected, index, str(single))
            return {k: f.get_tensor(prefix + k) for k in expected}
    prefix = _prefix(set(weight_map), expected, index, f"{model}/{INDEX_FILE}")
    state: dict[str, Tensor] = {}
    for shard in sorted({weight_map[prefix + k] for k in expected}):
        path = resolve_file(model, shard, revision)
        with safe_open(str(path), framework="pt") as f:
            for k in expected:
                if weight_map[prefix + k] == shard:
                    state[k] = f.get_tensor(prefix + k)
    return state


def layer_classes(config, source: str = "LLM") -> tuple[type, type | None]:
    """(decoder-layer class, rotary-embedding class or None) for a transformers ``config``; ValueError naming
    ``source`` for an unsupported ``model_type``."""
    _require_transformers()
    if config.model_type not in LAYER_CLASSES:
        raise ValueError(f"{source}: model_type {config.model_type!r} is not supported by LLMRefiner; "
                         f"supported: {sorted(LAYER_CLASSES)}")
    module_name, layer_cls, rotary_cls = LAYER_CLASSES[config.model_type]
    module = importlib.import_module(f"transformers.models.{module_name}.modeling_{module_name}")
    return getattr(module, layer_cls), getattr(module, rotary_cls) if rotary_cls is not None else None


def layer_footprint(config, layer: int = 0, dtype: torch.dtype = torch.float32) -> tuple[int, int]:
    """(parameters, bytes at ``dtype``) of decoder layer ``layer`` of a transformers ``config``, built on the meta
    device (no memory, no weights): what an :class:`LLMRefiner` on that LLM holds frozen. E.g. layer 20 of
    ``hf://state-spaces/mamba-2.8b-hf`` (the MLVTG configs): 41,244,160 parameters, 165 MB in float32."""
    layer_cls, _ = layer_classes(config)
    with torch.device("meta"):
        block = layer_cls(config, layer)
    n = sum(p.numel() for p in block.parameters())
    return n, n * torch.empty((), dtype=dtype).element_size()


def build_llm_layer(model: str, layer: int, dtype: torch.dtype = torch.float32, revision: str | None = None,
                    attn_implementation: str = "sdpa"):
    """(config, layer module with pretrained weights, rotary module or None, is_mamba) for layer ``layer``."""
    transformers = _require_transformers()
    config_path = resolve_file(model, "config.json", revision)
    config = transformers.AutoConfig.from_pretrained(str(config_path.parent), revision=revision)
    layer_cls, rotary_cls = layer_classes(config, model)
    n_layers = config.num_hidden_layers
    if not 0 <= layer < n_layers:
        raise IndexError(f"{model}: layer index {layer} out of range; the model has {n_layers} layers "
                         f"(0..{n_layers - 1})")
    if rotary_cls is not None:
        config._attn_implementation = attn_implementation
    block = layer_cls(config, layer)
    expected = list(block.state_dict())
    block.load_state_dict(load_layer_state(model, layer, expected, revision), strict=True)
    block.to(dtype)
    rotary = rotary_cls(config=config) if rotary_cls is not None else None
    return config, block, rotary, rotary_cls is None


class LLMRefiner(nn.Module):
    """``z (b, l, hidden) -> [z +] out_proj(frozen_layer(in_proj(z)))``, zero at pads.

    Args:
        hidden_dim: the model width.
        model: local directory, or hub id ``hf://owner/name[@revision]``, of a causal LM saved as safetensors.
        layer: index of the decoder layer to use (0-based; the paper's best is 20).
        residual: add the input back (see module docstring).
        causal: causal attention mask for attention layers (default bidirectional).
        dtype: dtype of the frozen layer ("float32", "bfloat16", "float16").
        revision, attn_implementation: passed to the hub / the transformers attention ("sdpa" or "eager").

    forward(z (b, l, hidden), mask (b, l) bool): the mask must be a valid prefix per sample (packed sequences, as
    :class:`~vidmamba.models.mlvtg.JointAligner` provides); a non-prefix mask is an error.
    """

    def __init__(self, hidden_dim: int, model: str, layer: int, residual: bool = True, causal: bool = False,
                 dtype: str = "float32", revision: str | None = None, attn_implementation: str = "sdpa"):
        super().__init__()
        self.layer_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        config, block, rotary, self.is_mamba = build_llm_layer(model, layer, self.layer_dtype, revision,
                                                               attn_implementation)
        self.model_name, self.layer_index, self.residual, self.causal = str(model), layer, residual, causal
        self.llm_dim = config.hidden_size
        self.in_proj = nn.Linear(hidden_dim, self.llm_dim)
        self.layer = block.requires_grad_(False).eval()
        self.rotary = rotary
        self.out_proj = nn.Linear(self.llm_dim, hidden_dim)

    def train(self, mode: bool = True):
        """Train the projections; the frozen LLM layer always stays in eval mode."""
        super().train(mode)
        self.layer.eval()
        return self

    def _attention_mask(self, mask: Tensor, dtype: torch.dtype) -> Tensor:
        """Additive (b, 1, l, l) mask: padded keys (and future keys when causal) get the dtype's minimum."""
        allowed = mask[:, None, None, :].expand(-1, 1, mask.shape[1], -1)
        if self.causal:
            allowed = allowed & torch.ones(mask.shape[1], mask.shape[1], dtype=torch.bool, device=mask.device).tril()
        return torch.zeros(allowed.shape, dtype=dtype, device=mask.device).masked_fill(~allowed,
                                                                                       torch.finfo(dtype).min)

    def forward(self, z: Tensor, mask: Tensor) -> Tensor:
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]):
            raise ValueError("LLMRefiner needs packed sequences: each mask row must be a valid prefix")
        h = masked_fill_pads(self.in_proj(z), mask, 1).to(self.layer_dtype)
        if self.is_mamba:
            out = self.layer(h, attention_mask=mask.to(self.layer_dtype))
        else:
            positions = torch.arange(z.shape[1], device=z.device)[None].expand(z.shape[0], -1)
            out = self.layer(h, attention_mask=self._attention_mask(mask, self.layer_dtype), position_ids=positions,
                             position_embeddings=self.rotary(h, positions))
        if isinstance(out, tuple):  # older transformers return (hidden_states, ...)
            out = out[0]
        y = self.out_proj(out.to(z.dtype))
        return masked_fill_pads(z + y if self.residual else y, mask, 1)

    def extra_repr(self) -> str:
        return (f"model={self.model_name!r}, layer={self.layer_index}, llm_dim={self.llm_dim}, "
                f"residual={self.residual}, causal={self.causal}")
