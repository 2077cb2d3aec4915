"""Training one grid cell: Lightning module (formulation + DiT + EMA) and data module.

Convention: t in [0, 1], t = 0 is data, t = 1 is noise. The formulation layer owns all the math;
this module only composes it: t ~ the variant's timestep sampler, z = add_noise(x0, eps, t),
loss = formulation.loss(net(*model_input(z, t), y), x0, eps, t).

EMA is kept both ways the paper and DiT do: an averaged copy updated every ``ema.every`` optimizer
steps with decay ``ema.decay`` (SD3: every 100, 0.99; DiT: every 1, 0.9999), by :class:`EMA`. Validation (spec sections 4 and 6), on fixed data, noise
and levels for every variant: the native loss at 8 equally spaced t, and the cross-formulation
x0-MSE at 8 fixed log-SNR levels, for the raw and the EMA weights. The checkpoint kept for
evaluation is the one with the lowest EMA validation loss (the paper's rule).

Determinism and resumption: every random draw of optimizer step k is a function of (cell seed, k,
rank) alone: the batch (:class:`StepBatches`) and the conditioning dropout, t and noise (a generator
seeded by :func:`mix_seed`). A run resumed from a checkpoint at step k therefore reads the same
batches and noise as an uninterrupted one, and gives bit-identical weights on the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler, SequentialSampler

from ablate.accel import forward_fn, fused_adamw
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.formulations import level_times, matched_times, parse_variant
from ablate.grid import Grid
from ablate.models.dit import DiT, DiTConfig

VAL_NOISE_SEED = 1234  # the same validation noise for every variant and seed


def conditioning_of(split: LatentSplit, index: Tensor, mode: str) -> Tensor:
    """The network's conditioning for samples ``index``: class labels, or pooled caption embeddings."""
    if mode == "caption":
        if split.text_emb is None:
            raise ValueError("conditioning 'caption' needs a dataset prepared with caption embeddings")
        return torch.as_tensor(split.text_emb[index], dtype=torch.float32)
    return split.labels[index]


def null_conditioning(cond: Tensor, info: DatasetInfo) -> Tensor:
    """The unconditional input for guidance: the null class (index num_classes) or a zero embedding."""
    if cond.dtype.is_floating_point:
        return torch.zeros_like(cond)
    return torch.full_like(cond, info.num_classes)


class _IndexedBatches(Dataset):
    """Serves whole batches by index lists, so memory-mapped latents are read in one gather."""

    def __init__(self, split: LatentSplit, conditioning: str) -> None:
        self.split, self.conditioning = split, conditioning

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        x0 = torch.as_tensor(self.split.latents[idx], dtype=torch.float32)
        return x0, conditioning_of(self.split, idx, self.conditioning)


def mix_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integer keys, e.g. (cell seed, step, rank)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class StepBatches(Sampler[list[int]]):
    """Training batches by optimizer step: step k on rank r of W reads the items
    ``perm_e[((k mod S) W + r) B : ... + B]`` of epoch e = k // S, where S = N // (W B) steps make an
    epoch and ``perm_e`` is a permutation seeded by (seed, e). Iteration starts at ``start_step()``
    (the trainer's global step when Lightning calls ``iter``), so a resumed run continues the data
    order exactly; the effective batch is W B."""

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
    """Training batches by step (:class:`StepBatches`) and a fixed validation subset of the test split."""

    def __init__(self, splits: dict[str, LatentSplit], batch_size: int, val_size: int, seed: int,
                 conditioning: str = "class") -> None:
        super().__init__()
        self.splits, self.batch_size, self.seed, self.conditioning = splits, batch_size, seed, conditioning
        test = splits["test"]
        pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: min(val_size, len(test))]
        self.val_index = pick.sort().values

    def train_dataloader(self) -> DataLoader:
        data = _IndexedBatches(self.splits["train"], self.conditioning)
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
                          text_emb=None if test.text_emb is None else test.text_emb[self.val_index])
        data = _IndexedBatches(val, self.conditioning)
        return DataLoader(data, sampler=BatchSampler(SequentialSampler(range(len(val))), 250, drop_last=False),
                          batch_size=None)


def build_network(grid: Grid, info: DatasetInfo) -> DiT:
    m = grid.model
    caption = grid.data.conditioning == "caption"
    return DiT(DiTConfig(
        input_size=info.resolution, in_channels=info.channels, patch_size=m.patch_size,
        hidden_size=m.hidden_size, depth=m.depth, num_heads=m.num_heads, mlp_ratio=m.mlp_ratio,
        num_classes=0 if caption else info.num_classes, cond_dim=info.cond_dim if caption else 0,
    ))


class EMA(nn.Module):
    """Exponential moving average of a network's parameters and buffers, ``ema <- decay ema + (1 - decay)
    net``, the first update copying. The state dict keys match torch's ``AveragedModel`` (``module.*``,
    ``n_averaged``), and an update never synchronises host and device: the count that decides the
    first copy lives on the host too (read back once after a checkpoint is loaded)."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        super().__init__()
        self.module, self.decay = copy.deepcopy(net), decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))
        self._count: int | None = 0

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = None  # read n_averaged once, at the next update

    @torch.no_grad()
    def update_parameters(self, net: nn.Module, restart: bool = False) -> None:
        """One update; ``restart``: copy the weights instead (the average starts again from them)."""
        if self._count is None:
            self._count = int(self.n_averaged)
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [t.detach() for t in (*net.parameters(), *net.buffers())]
        if self._count == 0 or restart:
            torch._foreach_copy_(mine, theirs)
        else:
            floating = [(a, b) for a, b in zip(mine, theirs) if a.is_floating_point()]
            torch._foreach_lerp_([a for a, _ in floating], [b for _, b in floating], 1.0 - self.decay)
        self.n_averaged += 1
        self._count += 1


class DiffusionModule(L.LightningModule):
    """One variant (trajectory x timestep sampler) trained on one dataset.

    No host-device synchronisation happens inside a training step: the loss sum and the first
    non-finite loss are kept on the device and read every ``check_every`` steps and at each
    validation by :class:`TrainingMonitor`, which reports the exact step of a non-finite loss.
    ``compiled``: the network runs through the process's shared compiled forward
    (:func:`ablate.accel.compiled_call`); ``fused``: AdamW's fused kernel (None: ask
    :func:`ablate.accel.fused_adamw` at fit time). Clipping (``train.grad_clip``) is done here,
    before the optimizer step, which works with fused optimizers and mixed precision alike.
    """

    def __init__(self, grid: Grid, variant: str, info: DatasetInfo, seed: int = 0, compiled: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__()
        self.formulation, self.sampler = parse_variant(variant)
        self.seed, self.fused = seed, fused
        self.grid_train, self.info = grid.train, info
        self.net = build_network(grid, info)
        self.ema = EMA(self.net, grid.train.ema.decay)
        self.ema.requires_grad_(False)
        self.compiled = compiled
        self.fused_used: bool | None = None
        self._forward = forward_fn(compiled)
        self._val_sums: dict[str, Tensor] = {}
        self.reset_loss_window()

    # -- training -------------------------------------------------------------------------------
    def reset_loss_window(self) -> None:
        """Start a new window of on-device loss statistics (see :class:`TrainingMonitor`)."""
        self._loss_sum: Tensor | None = None   # sum of finite losses since the window started
        self._first_bad: Tensor | None = None  # index in the window of the first non-finite loss, -1: none
        self._window = 0                       # steps in the window (a host-side count)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x0, cond = batch
        n = x0.shape[0]
        gen = torch.Generator(device=x0.device).manual_seed(mix_seed(self.seed, self.global_step, self.global_rank))
        drop = torch.rand(n, generator=gen, device=x0.device) < self.grid_train.cond_dropout
        null = null_conditioning(cond, self.info)
        cond = torch.where(drop.view(-1, *[1] * (cond.ndim - 1)), null, cond)
        t = self.sampler.sample(n, generator=gen, device=x0.device)
        eps = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        z = self.formulation.add_noise(x0, eps, t)
        raw = self._forward(self.net, *self.formulation.model_input(z, t), cond)
        loss = self.formulation.loss(raw.float(), x0, eps, t).mean()
        self._track(loss.detach())
        return loss

    def _track(self, loss: Tensor) -> None:
        finite = torch.isfinite(loss)
        if self._loss_sum is None:
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=loss.device)
            self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
        self._loss_sum += torch.where(finite, loss, 0.0)
        index = torch.full_like(self._first_bad, self._window)
        self._first_bad = torch.where(~finite & (self._first_bad < 0), index, self._first_bad)
        self._window += 1

    def read_loss_window(self) -> tuple[int, float, int | None]:
        """(steps, mean finite loss, window index of the first non-finite loss or None); one sync; resets."""
        steps, total, bad = self._window, self._loss_sum, self._first_bad
        self.reset_loss_window()
        if total is None:
            return 0, float("nan"), None
        first_bad = int(bad)
        return steps, float(total) / steps, (first_bad if first_bad >= 0 else None)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grid_train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grid_train.grad_clip, foreach=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        ema = self.grid_train.ema
        if self.global_step % ema.every == 0:  # before ema.start the average restarts at every update
            self.ema.update_parameters(self.net, restart=self.global_step < ema.start)

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.grid_train
        fused = self.fused if self.fused is not None else fused_adamw(str(self.trainer.precision), self.device)
        self.fused_used = fused
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                fused=fused)
        warmup = max(cfg.warmup_steps, 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x0, cond = batch
        f = self.formulation
        gen = torch.Generator(device=x0.device).manual_seed(VAL_NOISE_SEED + batch_idx)
        native_t, matched_t = level_times().to(x0), matched_times(f).to(x0)
        for k in range(len(native_t)):
            eps = torch.randn(x0.shape, generator=gen, device=x0.device)
            for weights, net in (("raw", self.net), ("ema", self.ema.module)):
                for kind, tk in (("loss", native_t[k]), ("x0_mse", matched_t[k])):
                    t = tk.expand(x0.shape[0])
                    z = f.add_noise(x0, eps, t)
                    raw = self._forward(net, *f.model_input(z, t), cond).float()
                    per = f.loss(raw, x0, eps, t) if kind == "loss" else ((f.denoise(raw, z, t) - x0) ** 2).flatten(1).mean(1)
                    key = f"{weights}_{kind}_{k}"
                    self._val_sums[key] = self._val_sums.get(key, 0) + per.sum().double()
        self._val_sums["count"] = self._val_sums.get("count", 0) + x0.shape[0]

    def on_validation_epoch_end(self) -> None:
        sums, self._val_sums = self._val_sums, {}
        if not sums:
            return
        count = sums.pop("count")
        for weights in ("raw", "ema"):
            for kind in ("loss", "x0_mse"):
                levels = [float(sums[f"{weights}_{kind}_{k}"] / count) for k in range(len(level_times()))]
                for k, value in enumerate(levels):
                    self.log(f"val_levels/{weights}_{kind}_{k}", value)
                self.log(f"val/{weights}_{kind}", sum(levels) / len(levels), prog_bar=(weights, kind) == ("ema", "loss"))
