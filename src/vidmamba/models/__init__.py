"""Models and their one registry: ``create_model(name, **options)`` (in the spirit of timm's ``create_model``; a
config's ``model`` section is ``{"name": ..., **options}``, so ``create_model(**config["model"])`` builds it).

Names: "mlvtg" (MambaAligner), "mlvtg-transformer" (transformer twin), "mlvtg-perclip" (no temporal context):
``options`` are :class:`MLVTGConfig` fields (the aligner is set by the name). "hieramamba" and
"hieramamba-transformer" (Hydra replaced by global attention of the same width and depth): :class:`HieraMambaConfig`
fields, plus an optional ``preset`` ("ego4d", "mad", "madv2", "tacos") whose values the other fields override.
"mambavl": :class:`MambaVLConfig` fields.

One prediction contract per kind of model: every grounding model's ``predict(batch)`` returns one dict per query,
``{"pred_relevant_windows": [[start_s, end_s, score], ...] (score-sorted), "pred_saliency_scores": [one per clip]}``
(MLVTG on lighthouse batches, HieraMamba on SnAG batches); MambaVL's ``predict`` returns verb / noun probabilities.
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


def create_model(name: str, **options) -> nn.Module:
    """Build the registered model ``name`` with config fields ``options``; an unknown name is a ``KeyError``
    listing the known ones, bad options a ``ValueError`` / ``TypeError`` from the model's config."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](**options)


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = ["HieraMamba", "HieraMambaConfig", "MLVTG", "MLVTGConfig", "MambaVL", "MambaVLConfig", "MODELS",
           "create_model", "list_models"]
