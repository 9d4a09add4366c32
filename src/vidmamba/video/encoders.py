"""CLIP image and text encoders (transformers ``CLIPModel``) producing features in the QVHighlights conventions.

* Video: one feature per clip = CLIP's pooled, projected image embedding (``visual_projection(pooler_output)``;
  512-d for ViT-B/32), averaged over the clip's frames, L2-normalised (the ``clip_features`` folder).
* Text: one feature per token = the text transformer's last hidden state after its final LayerNorm, **not**
  projected (width ``text_config.hidden_size``: 512 for ViT-B/32), for the valid tokens only, start and end tokens
  included (the ``clip_text_features`` folder, key ``last_hidden_state``; as moment_detr's ``run_on_video``
  ``ClipFeatureExtractor.encode_text``, which keeps ``last_hidden_state[:length]``). Not normalised: the dataset
  readers L2-normalise tokens as in training.

The model, tokenizer and image processor come from a local folder (``save_pretrained`` layout) or a hub id
``hf://owner/name[@revision]`` (online, or from the local Hugging Face cache). :func:`save_tiny_clip` writes a tiny random one offline, for tests and demos.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import numpy as np
import torch

from vidmamba.errors import InputError, MissingFileError, require_extra
from vidmamba.utils import hub_ref, no_such_folder

DEFAULT_CLIP = "hf://openai/clip-vit-base-patch32"
ENCODER_HINT = "pass --encoder PATH, a CLIP folder written by save_pretrained"


def _transformers():
    return require_extra("transformers", "video", "the CLIP encoder")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout_s`` (False when ``HF_HUB_OFFLINE`` is
    set); asked once per process."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def encoder_source(name_or_path) -> tuple[str, bool, str | None]:
    """(what to load, local files only, hub revision) for a CLIP encoder, checked before anything loads: a local
    folder must hold a ``save_pretrained`` CLIP; a hub id is written ``hf://owner/name[@revision]``, and when the hub
    cannot be reached it must be in the local Hugging Face cache (then it loads offline, without the hub client's
    retries). Anything else is a :class:`~vidmamba.errors.MissingFileError` that names ``--encoder PATH``."""
    ref = hub_ref(os.fspath(name_or_path))
    if ref is None:
        local = Path(name_or_path).expanduser()
        if not local.exists():
            raise MissingFileError(f"{no_such_folder('encoder', name_or_path)}; {ENCODER_HINT}")
        if not (local / "config.json").is_file():
            raise MissingFileError(f"encoder {name_or_path}: not a CLIP model folder (expected config.json, model "
                                   f"weights, tokenizer and preprocessor_config.json from save_pretrained); "
                                   f"{ENCODER_HINT}")
        return str(local), True, None
    name, revision = ref
    if hub_reachable():
        return name, False, revision
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str):
        raise MissingFileError(f"encoder {name_or_path!r} is not in the local Hugging Face cache and the hub cannot "
                               f"be reached (offline); {ENCODER_HINT}")
    return name, True, revision


def _image_processor_class(tf):
    """The PIL-based CLIP image processor (CLIP's own preprocessing: PIL bicubic resize + centre crop); newer
    transformers default to a torchvision one, which may be absent and resizes slightly differently. The default
    name is looked up only when the PIL one is missing: without torchvision, looking it up prints a warning."""
    pil = getattr(tf, "CLIPImageProcessorPil", None)
    return pil if pil is not None else tf.CLIPImageProcessor


class ClipEncoder:
    """Frozen CLIP image + text encoder.

    Args:
        name_or_path: a folder written by ``save_pretrained`` (model, tokenizer, image processor) or a hub id
            ``hf://owner/name[@revision]``.
        device: torch device for the model.
        batch_size: images per forward pass.
    """

    def __init__(self, name_or_path: str | Path = DEFAULT_CLIP, device: str | torch.device = "cpu",
                 batch_size: int = 64):
        tf = _transformers()
        self.name = str(name_or_path)
        source, offline, revision = encoder_source(name_or_path)
        tf.utils.logging.disable_progress_bar()  # no "Loading weights" bars between our own lines
        try:
            self.model = tf.CLIPModel.from_pretrained(source, local_files_only=offline, revision=revision)
            self.model = self.model.to(device).eval()
            self.tokenizer = tf.CLIPTokenizer.from_pretrained(source, local_files_only=offline, revision=revision)
            self.processor = _image_processor_class(tf).from_pretrained(source, local_files_only=offline,
                                                                        revision=revision)
        except OSError as e:
            raise MissingFileError(f"cannot load the CLIP encoder {self.name!r}: {e}; {ENCODER_HINT}") from e
        self.model.requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.image_dim = int(self.model.config.projection_dim)
        self.text_dim = int(self.model.config.text_config.hidden_size)
        self.max_text_len = int(self.model.config.text_config.max_position_embeddings)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the weights and the preprocessing settings: two encoders with the same fingerprint give the
        same features (used as a cache key)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        h.update(json.dumps(self.processor.to_dict(), sort_keys=True, default=str).encode())
        return h.hexdigest()

    @torch.no_grad()
    def encode_images(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, image_dim) float32 projected pooled embeddings, L2-normalised."""
        images = list(images)
        if not images:
            return np.zeros((0, self.image_dim), dtype=np.float32)
        out = []
        for i in range(0, len(images), self.batch_size):
            pixels = self.processor(images=images[i: i + self.batch_size], return_tensors="pt")["pixel_values"]
            pooled = self.model.vision_model(pixel_values=pixels.to(self.device)).pooler_output
            out.append(torch.nn.functional.normalize(self.model.visual_projection(pooled).float(), dim=-1))
        return torch.cat(out).cpu().numpy()

    def encode_clips(self, frames: np.ndarray) -> np.ndarray:
        """(B, F, H, W, 3) uint8 frames of B clips -> (B, image_dim) float32: the mean of each clip's normalised
        frame embeddings, L2-normalised (with F = 1: the frame's normalised embedding)."""
        b, f = frames.shape[:2]
        emb = self.encode_images(frames.reshape(b * f, *frames.shape[2:])).reshape(b, f, -1).mean(axis=1)
        return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)

    @torch.no_grad()
    def encode_text(self, queries: Sequence[str]) -> list[np.ndarray]:
        """Per query: (L_i, text_dim) float32 last hidden states of its valid tokens (start + words + end,
        truncated to the model's context length). Raises ValueError on an empty query."""
        queries = list(queries)
        for i, q in enumerate(queries):
            if not isinstance(q, str) or not q.strip():
                raise InputError(f"query {i} is empty: expected a non-empty string, got {q!r}")
        if not queries:
            return []
        tok = self.tokenizer(queries, padding=True, truncation=True, max_length=self.max_text_len,
                             return_tensors="pt")
        hidden = self.model.text_model(input_ids=tok["input_ids"].to(self.device),
                                       attention_mask=tok["attention_mask"].to(self.device)).last_hidden_state
        lengths = tok["attention_mask"].sum(1).tolist()
        return [h[:n].float().cpu().numpy() for h, n in zip(hidden, lengths)]


# CLIP ViT-B/32's towers (openai/clip-vit-base-patch32's config): with save_tiny_clip(..., **VIT_B_32) a randomly
# initialised model of the real size, for timing and memory measurements offline
VIT_B_32 = dict(image_dim=512, text_dim=512, image_size=224, patch_size=32,
                vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
                text=dict(intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8))


def save_tiny_clip(out_dir, *, image_dim: int = 16, text_dim: int = 16, image_size: int = 32, patch_size: int = 16,
                   seed: int = 0, vision: dict | None = None, text: dict | None = None) -> Path:
    """Write a tiny randomly initialised CLIP (model, byte-level tokenizer, image processor) to ``out_dir`` in the
    ``save_pretrained`` layout, offline: for tests and demos, never for real features. ``vision`` / ``text``:
    overrides of the towers' config (:data:`VIT_B_32` gives the real architecture). Returns ``out_dir``."""
    tf = _transformers()
    from tokenizers.pre_tokenizers import ByteLevel

    out_dir = Path(out_dir)
    chars = sorted(ByteLevel.alphabet())
    specials = ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(specials + chars + [c + "</w>" for c in chars])}
    tokenizer = tf.CLIPTokenizer(vocab=vocab, merges=[])
    config = tf.CLIPConfig(
        text_config={**dict(vocab_size=len(vocab), hidden_size=text_dim, intermediate_size=2 * text_dim,
                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=vocab[specials[0]], eos_token_id=vocab[specials[1]],
                            pad_token_id=vocab[specials[1]]), **(text or {})},
        vision_config={**dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=image_size, patch_size=patch_size), **(vision or {})},
        projection_dim=image_dim)
    torch.manual_seed(seed)
    tf.CLIPModel(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _image_processor_class(tf)(size={"shortest_edge": image_size},
                          crop_size={"height": image_size, "width": image_size}).save_pretrained(out_dir)
    return out_dir
