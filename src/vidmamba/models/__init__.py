"""Models and their registry: ``build_model(name, **cfg)``.

Names: "mlvtg" (MambaAligner), "mlvtg-transformer" (transformer twin), "mlvtg-perclip" (no temporal context);
``cfg`` are :class:`MLVTGConfig` fields (the aligner is set by the name). "hieramamba" and "hieramamba-transformer"
(Hydra replaced by global attention of the same width and depth): :class:`HieraMambaConfig` fields, plus an
optional ``preset`` ("ego4d", "mad", "madv2", "tacos") whose values the other fields override.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from vidmamba.models.hieramamba import HieraMamba, HieraMambaConfig
from vidmamba.models.mambavl import MambaVL, MambaVLConfig
from vidmamba.models.mlvtg import MLVTG, MLVTGConfig


def _mlvtg(aligner: str) -> Callable[..., nn.Module]:
    def build(**cfg) -> nn.Module:
        if cfg.get("aligner", aligner) != aligner:
            raise ValueError(f"aligner {cfg['aligner']!r} conflicts with the model name (aligner {aligner!r})")
        return MLVTG(MLVTGConfig.from_dict({**cfg, "aligner": aligner}))
    return build


def _hieramamba(mixer: str) -> Callable[..., nn.Module]:
    def build(preset: str | None = None, **cfg) -> nn.Module:
        if cfg.get("mixer", mixer) != mixer:
            raise ValueError(f"mixer {cfg['mixer']!r} conflicts with the model name (mixer {mixer!r})")
        cfg = {**cfg, "mixer": mixer}
        return HieraMamba(HieraMambaConfig.preset(preset, **cfg) if preset else HieraMambaConfig.from_dict(cfg))
    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlvtg": _mlvtg("mamba"),
    "mlvtg-transformer": _mlvtg("transformer"),
    "mlvtg-perclip": _mlvtg("perclip"),
    "hieramamba": _hieramamba("hydra"),
    "hieramamba-transformer": _hieramamba("attention"),
    "mambavl": lambda **cfg: MambaVL(MambaVLConfig.from_dict(cfg)),
}


def build_model(name: str, **cfg) -> nn.Module:
    """Build the registered model ``name`` with config fields ``cfg``."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**cfg)


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = ["HieraMamba", "HieraMambaConfig", "MLVTG", "MLVTGConfig", "MODELS", "build_model", "list_models"]
