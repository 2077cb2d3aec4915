"""Test-only builders for the training unit tests: a tiny typed module, random latents, a bare trainer."""

from __future__ import annotations

from typing import Any

import ablate  # noqa: F401  (torchvision fix first)
import lightning as L
import torch

from ablate.engine.batches import LatentDataModule
from ablate.data.base import LatentSplit
from ablate.formulations import parse_variant
from ablate.config.grid import EMAConfig, TrainConfig
from ablate.models.dit import DiTConfig
from ablate.models.network import NetworkConfig
from ablate.engine.train import DiffusionModule

NETWORK = NetworkConfig("dit", DiTConfig(input_size=8, in_channels=1, patch_size=4, hidden_size=16, depth=1, num_heads=2,
                                           num_classes=3))


def tiny_module(variant: str = "rf", every: int = 1, decay: float = 0.9, seed: int = 0, **train: Any) -> DiffusionModule:
    formulation, density = parse_variant(variant)
    config = TrainConfig(**{"lr": 1e-3, "warmup_steps": 2, "batch_size": 4, **train}, ema=EMAConfig(every=every, decay=decay))
    return DiffusionModule(formulation, density, NETWORK, config, seed=seed)


def random_data(n_train: int = 64, n_test: int = 8, batch_size: int = 4) -> LatentDataModule:
    g = torch.Generator().manual_seed(0)
    split = lambda n: LatentSplit(latents=torch.randn(n, 1, 8, 8, generator=g),  # noqa: E731
                                  labels=torch.randint(0, 3, (n,), generator=g))
    return LatentDataModule({"train": split(n_train), "test": split(n_test)}, batch_size, n_test, seed=0)


def bare_trainer(max_steps: int, callbacks: list[L.Callback] = (), **kw: Any) -> L.Trainer:
    """CPU, no logger, no checkpoints, no validation unless ``kw`` asks for it."""
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, max_epochs=-1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, callbacks=list(callbacks), deterministic=True,
                     **{"limit_val_batches": 0, **kw})


class InterruptAt(L.Callback):
    """Raises ``error`` (a kill stand-in) at the end of optimizer step ``step``."""

    def __init__(self, step: int, error: type[BaseException]) -> None:
        self.step, self.error = step, error

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise self.error(f"stopped at step {self.step}")
