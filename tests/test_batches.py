"""Training batches by optimizer step (ablate.engine.batches): the seed mixer, step-indexed batches, resuming."""

from __future__ import annotations

import itertools

import pytest
import torch

import ablate  # noqa: F401  (torchvision fix first)
from ablate.engine.batches import LatentDataModule, StepBatches, mix_seed
from ablate.data.base import LatentSplit


def batches_from(start: int, count: int, **kw) -> list[list[int]]:
    """``count`` batches of a loader that (re)starts at optimizer step ``start``, across epochs as
    Lightning goes: a new ``iter`` (at the trainer's step then) each epoch."""
    step = start
    out: list[list[int]] = []
    while len(out) < count:
        sampler = StepBatches(start_step=lambda: step, **kw)
        for batch in sampler:
            out.append(batch)
            step += 1
            if len(out) == count:
                break
    return out


KW = dict(num_items=50, batch_size=4, seed=7)  # 12 steps an epoch, 2 items never read per epoch


def test_mix_seed_is_a_deterministic_63_bit_function_of_its_ordered_keys():
    assert mix_seed(0, 5, 1) == mix_seed(0, 5, 1)
    seeds = {mix_seed(s, k, r) for s, k, r in itertools.product(range(3), range(20), range(2))}
    assert len(seeds) == 3 * 20 * 2  # no collisions between nearby keys
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert all(0 <= s < 2**63 for s in seeds)


def test_step_k_reads_the_documented_slice_of_its_epoch_permutation():
    batches = batches_from(0, 30, **KW)  # two and a half epochs
    for k, batch in enumerate(batches):
        epoch, i = divmod(k, 12)
        perm = torch.randperm(50, generator=torch.Generator().manual_seed(mix_seed(7, epoch)))
        assert batch == perm[i * 4:(i + 1) * 4].tolist(), k
    assert batches[0] != batches[12]  # a new permutation each epoch
    first_epoch = sum(batches[:12], [])
    assert len(set(first_epoch)) == 48  # without replacement within an epoch


@pytest.mark.parametrize("start", [1, 5, 11, 12, 13, 29])
def test_resuming_at_a_step_reads_what_an_uninterrupted_run_reads(start):
    whole = batches_from(0, 36, **KW)
    assert batches_from(start, 36 - start, **KW) == whole[start:]


def test_ranks_read_disjoint_parts_of_one_permutation():
    kw = dict(num_items=50, batch_size=4, seed=3, world_size=2)  # 6 steps an epoch
    rank0, rank1 = (batches_from(0, 6, rank=r, **kw) for r in (0, 1))
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(mix_seed(3, 0)))
    assert sum((a + b for a, b in zip(rank0, rank1)), []) == perm[:48].tolist()
    assert len(StepBatches(start_step=lambda: 0, rank=0, **kw)) == 6


def test_other_seeds_read_other_batches_and_too_few_items_is_an_error():
    assert batches_from(0, 3, **KW) != batches_from(0, 3, **{**KW, "seed": 8})
    with pytest.raises(ValueError, match="cannot fill one batch of 16 x 4"):
        StepBatches(50, 16, 0, lambda: 0, world_size=4)


def test_validation_subset_is_the_same_for_every_cell_seed():
    split = LatentSplit(latents=torch.randn(40, 1, 2, 2), labels=torch.arange(40) % 10)
    a = LatentDataModule({"train": split, "test": split}, 4, 16, seed=0)
    b = LatentDataModule({"train": split, "test": split}, 4, 16, seed=5)
    assert torch.equal(a.val_index, b.val_index) and len(a.val_index) == 16
    assert torch.equal(a.val_index, a.val_index.sort().values)
    x0, y = next(iter(a.val_dataloader()))
    assert torch.equal(x0, split.latents[a.val_index]) and torch.equal(y, split.labels[a.val_index])
