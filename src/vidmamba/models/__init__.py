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
Each model class declares the batches it takes, ``batch_format``: "lighthouse"
(:meth:`vidmamba.data.lighthouse.MomentDataset.collate`: one sample per query), "snag"
(:meth:`vidmamba.data.snag.SnagDataset.collate`: videos with several queries each) or "ek100"
(:class:`vidmamba.data.ek100.EK100Dataset`).
"""
from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

from vidmamba.errors import ConfigError, ConfigTypeError
from vidmamba.models.hieramamba import HieraMamba, HieraMambaConfig
from vidmamba.models.mambavl import MambaVL, MambaVLConfig
from vidmamba.models.mlvtg import MLVTG, MLVTGConfig


def _mlvtg(aligner: str) -> Callable[..., MLVTGConfig]:
    def config(**cfg) -> MLVTGConfig:
        if cfg.get("aligner", aligner) != aligner:
            raise ConfigError(f"model.aligner {cfg['aligner']!r} conflicts with the model name (aligner {aligner!r})")
        return MLVTGConfig.from_dict({**cfg, "aligner": aligner})
    return config


def _hieramamba(mixer: str) -> Callable[..., HieraMambaConfig]:
    def config(preset: str | None = None, **cfg) -> HieraMambaConfig:
        if cfg.get("mixer", mixer) != mixer:
            raise ConfigError(f"model.mixer {cfg['mixer']!r} conflicts with the model name (mixer {mixer!r})")
        cfg = {**cfg, "mixer": mixer}
        return HieraMambaConfig.preset(preset, **cfg) if preset else HieraMambaConfig.from_dict(cfg)
    return config


#: name -> (model class, ``config(**options)`` building its checked config dataclass)
MODELS: dict[str, tuple[Callable[..., nn.Module], Callable]] = {
    "mlvtg": (MLVTG, _mlvtg("mamba")),
    "mlvtg-transformer": (MLVTG, _mlvtg("transformer")),
    "mlvtg-perclip": (MLVTG, _mlvtg("perclip")),
    "hieramamba": (HieraMamba, _hieramamba("hydra")),
    "hieramamba-transformer": (HieraMamba, _hieramamba("attention")),
    "mambavl": (MambaVL, lambda **cfg: MambaVLConfig.from_dict(cfg)),
}


def model_config(name: str, **options):
    """The checked config dataclass of the registered model ``name`` with ``options`` (no weights are built): an
    unknown name, key or a bad value is a :class:`~vidmamba.errors.ConfigError` naming ``model.<key>``."""
    if name not in MODELS:
        close = difflib.get_close_matches(str(name), MODELS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigTypeError(f"model.name: unknown model {name!r}{hint} (known: {', '.join(sorted(MODELS))})")
    return MODELS[name][1](**options)


def create_model(name: str, **options) -> nn.Module:
    """Build the registered model ``name`` with config fields ``options`` (checked by :func:`model_config`)."""
    config = model_config(name, **options)
    return MODELS[name][0](config)


def list_models() -> list[str]:
    return sorted(MODELS)


__all__ = ["HieraMamba", "HieraMambaConfig", "MLVTG", "MLVTGConfig", "MambaVL", "MambaVLConfig", "MODELS",
           "create_model", "list_models", "model_config"]
