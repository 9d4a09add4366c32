"""Experiment configs: YAML files with ``model``, ``data`` and ``train`` sections, plus ``--set key=value`` overrides.

An override names a section and a key (``train.lr=3e-4``, ``model.hidden_dim=128``); its value is parsed as YAML
(``true``, ``1e-4``, ``[a, b]``). Keys are checked where they are used (``TrainerConfig``, ``MLVTGConfig``, the data
options), so a typo is an error naming the key, never a silently ignored setting.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import yaml

from vidmamba.errors import ConfigError

SECTIONS = ("task", "source", "model", "data", "train")  # source: where the public data comes from


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; configs mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$|^[-+]?(?:[0-9][0-9_]*)?\.[0-9_]+$"
               r"|^[-+]?[0-9][0-9_]*\.$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_override(text: str) -> tuple[list[str], object]:
    """``"a.b=1e-4"`` -> (["a", "b"], 0.0001)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key part")
    try:
        return path, _yaml(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({problem}); quote it, e.g. "
                          f"{key.strip()}='\"...\"', or write a list as [a, b]") from None


def apply_overrides(config: dict, overrides, source: str = "<config>") -> dict:
    """Return a copy of ``config`` with each ``section.key=value`` override applied (see module docstring)."""
    config = copy.deepcopy(config)
    for text in overrides or ():
        path, value = parse_override(text)
        if path[0] not in SECTIONS:
            raise ConfigError(f"{source}: override {text!r}: unknown section {path[0]!r}; expected one of {SECTIONS}")
        node = config
        for depth, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: override {text!r}: {'.'.join(path[:depth + 1])!r} is not a section")
        node[path[-1]] = value
    return config


def load_config(path, overrides=()) -> dict:
    """Read a YAML experiment config and apply overrides. Relative data paths stay relative to the working dir."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {path} is a folder; expected a YAML file such as configs/mlvtg_qvhighlights.yaml")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = _yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping with sections {SECTIONS}, found {type(config).__name__}")
    unknown = set(config) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level section(s) {sorted(unknown)}; expected {SECTIONS}")
    for section in ("model", "data", "train"):
        config.setdefault(section, {})
    return apply_overrides(config, overrides, str(path))
