"""The common behaviour of model config dataclasses: built from plain dicts (YAML) with unknown keys named."""
from __future__ import annotations

from dataclasses import asdict, fields


class ModelConfig:
    """Mixin for ``@dataclass`` model configs; ``display_name`` names the model in error messages."""

    display_name = "model"

    @classmethod
    def from_dict(cls, cfg: dict):
        """Build from a plain dict, naming unknown keys in the error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise TypeError(f"unknown {cls.display_name} config keys {unknown}; known: {sorted(known)}")
        return cls(**cfg)

    @classmethod
    def resolve(cls, cfg=None, overrides: dict | None = None):
        """``cfg`` (or the defaults) with ``overrides`` applied: what a model's ``__init__(cfg=None, **overrides)``
        stores."""
        if cfg is None:
            return cls.from_dict(overrides or {})
        return cls.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg

    def to_dict(self) -> dict:
        return asdict(self)
