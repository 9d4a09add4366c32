"""Action recognition / anticipation tasks (MambaVL; tasks "action" and "anticipation").

Config sections (see ``configs/mambavl_*.yaml``):

* ``task``: "action" (recognition, checkpoint selection by action top-1) or "anticipation" (selection by action mean
  top-5 recall, the EK100 anticipation protocol);
* ``model``: ``name: mambavl`` + :class:`~vidmamba.models.mambavl.MambaVLConfig` options; ``video_dim``,
  ``text_dim``, ``num_verbs``, ``num_nouns`` are read off the data when absent (and checked when given);
* ``data``: EK100 files (:mod:`vidmamba.data.ek100`): ``train`` / ``val`` (/ ``test``) annotation CSVs,
  ``verb_classes`` / ``noun_classes`` class CSVs, ``features`` folder (recognition: ``<narration_id>.npy``;
  anticipation: per video ``<video_id>.npy`` at ``fps`` with ``obs_seconds`` / ``tau_a``); or ``synthetic: {params}``
  for :mod:`vidmamba.data.synthetic_action` (generated once under ``$VIDMAMBA_CACHE``; explicit file keys win).
  Questions: ``text_encoder`` (``{kind: words, dim, seed, max_length}``, the offline word vocabulary, or
  ``{kind: hf, path, max_length}``, a local transformers checkpoint), ``question_seed``, ``question_context``
  ("narration": the narration, label words masked, is appended to the questions; recognition only),
  ``predicted_actions`` (anticipation, and unlabelled splits such as the EK100 test CSV: JSON
  ``{narration_id: [verb, noun]}`` of an external model, whose questions are asked; ids not in it, or no
  file, get the generic label-free questions), ``action_mode`` (action top-k: "outer" product, the EK100
  convention, or "both_in_topk", MambaVL's SlowFast code);
* ``train``: :class:`~vidmamba.engine.config.TrainerConfig` options.

Questions are drawn per sample: a random template at every training access, one fixed template per narration id
at evaluation. :func:`evaluate` writes ``<split>_preds.jsonl`` (narration_id, verb / noun top-5 classes with
softmax scores) and ``<split>_metrics.json`` (:func:`~vidmamba.metrics.action.ek100_metrics` + a flat ``brief``).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidmamba.data.ek100 import EK100_COLUMNS, EK100Dataset, read_ek100_annotations, read_ek100_classes
from vidmamba.data.errors import DataFormatError
from vidmamba.data.features import find_feature_file
from vidmamba.data.questions import HFTokenEmbedding, QuestionDataset, QuestionGenerator, WordVocab, tokenize
from vidmamba.data.synthetic_action import ensure_action_benchmark
from vidmamba.engine.config import set_from_data
from vidmamba.engine.trainer import to_device
from vidmamba.metrics.action import ACTION_MODES, ek100_metrics, topk_indices
from vidmamba.models import create_model
from vidmamba.errors import ConfigError
from vidmamba.tasks.base import Task, register
from vidmamba.tasks.data_config import ActionData

MODES = {"action": "recognition", "anticipation": "anticipation"}
SYNTHETIC_FILES = {"train": "EPIC_100_train.csv", "val": "EPIC_100_validation.csv",
                   "verb_classes": "EPIC_100_verb_classes.csv", "noun_classes": "EPIC_100_noun_classes.csv",
                   "features": "features"}
INPUT_KEYS = ("feat_dim", "vocab", "text_encoder", "question_seed", "question_context")
TEXT_ENCODER_KEYS = {"words": {"kind", "dim", "seed", "max_length"}, "hf": {"kind", "path", "max_length"}}


def data_options(data: dict) -> dict:
    """The data section (:class:`~vidmamba.tasks.data_config.ActionData`) completed, with ``synthetic`` resolved to
    files; unknown / missing keys are errors."""
    data = ActionData.complete(data)
    if data["action_mode"] not in ACTION_MODES:
        raise ConfigError(f"data.action_mode must be one of {ACTION_MODES}, got {data['action_mode']!r}")
    if data.get("question_context") not in (None, "narration"):
        raise ConfigError(f"data.question_context must be 'narration' or null, got {data['question_context']!r}")
    if data.get("synthetic") is not None:
        root = ensure_action_benchmark(**data["synthetic"])
        for key, name in SYNTHETIC_FILES.items():
            data.setdefault(key, str(root / name))
    ActionData.check_required(data)
    return data


def _has_labels(csv_path) -> bool:
    with open(csv_path, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    return all(c in header for c in EK100_COLUMNS)


def _classes(data: dict) -> tuple[list, list]:
    return read_ek100_classes(data["verb_classes"]), read_ek100_classes(data["noun_classes"])


def build_base_dataset(data: dict, split: str, task: str) -> EK100Dataset:
    """The EK100 samples of ``split``; every feature file is checked to exist before anything is trained."""
    if split not in data:
        raise ConfigError(f"data.{split} is missing: the {split!r} annotation file")
    verbs, nouns = _classes(data)
    ds = EK100Dataset(data[split], data["features"], mode=MODES[task], labels=_has_labels(data[split]),
                      fps=data.get("fps"), obs_seconds=data.get("obs_seconds"), tau_a=data["tau_a"],
                      verb_classes=verbs, noun_classes=nouns, feat_dim=data.get("feat_dim"))
    stems = sorted({a.narration_id if task == "action" else a.video_id for a in ds.actions})
    for stem in stems:
        find_feature_file(data["features"], stem, item=f"{'narration_id' if task == 'action' else 'video_id'} {stem}")
    return ds


def question_generator(data: dict) -> QuestionGenerator:
    verbs, nouns = _classes(data)
    return QuestionGenerator([c.key for c in verbs], [c.key for c in nouns], seed=data["question_seed"])


def text_embedder(data: dict):
    """The frozen token embedding of ``data.text_encoder`` (the word vocabulary needs ``data.vocab``)."""
    enc = dict(data.get("text_encoder") or {"kind": "words"})
    kind = enc.get("kind", "words")
    if kind not in TEXT_ENCODER_KEYS:
        raise ConfigError(f"data.text_encoder.kind must be one of {sorted(TEXT_ENCODER_KEYS)}, got {kind!r}")
    unknown = sorted(set(enc) - TEXT_ENCODER_KEYS[kind])
    if unknown:
        raise ConfigError(f"unknown data.text_encoder keys {unknown} for kind {kind!r}")
    max_length = int(enc.get("max_length", 40))
    if kind == "hf":
        if "path" not in enc:
            raise ConfigError("data.text_encoder of kind 'hf' needs 'path' (a local transformers checkpoint folder)")
        return HFTokenEmbedding(enc["path"], max_length=max_length)
    return WordVocab(data["vocab"], dim=int(enc.get("dim", 768)), seed=int(enc.get("seed", 0)), max_length=max_length)


def _predicted_actions(data: dict, n_verbs: int, n_nouns: int) -> dict:
    path = data.get("predicted_actions")
    if path is None:
        return {}
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataFormatError(path, f"cannot read predicted actions: {exc}") from None
    if not isinstance(table, dict):
        raise DataFormatError(path, "bad predicted actions", expected="{narration_id: [verb, noun]}",
                              found=type(table).__name__)
    out = {}
    for nid, pair in table.items():
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(c, int) for c in pair)
                or not (0 <= pair[0] < n_verbs and 0 <= pair[1] < n_nouns)):
            raise DataFormatError(path, "bad predicted action", item=f"narration_id {nid!r}",
                                  expected=f"[verb < {n_verbs}, noun < {n_nouns}]", found=repr(pair))
        out[nid] = tuple(pair)
    return out


def build_dataset(data: dict, split: str, task: str, *, train: bool = False,
                  base: EK100Dataset | None = None) -> QuestionDataset:
    """The ``split`` samples (``base``: already built) with their question embeddings (``data`` resolved: feature
    width and vocabulary fixed, :meth:`ActionTask.read_widths`)."""
    base = base if base is not None else build_base_dataset(data, split, task)
    generator = question_generator(data)
    actions = None  # recognition with labels: the questions of the sample's own action (as the paper's GPT ones)
    if task == "anticipation" or not _has_labels(data[split]):
        actions = _predicted_actions(data, len(generator.verb_words), len(generator.noun_words))
    context = data.get("question_context") if task == "action" else None
    return QuestionDataset(base, generator, text_embedder(data), actions, random_templates=train,
                           context_key=context)


@torch.no_grad()
def predict_scores(model, loader: DataLoader, device="cpu") -> dict:
    """Softmax scores of every sample: ``{"narration_id": [...], "verb": (N, V), "noun": (N, N_n), "verb_label",
    "noun_label": (N,) (-1 when unlabelled)}``."""
    ids, verb, noun, vl, nl = [], [], [], [], []
    for batch in loader:
        out = model.predict(to_device(batch, torch.device(device)))
        ids += list(batch["narration_id"])
        verb.append(out["verb"].float().cpu().numpy())
        noun.append(out["noun"].float().cpu().numpy())
        vl.append(batch["verb"].numpy())
        nl.append(batch["noun"].numpy())
    return {"narration_id": ids, "verb": np.concatenate(verb), "noun": np.concatenate(noun),
            "verb_label": np.concatenate(vl), "noun_label": np.concatenate(nl)}


def score(pred: dict, action_mode: str = "outer") -> dict:
    """:func:`ek100_metrics` of the predictions (probabilities) plus ``brief``: the flat ``<part>_<metric>`` dict.
    Empty when the split has no labels."""
    if (pred["verb_label"] < 0).any() or (pred["noun_label"] < 0).any():
        return {}
    metrics = ek100_metrics(pred["verb"], pred["noun"], pred["verb_label"], pred["noun_label"],
                            action_mode=action_mode, logits=False)
    metrics["brief"] = {f"{part}_{name}": value for part, res in metrics.items() for name, value in res.items()}
    return metrics


def prediction_rows(pred: dict, k: int = 5) -> list[dict]:
    """One row per sample: ``{"narration_id", "verb": {"classes": [k], "scores": [k]}, "noun": {...}}``."""
    rows = [{"narration_id": nid} for nid in pred["narration_id"]]
    for part in ("verb", "noun"):
        scores = pred[part]
        top = topk_indices(scores, k)
        for row, cls, s in zip(rows, top, np.take_along_axis(scores, top, 1)):
            row[part] = {"classes": cls.tolist(), "scores": [round(float(x), 6) for x in s]}
    return rows


class ActionTask(Task):
    """EK100-style verb / noun / action classification of trimmed segments (recognition) or of the observed video
    before an action (anticipation), with questions whose label words are masked."""

    family = "action"
    input_keys = INPUT_KEYS
    data_config = ActionData

    def data_options(self, data: dict) -> dict:
        return data_options(data)

    def prepare(self, config: dict):
        """As the skeleton's, but the questions' text embedder needs the vocabulary that :meth:`read_widths` fixes:
        the EK100 samples are built first, their questions after."""
        config = self.check_config(config)
        data = config["data"] = self.data_options(config["data"])
        base = build_base_dataset(data, "train", self.name)
        self.read_widths(config, base)
        return config, build_dataset(data, "train", self.name, train=True, base=base)

    def build_dataset(self, data: dict, split: str, *, train: bool = False):
        return build_dataset(data, split, self.name, train=train)

    def read_widths(self, config: dict, train_set) -> None:
        """Fix the data (``feat_dim`` from the first training sample, ``vocab`` for the word encoder) and set the
        model's ``video_dim`` / ``text_dim`` / ``num_verbs`` / ``num_nouns`` from it (a given value that disagrees
        is an error)."""
        base, data = train_set, config["data"]
        if "feat_dim" not in data:
            data["feat_dim"] = int(base[0]["video"].shape[1])
        base.feat_dim = data["feat_dim"]
        generator = question_generator(data)
        if (data.get("text_encoder") or {}).get("kind", "words") == "words" and "vocab" not in data:
            words = set(generator.vocabulary_words())
            if data.get("question_context") == "narration" and self.name == "action":
                for a in read_ek100_annotations(data["train"]):
                    words.update(tokenize(a.narration or ""))
            data["vocab"] = sorted(words)
        set_from_data(config["model"], video_dim=data["feat_dim"], text_dim=text_embedder(data).dim,
                      num_verbs=len(generator.verb_words), num_nouns=len(generator.noun_words))

    def build_model(self, config: dict) -> torch.nn.Module:
        return create_model(**config["model"])

    def predict(self, model, loader, data: dict, device="cpu") -> dict:
        return predict_scores(model, loader, device)

    def scorer(self, data: dict, split: str, dataset):
        return lambda pred: score(pred, data["action_mode"])

    def output_rows(self, predictions: dict) -> list[dict]:
        return prediction_rows(predictions)


# checkpoint selection: action top-1 (recognition), action mean top-5 recall (the EK100 anticipation protocol)
register(ActionTask("action", "action_top1"), ActionTask("anticipation", "action_mean_top5_recall"))

__all__ = ["ActionTask", "build_base_dataset", "build_dataset", "data_options", "predict_scores",
           "prediction_rows", "score"]
