"""LengthGroupedSampler: a permutation per (seed, epoch), similar lengths per batch, ranks splitting global batches."""
import random

import pytest
import torch

from vidmamba.engine.sampler import LengthGroupedSampler

_RNG = random.Random(0)
LENGTHS = [_RNG.randint(10, 150) for _ in range(103)]


def batches_of(sampler, batch_size):
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def padded_work(batches):
    return sum(len(b) * max(LENGTHS[i] for i in b) for b in batches)


@pytest.mark.parametrize("drop_last", [True, False])
def test_one_epoch_is_a_permutation_of_the_used_samples(drop_last):
    s = LengthGroupedSampler(LENGTHS, 8, pool_batches=4, seed=1, drop_last=drop_last)
    order = list(s)
    assert len(order) == len(s) == (96 if drop_last else 103)
    assert len(set(order)) == len(order)  # nothing twice within an epoch
    if not drop_last:
        assert sorted(order) == list(range(103))
        assert len(batches_of(s, 8)[-1]) == 103 - 96  # the ragged batch comes last


def test_batches_hold_similar_lengths():
    grouped = LengthGroupedSampler(LENGTHS, 8, pool_batches=4, seed=1)
    g = torch.Generator().manual_seed(1)
    shuffled = torch.randperm(len(LENGTHS), generator=g)[:96].tolist()
    random_batches = [shuffled[i:i + 8] for i in range(0, 96, 8)]
    assert padded_work(batches_of(grouped, 8)) < 0.85 * padded_work(random_batches)
    whole = LengthGroupedSampler(LENGTHS, 8, pool_batches=100, seed=1)  # one pool: batches are sorted runs
    runs = sorted((sorted(LENGTHS[i] for i in b) for b in batches_of(whole, 8)), key=lambda r: r[0])
    flat = [x for r in runs for x in r]
    assert flat == sorted(flat)


def test_order_depends_on_seed_and_epoch_only():
    a = LengthGroupedSampler(LENGTHS, 8, pool_batches=4, seed=1)
    b = LengthGroupedSampler(LENGTHS, 8, pool_batches=4, seed=1)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    b.set_epoch(0)
    assert list(b) == first
    assert list(LengthGroupedSampler(LENGTHS, 8, pool_batches=4, seed=2)) != first


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_split_each_global_batch(drop_last):
    """Step k of every rank together is step k of one process with the global batch size (an even number of
    samples: with an odd one and drop_last False the ranks repeat one sample, as DistributedSampler does)."""
    lengths = LENGTHS[:102]
    single = LengthGroupedSampler(lengths, 6, pool_batches=3, seed=4, drop_last=drop_last)
    ranks = [LengthGroupedSampler(lengths, 3, pool_batches=3, seed=4, num_replicas=2, rank=r, drop_last=drop_last)
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    per_rank = [batches_of(s, 3) for s in ranks]
    for k, want in enumerate(batches_of(single, 6)):
        assert sorted(per_rank[0][k] + per_rank[1][k]) == sorted(want)


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        LengthGroupedSampler(LENGTHS, 8, pool_batches=4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="pool_batches"):
        LengthGroupedSampler(LENGTHS, 8, pool_batches=0)
