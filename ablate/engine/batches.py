"""Training batches by optimizer step, and the fixed validation subset.

Every random draw of training is a function of (cell seed, step, rank) alone, through
:func:`mix_seed`: the batch of step k (:class:`StepBatches`), and the conditioning dropout, t and
noise of step k (:class:`ablate.engine.train.DiffusionModule`). A run resumed at step k therefore reads the
same batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from ablate.data.base import LatentSplit
from ablate.data.conditioning import conditioning_of

VAL_BATCH_SIZE = 250


def mix_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys, e.g. (cell seed, step, rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class _IndexedBatches(Dataset):
    """Serves whole batches by index lists, so memory-mapped latents are read in one gather."""

    def __init__(self, split: LatentSplit, conditioning: str, tokens: bool = False) -> None:
        self.split, self.conditioning, self.tokens = split, conditioning, tokens

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        x0 = torch.as_tensor(self.split.latents[idx], dtype=torch.float32)
        return x0, conditioning_of(self.split, idx, self.conditioning, self.tokens)


class StepBatches(Sampler[list[int]]):
    """Training batches by optimizer step: step k on rank r of W reads the items
    ``perm_e[((k mod S) W + r) B : ... + B]`` of epoch e = k // S, where S = N // (W B) steps make an
    epoch and ``perm_e`` is a permutation seeded by (seed, e). Iteration starts at ``start_step()``
    (the trainer's global step when Lightning calls ``iter``), so a resumed run continues the data
    order exactly; the effective batch is W B. (A torch ``Sampler`` by type: it yields index lists.)"""

    def __init__(self, num_items: int, batch_size: int, seed: int, start_step: Callable[[], int],
                 rank: int = 0, world_size: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.start_step = num_items, batch_size, seed, start_step
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = num_items // (batch_size * world_size)
        if self.steps_per_epoch < 1:
            raise ValueError(f"{num_items} training items cannot fill one batch of {batch_size} x {world_size} processes")

    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        epoch, first = divmod(int(self.start_step()), self.steps_per_epoch)
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        b, w = self.batch_size, self.world_size
        for i in range(first, self.steps_per_epoch):
            start = (i * w + self.rank) * b
            yield perm[start:start + b].tolist()


class _StepDataLoader(DataLoader):
    """A loader whose position is the trainer's global step (see :class:`StepBatches`); it has no
    state of its own to save, which tells Lightning that resuming mid-epoch is exact."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LatentDataModule(L.LightningDataModule):
    """Training batches by step (:class:`StepBatches`) and a fixed validation subset of the test split
    (``val_size`` items picked with seed 0, the same for every cell)."""

    def __init__(self, splits: dict[str, LatentSplit], batch_size: int, val_size: int, seed: int,
                 conditioning: str = "class", tokens: bool = False) -> None:
        super().__init__()
        self.splits, self.batch_size, self.seed, self.conditioning = splits, batch_size, seed, conditioning
        self.tokens = tokens  # stored caption token sequences too (see conditioning_of)
        test = splits["test"]
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: min(val_size, len(test))]
        self.val_index = pick.sort().values

    def train_dataloader(self) -> DataLoader:
        data = _IndexedBatches(self.splits["train"], self.conditioning, self.tokens)
        trainer = self.trainer
        batches = StepBatches(len(data), self.batch_size, self.seed,
                              start_step=(lambda: trainer.global_step) if trainer else (lambda: 0),
                              rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)
        # pinned host memory: Lightning's non-blocking copy to the GPU then never waits for the GPU
        return _StepDataLoader(data, sampler=batches, batch_size=None, pin_memory=self._pin())

    def _pin(self) -> bool:
        return bool(self.trainer and self.trainer.strategy.root_device.type == "cuda")

    def val_dataloader(self) -> DataLoader:
        test = self.splits["test"]
        val = LatentSplit(latents=test.latents[self.val_index], labels=test.labels[self.val_index],
                          text_emb=None if test.text_emb is None else test.text_emb[self.val_index],
                          text_tokens=None if test.text_tokens is None else test.text_tokens[self.val_index])
        data = _IndexedBatches(val, self.conditioning, self.tokens)
        return DataLoader(data, sampler=BatchSampler(SequentialSampler(range(len(val))), VAL_BATCH_SIZE, drop_last=False),
                          batch_size=None)
