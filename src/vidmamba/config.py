"""Experiment configs: YAML files with ``model``, ``data`` and ``train`` sections, plus ``--set key=value`` overrides.

An override must name a key that exists in the file (``train.lr=3e-4``, ``model.hidden_dim=128``); its value is parsed
as YAML (``true``, ``1e-4``, ``[a, b]``). A typo is an error naming the key, never a silently ignored setting. New keys
can be added on purpose with ``+key=value``.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

SECTIONS = ("task", "model", "data", "train")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the file and key."""


def parse_override(text: str) -> tuple[list[str], object, bool]:
    """``"a.b=1"`` -> (["a", "b"], 1, False); a leading ``+`` allows a new key."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, value = text.split("=", 1)
    add = key.startswith("+")
    path = key.lstrip("+").strip().split(".")
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key part")
    return path, yaml.safe_load(value), add


def apply_overrides(config: dict, overrides, source: str = "<config>") -> dict:
    """Return a copy of ``config`` with each ``key=value`` override applied (see module docstring)."""
    config = copy.deepcopy(config)
    for text in overrides or ():
        path, value, add = parse_override(text)
        node = config
        for depth, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                if not add:
                    raise ConfigError(f"{source}: override {text!r}: no section {'.'.join(path[:depth + 1])!r}")
                node[part] = {}
            node = node[part]
        if path[-1] not in node and not add:
            known = ", ".join(sorted(node)) or "none"
            raise ConfigError(f"{source}: override {text!r}: unknown key {'.'.join(path)!r} (keys here: {known}; "
                              f"use +{'.'.join(path)}=... to add it)")
        node[path[-1]] = value
    return config


def load_config(path, overrides=()) -> dict:
    """Read a YAML experiment config and apply overrides. Relative data paths stay relative to the working dir."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        config = yaml.safe_load(path.read_text())
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
