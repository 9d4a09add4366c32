"""Length-grouped training order: batches of videos of similar length, so little of each batch is padding.

Videos of a grounding dataset vary in length (QVHighlights-like data: 32 to 150 clips); a random batch is padded to
its longest video, so about a third of the sequence work of a step is spent on padding. :class:`LengthGroupedSampler`
draws a random permutation per epoch (a function of ``(seed, epoch)`` only, as ``DistributedSampler``), cuts it into
pools of ``pool_batches`` global batches, sorts each pool by length, cuts the pool into global batches and shuffles
the order of all global batches. Batches stay random samples of the data (a pool is a random subset), only their
composition is biased towards similar lengths.

Distributed: a global batch holds ``batch_size * num_replicas`` samples; rank ``r`` takes every ``num_replicas``-th
sample of it from the ``r``-th on (similar lengths on every rank), so the union of the ranks' step-k batches is the
single-process step-k batch at the same global batch size. ``drop_last`` drops the ragged tail (fewer samples than
one global batch); otherwise the permutation is padded by repeating its start to a multiple of ``num_replicas`` and
the ragged global batch comes last.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """This rank's sample indices for one epoch, in batch order (feed it to a DataLoader with ``batch_size``).

    lengths: one length per sample (e.g. clips per video); only their order matters.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, *, pool_batches: int, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, drop_last: bool = True):
        if batch_size < 1 or pool_batches < 1 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need batch_size >= 1, pool_batches >= 1 and 0 <= rank < num_replicas, got "
                             f"batch_size={batch_size}, pool_batches={pool_batches}, rank={rank}, "
                             f"num_replicas={num_replicas}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.float64)
        self.pool_batches, self.num_replicas, self.rank, self.seed = pool_batches, num_replicas, rank, seed
        self.epoch = 0
        self.global_batch = batch_size * num_replicas
        n = len(self.lengths)
        if drop_last:
            self.num_used = (n // self.global_batch) * self.global_batch
        else:
            self.num_used = -(-n // num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_used // self.num_replicas

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches (every rank computes the same list)."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        if self.num_used > len(perm):  # pad by repeating the start, as DistributedSampler does
            perm = torch.cat([perm] * -(-self.num_used // len(perm)))
        perm = perm[:self.num_used]
        pool = self.pool_batches * self.global_batch
        batches = []
        for start in range(0, len(perm), pool):
            members = perm[start:start + pool]
            order = torch.sort(self.lengths[members], stable=True).indices
            batches += members[order].split(self.global_batch)
        full = [b for b in batches if len(b) == self.global_batch]
        ragged = [b for b in batches if len(b) < self.global_batch]
        full = [full[i] for i in torch.randperm(len(full), generator=g)]
        return [b.tolist() for b in full + ragged]

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches():
            yield from batch[self.rank::self.num_replicas]
