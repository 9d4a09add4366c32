"""The common behaviour of model config dataclasses: built from plain dicts (YAML) with unknown keys named."""
from __future__ import annotations

from vidmamba.engine.config import Section, check_options
from vidmamba.errors import ConfigError


class ModelConfig(Section):
    """Mixin for ``@dataclass`` model configs (the ``model:`` section of an experiment config)."""

    section = "model"

    @classmethod
    def from_dict(cls, cfg: dict | None, section: str | None = None):
        """Build from a plain dict: unknown keys and wrong types name ``model.key``; a value the config's own checks
        refuse is a :class:`~vidmamba.errors.ConfigError` too."""
        section = section or cls.section
        options = check_options(cls, cfg, section)
        try:
            return cls(**options)
        except ConfigError:
            raise
        except (ValueError, TypeError) as e:  # the dataclass's __post_init__ checks of the values
            raise ConfigError(f"{section}: {e}") from e

    @classmethod
    def resolve(cls, cfg=None, overrides: dict | None = None):
        """``cfg`` (or the defaults) with ``overrides`` applied: what a model's ``__init__(cfg=None, **overrides)``
        stores."""
        if cfg is None:
            return cls.from_dict(overrides or {})
        return cls.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg
