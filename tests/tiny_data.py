"""Tiny inputs shared by several test modules: SnAG-format data, the tiny grounding benchmark's parameters, a tiny MLVTG
and a tiny Hugging Face checkpoint. Fixtures built from them live in ``conftest.py``; test modules import these
helpers from here, never from one another."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vidmamba.models import create_model

# the tiny grounding benchmark (vidmamba.data.synthetic.generate_grounding_benchmark) of the ``grounding_run`` fixture
GROUNDING_BENCH = dict(num_train=48, num_val=12, min_clips=16, max_clips=40, max_event_clips=8, video_dim=24,
                       text_dim=16, latent_dim=8, hidden_dim=16, seed=3)

EGO = dict(clip_size=32, clip_stride=8, downsample=2)  # SnAG grid of Ego4D-NLQ: 16 frames per grid step at 30 fps


def make_snag(root: Path, video_dim: int, text_dim: int, lengths=(40, 56, 33), queries=3, fps=30.0,
              clip_frames=16, seed=0, splits=("train", "val")) -> Path:
    """Tiny SnAG data: videos of ``lengths`` clips (``clip_frames`` frames each at ``fps``), random features,
    ``queries`` queries per video with random segments."""
    rng = np.random.default_rng(seed)
    (root / "video").mkdir(parents=True, exist_ok=True)
    (root / "text").mkdir(exist_ok=True)
    anno = {}
    for split in splits:
        anno[split] = {}
        for i, T in enumerate(lengths):
            vid = f"{split}{i}"
            duration = T * clip_frames / fps
            np.save(root / "video" / f"{vid}.npy", rng.normal(size=(T, video_dim)).astype(np.float32))
            anns = []
            for q in range(queries):
                s = float(rng.uniform(0, duration * 0.8))
                e = float(min(duration, s + rng.uniform(0.05, 0.3) * duration))
                sid = f"{vid}_s{q}"
                np.save(root / "text" / f"{sid}.npy", rng.normal(size=(int(rng.integers(3, 9)), text_dim)).astype(
                    np.float32))
                anns.append({"segment": [s, e], "sentence": f"query {q} of {vid}", "sentence_id": sid})
            anno[split][vid] = {"fps": fps, "duration": duration, "annotations": anns}
    (root / "anno.json").write_text(json.dumps(anno))
    return root


def data_section(root: Path, **extra) -> dict:
    """The ``data:`` section of the nlq task for :func:`make_snag` data (Ego4D-NLQ grid)."""
    return {"annotations": str(root / "anno.json"), "video_features": [str(root / "video")],
            "text_features": str(root / "text"), **EGO, **extra}


# a tiny MLVTG and the pretrained-folder inputs it answers
TINY_MLVTG = {"name": "mlvtg", "video_dim": 6, "text_dim": 5, "hidden_dim": 16, "num_layers": 1, "clip_length": 2.0}


def tiny_mlvtg(seed=0, **over):
    """:data:`TINY_MLVTG` (with ``over``) built from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    opts = {**TINY_MLVTG, **over}
    return create_model(opts.pop("name"), **opts).eval()


def tiny_hf_checkpoint(path, words):
    """A 1-layer BERT with a word-level tokenizer over ``words`` saved to ``path`` (skips without transformers);
    returns (tokenizer, its input-embedding table)."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {w: i for i, w in enumerate(specials + sorted(set(words)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=16, max_position_embeddings=64)
    model = transformers.BertModel(cfg)
    model.save_pretrained(path, safe_serialization=True)
    return fast, model.get_input_embeddings().weight.detach()


# real ids of UMT's dog split (datasets/utils/static.py): two train videos and one val video
DOG_TRAIN, DOG_VAL = ["BsjTtq337mM", "eGCD1F74iy8"], ["a2nj7XCo2Rk"]
MATCH = {"BsjTtq337mM": [-1, 0, 1, 1, 0, 1], "eGCD1F74iy8": [1, 1, -1, -1], "a2nj7XCo2Rk": [0, 0, 0]}


def write_umt_youtube(root, match=MATCH, fps=30.0, audio_extra=1, extra=None):
    """UMT layout: youtube_anno.json + I3D rgb / flow (T, 1024) + audio (T + audio_extra, 8) per video."""
    (root / "video_features").mkdir(parents=True, exist_ok=True)
    (root / "audio_features").mkdir(exist_ok=True)
    anno = {}
    for i, (vid, m) in enumerate(match.items()):
        anno[vid] = {"match": m, **({"fps": fps} if fps else {}), **(extra or {}).get(vid, {})}
        rng = np.random.default_rng(i)
        np.save(root / "video_features" / f"{vid}_rgb.npy", rng.normal(size=(len(m), 1024)))
        np.save(root / "video_features" / f"{vid}_opt.npy", rng.normal(size=(len(m), 1024)))
        np.save(root / "audio_features" / f"{vid}.npy", rng.normal(size=(len(m) + audio_extra, 8)))
    (root / "youtube_anno.json").write_text(json.dumps(anno))
    return root


def tree_digest(root: Path) -> str:
    """One sha256 over every file under ``root``: relative paths and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()
