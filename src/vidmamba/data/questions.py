"""Template questions for MambaVL (official ``slowfast/datasets/epickitchens.py``) and their frozen token embeddings.

MambaVL feeds each head a question: the verb head a question about the action, the noun head one about the object.
The official questions were written by GPT from the ground-truth action; then ``mask_given_phrase`` replaced the
GT **noun** phrase in the verb question and the GT **verb** phrase in the noun question by ``<mask>``, so the label
cannot be read off the text. Here the questions come from fixed templates (no LLM), several per head:

- a verb question may name the noun ("What is the person doing with the {noun}?") and a noun question may name the
  verb ("What object does the person {verb}?"); that slot is always masked, as in the official code;
- in addition, every word of BOTH labels is masked wherever it occurs (whole words, case-insensitive, up to a crude
  suffix strip: "hands" matches the noun "hand", "holding" the verb "hold", "cutting" the verb "cut"). The official code masked only the
  other label because a GPT question does not state its own answer; a template can contain it by accident.

Class keys (EK100 ``key`` column) become words: ``-`` and ``_`` separate words, ``:`` separates a head noun from its
modifiers, which come first in English: "put-down" -> "put down", "pan:dust" -> "dust pan".

The template is drawn with a seeded RNG: ``generate(verb, noun, key=...)`` is a pure function of (seed, key, labels),
so it is the same in any worker and any epoch; without a key the generator's own seeded stream is used.

Context (the paper's questions "provide information about actions, objects, and environmental context"):
``generate(..., context=text)`` appends ``text`` (e.g. the annotation's narration "take jar from the shelf") to both
questions before masking, so its label words are masked too and only the rest ("<mask> from the shelf") is left.
When no action is known (anticipation without predicted actions), :meth:`QuestionGenerator.generic` gives the
label-free questions ("What action is performed using hands in the video?" / "What is the object in the video?").

Token embeddings are frozen (``requires_grad=False``, never trained):

- :class:`WordVocab` (default, offline): a word-level vocabulary built from the templates and the class words, with
  a randomly initialised embedding table seeded by ``seed``;
- :class:`HFTokenEmbedding`: a ``transformers`` tokenizer and the input-embedding matrix read from the model's
  ``.safetensors`` file in a local directory, without loading the model. Only the word-embedding matrix is used
  (the official model used RoBERTa's embedding layer, i.e. also its position embeddings and LayerNorm).
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils.data import Dataset

from .collate import PaddedCollate

MASK = "<mask>"
PAD, UNK = "<pad>", "<unk>"

VERB_TEMPLATES = (
    "What is the person doing with the {noun}?",
    "What action is performed on the {noun} in this video?",
    "How are the hands interacting with the {noun}?",
    "Which action involving the {noun} happens in this clip?",
    "What action is performed using hands in the video?",
)
NOUN_TEMPLATES = (
    "What object does the person {verb}?",
    "Which item do the hands {verb} in this clip?",
    "What is being used when they {verb} in the kitchen?",
    "What does the camera wearer {verb} here?",
    "What is the object in the video?",
)

GENERIC_VERB_QUESTION, GENERIC_NOUN_QUESTION = VERB_TEMPLATES[-1], NOUN_TEMPLATES[-1]

_TOKEN = re.compile(r"<mask>|[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")
_SUFFIXES = ("ing", "es", "ed", "s", "d")


def key_to_words(key: str) -> list[str]:
    """An EK100 class key -> lower-case words: ``"put-down"`` -> ``["put", "down"]``, ``"pan:dust"`` ->
    ``["dust", "pan"]`` (modifiers after ':' come first), ``"cheese:parmesan"`` -> ``["parmesan", "cheese"]``."""
    parts = [p for p in key.strip().lower().split(":") if p]
    if not parts:
        raise ValueError(f"empty class key {key!r}")
    words = [w for part in reversed(parts) for w in re.split(r"[-_\s]+", part) if w]
    if not words:
        raise ValueError(f"class key {key!r} has no words")
    return words


def tokenize(text: str) -> list[str]:
    """Lower-case word / punctuation tokens; ``<mask>`` is one token."""
    return _TOKEN.findall(text.lower())


def _forms(word: str) -> set[str]:
    """The word and its crude stems (one suffix of :data:`_SUFFIXES` stripped, at least 3 letters left; a doubled
    final consonant undone: "cutting" -> "cut"; a dropped "e" restored: "using" -> "use"). Two words match when
    their form sets intersect."""
    forms = {word}
    for suffix in _SUFFIXES:
        stem = word[: -len(suffix)]
        if suffix in ("ing", "ed") and word.endswith(suffix) and len(stem) >= 2:
            forms.add(stem + "e")                                   # "using" -> "use", "taking" -> "take"
        if word.endswith(suffix) and len(stem) >= 3:
            forms.add(stem)
            if len(stem) >= 4 and stem[-1] == stem[-2] and stem[-1] not in "aeiou":
                forms.add(stem[:-1])
    return forms


def _matcher(words: Sequence[str]):
    targets = set().union(*(_forms(w.lower()) for w in words)) if words else set()
    return lambda tok: tok != MASK and not _forms(tok).isdisjoint(targets)


def mask_words(text: str, words: Sequence[str]) -> str:
    """Replace every token of ``text`` matching one of ``words`` (up to :func:`_forms`) by ``<mask>``; consecutive masks
    merge into one (a masked phrase is one ``<mask>``). Returns the tokens joined by spaces."""
    is_label = _matcher(words)
    out: list[str] = []
    for tok in tokenize(text):
        if tok == MASK or is_label(tok):
            if not out or out[-1] != MASK:
                out.append(MASK)
        else:
            out.append(tok)
    return " ".join(out)


def leaked_words(question: str, words: Sequence[str]) -> list[str]:
    """Tokens of ``question`` that match a label word (what :func:`mask_words` must have removed)."""
    is_label = _matcher(words)
    return [t for t in tokenize(question) if is_label(t)]


@dataclass
class QuestionPair:
    verb_question: str     # asks about the verb (feeds the verb head)
    noun_question: str     # asks about the noun (feeds the noun head)
    verb_template: int
    noun_template: int


class QuestionGenerator:
    """Masked template questions for (verb class, noun class) pairs of a dataset's vocabularies.

    verb_keys / noun_keys: class keys indexed by class id (e.g. the ``key`` column of the EK100 class CSVs).
    verb_templates must use only a ``{noun}`` slot (or none); noun_templates only a ``{verb}`` slot (or none).
    """

    def __init__(self, verb_keys: Sequence[str], noun_keys: Sequence[str], *, seed: int = 0,
                 verb_templates: Sequence[str] = VERB_TEMPLATES, noun_templates: Sequence[str] = NOUN_TEMPLATES):
        if not verb_keys or not noun_keys:
            raise ValueError("QuestionGenerator needs non-empty verb and noun vocabularies")
        for templates, slot, other in ((verb_templates, "{noun}", "{verb}"), (noun_templates, "{verb}", "{noun}")):
            if not templates:
                raise ValueError("QuestionGenerator needs at least one template per head")
            for t in templates:
                if other in t or re.sub(r"\{(noun|verb)\}", "", t).count("{"):
                    raise ValueError(f"template {t!r} may only use the slot {slot}")
        self.verb_words = [key_to_words(k) for k in verb_keys]
        self.noun_words = [key_to_words(k) for k in noun_keys]
        self.verb_templates, self.noun_templates = tuple(verb_templates), tuple(noun_templates)
        self.seed = seed
        self._rng = random.Random(seed)

    @classmethod
    def from_ek100(cls, verb_classes_csv, noun_classes_csv, **kwargs) -> "QuestionGenerator":
        """From ``EPIC_100_verb_classes.csv`` / ``EPIC_100_noun_classes.csv``."""
        from .ek100 import read_ek100_classes
        return cls([c.key for c in read_ek100_classes(verb_classes_csv)],
                   [c.key for c in read_ek100_classes(noun_classes_csv)], **kwargs)

    def _rng_for(self, key) -> random.Random:
        if key is None:
            return self._rng
        digest = hashlib.sha256(f"{self.seed}\x00{key}".encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "little"))

    def generate(self, verb: int, noun: int, key=None, context: str | None = None) -> QuestionPair:
        """Questions for the action (verb, noun). ``key`` (e.g. the narration id) makes the draw a function of
        (seed, key); without it the generator's seeded stream advances. ``context`` is appended to both questions
        and masked with them."""
        if not 0 <= verb < len(self.verb_words) or not 0 <= noun < len(self.noun_words):
            raise IndexError(f"(verb, noun) = ({verb}, {noun}) outside the vocabularies "
                             f"({len(self.verb_words)} verbs, {len(self.noun_words)} nouns)")
        rng = self._rng_for(key)
        vi, ni = rng.randrange(len(self.verb_templates)), rng.randrange(len(self.noun_templates))
        vwords, nwords = self.verb_words[verb], self.noun_words[noun]
        label_words = vwords + nwords
        tail = f" {context}" if context else ""
        verb_q = self.verb_templates[vi].format(noun=" ".join(nwords)) + tail
        noun_q = self.noun_templates[ni].format(verb=" ".join(vwords)) + tail
        return QuestionPair(mask_words(verb_q, label_words), mask_words(noun_q, label_words), vi, ni)

    @staticmethod
    def generic() -> QuestionPair:
        """The label-free questions (template index -1): what to ask when no action is known."""
        return QuestionPair(mask_words(GENERIC_VERB_QUESTION, ()), mask_words(GENERIC_NOUN_QUESTION, ()), -1, -1)

    def vocabulary_words(self) -> list[str]:
        """Every token the templates and class words can produce (for :class:`WordVocab`)."""
        words = {MASK}
        for t in self.verb_templates + self.noun_templates:
            words.update(tokenize(t.replace("{noun}", " ").replace("{verb}", " ")))
        for ws in self.verb_words + self.noun_words:
            words.update(ws)
        return sorted(words)


# ---------------------------------------------------------------------------------------------------------------------
# frozen token embeddings: encode(text) -> {"ids": (L,) long, "embeddings": (L, D), "mask": (L,) bool}
# ---------------------------------------------------------------------------------------------------------------------
class FrozenTokenEmbedding(nn.Module):
    """Base: a frozen ``nn.Embedding`` and ``encode`` / ``encode_batch`` on top of a subclass's ``token_ids``."""

    def __init__(self, weight: Tensor, pad_id: int, max_length: int):
        super().__init__()
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.embedding = nn.Embedding.from_pretrained(weight.float(), freeze=True, padding_idx=pad_id)
        self.pad_id, self.max_length = pad_id, max_length

    @property
    def dim(self) -> int:
        return self.embedding.embedding_dim

    def token_ids(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode(self, text: str, pad: bool = False) -> dict:
        """Token ids (truncated to ``max_length``; padded to it with ``pad``), their embeddings (L, D), and the mask."""
        ids = self.token_ids(text)[: self.max_length]
        n = len(ids)
        if pad:
            ids = ids + [self.pad_id] * (self.max_length - n)
        ids_t = torch.tensor(ids, dtype=torch.long)
        mask = torch.arange(len(ids)) < n
        with torch.no_grad():
            emb = self.embedding(ids_t)
        return {"ids": ids_t, "embeddings": emb, "mask": mask}

    def forward(self, ids: Tensor) -> Tensor:
        return self.embedding(ids)


class WordVocab(FrozenTokenEmbedding):
    """Word-level vocabulary (``<pad>`` = 0, ``<unk>`` = 1, ``<mask>`` = 2, then ``words`` sorted) with a FROZEN
    embedding table drawn from N(0, 1) with ``torch.Generator().manual_seed(seed)`` (the pad row is zero).

    It carries no language knowledge: the questions' information is which template and where ``<mask>`` sits.
    """

    def __init__(self, words: Sequence[str], dim: int = 768, seed: int = 0, max_length: int = 40):
        specials = [PAD, UNK, MASK]
        self.itos = specials + sorted(set(words) - set(specials))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        weight = torch.randn(len(self.itos), dim, generator=torch.Generator().manual_seed(seed))
        weight[0] = 0
        super().__init__(weight, 0, max_length)

    @classmethod
    def from_generator(cls, generator: QuestionGenerator, **kwargs) -> "WordVocab":
        return cls(generator.vocabulary_words(), **kwargs)

    def token_ids(self, text: str) -> list[int]:
        return [self.stoi.get(t, 1) for t in tokenize(text)]


def read_input_embedding(model_dir) -> Tensor:
    """The word-embedding matrix of a ``transformers`` checkpoint directory, read from its ``*.safetensors`` file(s)
    without loading the model: the tensor named ``...word_embeddings.weight`` (BERT / RoBERTa) or
    ``...embed_tokens.weight`` / ``...wte.weight`` / ``...embeddings.weight`` (decoder LMs)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors file in {model_dir}")
    suffixes = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "embeddings.weight")
    for suffix in suffixes:
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                names = [n for n in st.keys() if n.endswith(suffix)]
                if names:
                    return st.get_tensor(min(names, key=len))
    raise KeyError(f"no input-embedding tensor (names ending in {suffixes}) in {[f.name for f in files]}")


class HFTokenEmbedding(FrozenTokenEmbedding):
    """A ``transformers`` tokenizer + the frozen input-embedding matrix from a local checkpoint directory.

    Our ``<mask>`` is replaced by the tokenizer's mask token (RoBERTa ``<mask>``, BERT ``[MASK]``); special tokens
    (CLS/SEP, BOS/EOS) are added as the tokenizer does.
    """

    def __init__(self, model_dir, max_length: int = 40, tokenizer_dir=None):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir))
        weight = read_input_embedding(model_dir)
        if len(self.tokenizer) > weight.shape[0]:
            raise ValueError(f"tokenizer has {len(self.tokenizer)} tokens, the embedding only {weight.shape[0]} rows")
        pad = self.tokenizer.pad_token_id
        super().__init__(weight, 0 if pad is None else pad, max_length)

    def token_ids(self, text: str) -> list[int]:
        mask_token = self.tokenizer.mask_token
        if mask_token is None and MASK in text:
            raise ValueError("the tokenizer has no mask token")
        return list(self.tokenizer(text.replace(MASK, mask_token or MASK))["input_ids"])


# ---------------------------------------------------------------------------------------------------------------------
# dataset wrapper
# ---------------------------------------------------------------------------------------------------------------------
class QuestionDataset(PaddedCollate, Dataset):
    """Adds ``verb_question`` / ``noun_question`` (L, D) embeddings (+ ``*_ids``, ``*_text``) to the samples of a
    labelled dataset (e.g. :class:`~vidmamba.data.ek100.EK100Dataset`); ``collate`` pads them with masks.

    The questions are those of the sample's own (verb, noun), drawn with ``key = narration_id`` (else the index):
    one fixed question pair per sample (evaluation). ``random_templates=True`` (training) draws the templates anew
    at every access from torch's RNG (seeded per DataLoader worker by torch, saved and restored by the trainer).
    For anticipation (questions of the *predicted* action) pass ``question_actions``: narration_id ->
    (verb, noun) of the predicted action, or None (or a missing id) for the generic questions.
    ``context_key``: a string field of the base items (e.g. ``"narration"``) passed as ``context`` to the generator.
    """

    sequence_keys = ("video", "verb_question", "noun_question", "verb_question_ids", "noun_question_ids")

    def __init__(self, base, generator: QuestionGenerator, embedder: FrozenTokenEmbedding,
                 question_actions: Mapping[str, tuple[int, int] | None] | None = None, *,
                 random_templates: bool = False, context_key: str | None = None):
        self.base, self.generator, self.embedder = base, generator, embedder
        self.question_actions = question_actions
        self.random_templates, self.context_key = random_templates, context_key

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        key = item.get("narration_id", index)
        if self.question_actions is not None:
            action = self.question_actions.get(key)
        else:
            action = (int(item["verb"]), int(item["noun"]))
            if min(action) < 0:
                raise ValueError(f"sample {key!r} has no labels; pass question_actions (predicted actions)")
        if action is None:
            pair = self.generator.generic()
        else:
            draw_key = f"{key}\x00{int(torch.randint(0, 2 ** 62, ()))}" if self.random_templates else key
            context = item[self.context_key] if self.context_key else None
            pair = self.generator.generate(*action, key=draw_key, context=context)
        for name, text in (("verb_question", pair.verb_question), ("noun_question", pair.noun_question)):
            enc = self.embedder.encode(text)
            item[name], item[f"{name}_ids"], item[f"{name}_text"] = enc["embeddings"], enc["ids"], text
        return item


__all__ = ["MASK", "VERB_TEMPLATES", "NOUN_TEMPLATES", "GENERIC_VERB_QUESTION", "GENERIC_NOUN_QUESTION",
           "key_to_words", "tokenize", "mask_words", "leaked_words",
           "QuestionPair", "QuestionGenerator", "FrozenTokenEmbedding", "WordVocab", "read_input_embedding",
           "HFTokenEmbedding", "QuestionDataset"]
