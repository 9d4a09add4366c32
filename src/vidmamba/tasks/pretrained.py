"""Checkpoints for people: ``save_pretrained`` / ``from_pretrained`` (a local folder, or a Hugging Face hub id
written ``hf://owner/name[@revision]``).

A pretrained folder is a :mod:`vidmamba.engine.checkpoint` folder without training state (written atomically,
every file's size and sha256 recorded in ``meta.json``)::

    model.safetensors   the weights (EMA weights when the run had EMA)
    config.json         {"format": "vidmamba-pretrained", "format_version": 1, "vidmamba_version": ...,
                         "task": <the grounding task it was trained for; optional, default "qvhighlights">,
                         "model": {"name": ..., <model options>},
                         "data": {<what inference needs to prepare inputs as in training>}}
    meta.json

``data`` holds the conventions a user's video must be prepared with: ``clip_length`` (seconds per clip),
``video_dims`` (width of each video feature type, concatenated in that order; each L2-normalised per clip when
``normalize_video``), ``text_dim``, ``normalize_text`` (L2 per query token), and optionally ``video_features`` /
``text_features`` (feature type names), ``max_text_len``, ``dataset`` and ``encoder`` (the feature extractor, e.g.
a CLIP id). :func:`vidmamba.tasks.export_pretrained` converts a trained run's ``best`` checkpoint.
"""
from __future__ import annotations

import math
from pathlib import Path

from torch import nn

from vidmamba import __version__
from vidmamba.engine.checkpoint import MODEL_FILE, Checkpoint, CheckpointError, describe_mismatch, save_checkpoint
from vidmamba.errors import MissingFileError, require_extra
from vidmamba.models import MODELS, create_model
from vidmamba.tasks.data_config import GroundingData
from vidmamba.utils import hub_ref, no_such_folder

FORMAT = "vidmamba-pretrained"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
REQUIRED_DATA = ("clip_length", "video_dims", "text_dim")
DATA_KEYS = {"clip_length": "a positive number of seconds", "video_dims": "a non-empty list of positive ints",
             "text_dim": "a positive int", "normalize_video": "true/false", "normalize_text": "true/false",
             "video_features": "a list of feature type names", "text_features": "a feature type name",
             "max_text_len": "a positive int or null", "dataset": "a dataset name", "encoder": "a string"}


def is_hub_id(name) -> bool:
    """True for a hub id the user asked for, ``hf://owner/name[@revision]`` (anything else is a local path)."""
    return hub_ref(name) is not None


class PretrainedError(CheckpointError):
    """A pretrained folder that this version cannot use; the message says what differs."""


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _check_data(data, where: str) -> dict:
    """Validate the inference conventions (see the module docstring); returns them with defaults filled in."""
    if not isinstance(data, dict):
        raise PretrainedError(f"{where}: 'data' must be a dict of inference conventions, got {data!r}")
    unknown = sorted(set(data) - DATA_KEYS.keys())
    missing = [k for k in REQUIRED_DATA if k not in data]
    if unknown or missing:
        raise PretrainedError(f"{where}: data conventions " + "; ".join(
            ([f"missing {missing}"] if missing else []) + ([f"unknown keys {unknown}"] if unknown else []))
            + f"; known: {sorted(DATA_KEYS)}")
    data = {"normalize_video": GroundingData.normalize_video, "normalize_text": True, **data}
    checks = {
        "clip_length": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
        "video_dims": lambda v: isinstance(v, list) and v and all(_positive_int(d) for d in v),
        "text_dim": _positive_int,
        "normalize_video": lambda v: isinstance(v, bool), "normalize_text": lambda v: isinstance(v, bool),
        "video_features": lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v),
        "text_features": lambda v: isinstance(v, str), "dataset": lambda v: isinstance(v, str),
        "max_text_len": lambda v: v is None or _positive_int(v), "encoder": lambda v: isinstance(v, str),
    }
    for key, value in data.items():
        if not checks[key](value):
            raise PretrainedError(f"{where}: data.{key} = {value!r}; expected {DATA_KEYS[key]}")
    if "video_features" in data and len(data["video_features"]) != len(data["video_dims"]):
        raise PretrainedError(f"{where}: data.video_features names {len(data['video_features'])} feature types but "
                              f"data.video_dims has {len(data['video_dims'])} widths")
    return data


def _build(model_cfg, data: dict, where: str) -> nn.Module:
    """The model described by ``model_cfg`` ({"name", **options}), checked against the data widths."""
    if not isinstance(model_cfg, dict) or "name" not in model_cfg:
        raise PretrainedError(f"{where}: 'model' must be a dict with a 'name', got {model_cfg!r}")
    options = dict(model_cfg)
    name = options.pop("name")
    if name not in MODELS:
        raise PretrainedError(f"{where}: unknown model name {name!r}; this vidmamba {__version__} knows "
                              f"{sorted(MODELS)}")
    for key, want in (("video_dim", sum(data["video_dims"])), ("text_dim", data["text_dim"]),
                      ("clip_length", data["clip_length"])):
        if key in options and options[key] != want:
            raise PretrainedError(f"{where}: model.{key} = {options[key]} disagrees with the data conventions "
                                  f"({want})")
    try:
        return create_model(name, **options)
    except (TypeError, ValueError) as exc:
        raise PretrainedError(f"{where}: cannot build model {name!r} from its options: {exc}") from exc


def save_pretrained(model: nn.Module, out_dir, config: dict, task: str = "qvhighlights", force: bool = False) -> Path:
    """Write ``model`` as a pretrained folder (atomically); returns its path.

    ``config``: ``{"model": {"name": ..., <options>}, "data": {<inference conventions>}}``. The config must rebuild
    ``model`` exactly (same tensor names and shapes); otherwise ``PretrainedError`` says what differs. An existing
    ``out_dir`` is replaced only when it is a pretrained folder vidmamba wrote, or with ``force`` a folder that holds
    no training run (:func:`vidmamba.engine.checkpoint.check_replaceable`).
    """
    where = f"save_pretrained({out_dir})"
    if not isinstance(config, dict) or set(config) != {"model", "data"}:
        raise PretrainedError(f"{where}: config must be a dict with exactly the keys 'model' and 'data', got "
                              f"{sorted(config) if isinstance(config, dict) else config!r}")
    data = _check_data(config["data"], where)
    rebuilt = _build(config["model"], data, where)
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}  # noqa: E731
    problem = describe_mismatch(shapes(rebuilt), shapes(model))
    if problem:
        raise PretrainedError(f"{where}: the config's model {config['model']['name']!r} does not rebuild the given "
                              f"{type(model).__name__}: {problem}")
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, "task": task, "model": config["model"], "data": data}
    return save_checkpoint(out_dir, model, config=full, info={"kind": FORMAT}, force=force)


def _local_folder(path_or_id) -> Path:
    """A local folder, or the snapshot of a hub id ``hf://owner/name[@revision]`` (the files of a pretrained folder
    only)."""
    ref = hub_ref(path_or_id)
    if ref is None:
        path = Path(path_or_id).expanduser()
        if not path.exists():
            raise no_such_folder("pretrained folder", path_or_id)
        return path
    hub = require_extra("huggingface_hub", "video", f"fetching {path_or_id} from the hub")
    repo, revision = ref
    try:
        return Path(hub.snapshot_download(repo_id=repo, revision=revision,
                                          allow_patterns=[CONFIG_FILE, MODEL_FILE, "meta.json"]))
    except Exception as exc:  # offline, unknown repo, gated...: huggingface_hub raises many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingFileError(f"{path_or_id}: fetching it from the Hugging Face hub failed "
                               f"({type(exc).__name__}: {reason})") from exc


def from_pretrained(path_or_id, map_location="cpu") -> tuple[nn.Module, dict]:
    """Load a pretrained folder (or hub id, or an opened :class:`Checkpoint`): returns ``(model in eval mode,
    config)`` with ``config["data"]`` the inference conventions. An incompatible folder raises ``PretrainedError``
    naming the file and what differs."""
    ckpt = path_or_id if isinstance(path_or_id, Checkpoint) else Checkpoint(_local_folder(path_or_id))
    where = str(ckpt.path / CONFIG_FILE)
    config = ckpt.config
    if config.get("format") != FORMAT:
        hint = " (a training checkpoint: convert it with `vidmamba export RUN --out DIR`)" if "experiment" in config \
            else ""
        raise PretrainedError(f"{where}: format {config.get('format')!r} is not {FORMAT!r}{hint}")
    if config.get("format_version") != FORMAT_VERSION:
        raise PretrainedError(f"{where}: format_version {config.get('format_version')!r} is not supported by vidmamba "
                              f"{__version__} (supports {FORMAT_VERSION}; written by vidmamba "
                              f"{config.get('vidmamba_version', '?')})")
    data = _check_data(config.get("data"), where)
    model = _build(config.get("model"), data, where)
    ckpt.load_model(model)
    return model.to(map_location).eval(), {**config, "data": data}


__all__ = ["FORMAT", "FORMAT_VERSION", "PretrainedError", "from_pretrained", "is_hub_id", "save_pretrained"]
