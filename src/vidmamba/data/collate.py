"""Padding variable-length sequences into batches with boolean masks (True = valid step)."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch


def pad_sequences(seqs: Sequence, *, pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad tensors of shape (L_i, *rest) to (b, max L_i, *rest).

    Returns ``(padded, mask)`` where ``mask`` is (b, max L_i) bool, True at valid steps. All inputs must share
    ``rest`` and dtype (numpy arrays are converted). Empty sequences (L_i = 0) are allowed.
    """
    if len(seqs) == 0:
        raise ValueError("pad_sequences needs at least one sequence")
    tensors = [torch.as_tensor(s) if isinstance(s, np.ndarray) else s for s in seqs]
    first = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            raise ValueError(f"sequence {i} must be a tensor with a length axis, got {type(t).__name__}"
                             + (f" of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else ""))
        if t.shape[1:] != first.shape[1:]:
            raise ValueError(f"sequence {i} has trailing shape {tuple(t.shape[1:])}, "
                             f"sequence 0 has {tuple(first.shape[1:])}")
        if t.dtype != first.dtype:
            raise ValueError(f"sequence {i} has dtype {t.dtype}, sequence 0 has {first.dtype}")
    lengths = torch.tensor([t.shape[0] for t in tensors])
    max_len = int(lengths.max())
    padded = first.new_full((len(tensors), max_len, *first.shape[1:]), pad_value)
    for i, t in enumerate(tensors):
        padded[i, : t.shape[0]] = t
    mask = torch.arange(max_len)[None, :] < lengths[:, None]
    return padded, mask


def collate_padded(batch: Sequence[dict], sequence_keys: Iterable[str]) -> dict:
    """Collate a list of sample dicts.

    Keys in ``sequence_keys`` (when present) are padded along their first axis with :func:`pad_sequences`, giving
    ``out[key]`` and a bool ``out[key + "_mask"]``. Other tensors of equal shape are stacked; everything else
    (ids, strings, numbers, lists) becomes a list in batch order. All samples must carry the same keys.
    """
    if len(batch) == 0:
        raise ValueError("cannot collate an empty batch")
    keys = list(batch[0])
    for i, sample in enumerate(batch):
        if set(sample) != set(keys):
            raise ValueError(f"sample {i} has keys {sorted(sample)}, sample 0 has {sorted(keys)}")
    seq = set(sequence_keys)
    out: dict = {}
    for k in keys:
        values = [s[k] for s in batch]
        if k in seq:
            out[k], out[f"{k}_mask"] = pad_sequences(values)
        elif all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[k] = torch.stack(values)
        else:
            out[k] = values
    return out


class PaddedCollate:
    """Mixin for datasets whose samples are dicts: ``Dataset.collate`` pads the class's ``sequence_keys``."""

    sequence_keys: tuple[str, ...] = ()

    @classmethod
    def collate(cls, batch: Sequence[dict]) -> dict:
        return collate_padded(batch, cls.sequence_keys)
