"""Training one grid cell: the Lightning module (formulation + network + EMA).

Convention: t in [0, 1], t = 0 is data, t = 1 is noise. The formulation layer owns all the math;
this module only composes it: t ~ the variant's timestep density, z = add_noise(x0, eps, t),
loss = formulation.loss(net(*model_input(z, t), y), x0, eps, t).

The module is built from typed pieces: the formulation and timestep density (one parsed variant),
the network's :class:`~ablate.models.network.NetworkConfig` (see :func:`network_config`) and the
grid's :class:`TrainConfig`; it saves them as plain data (``save_hyperparameters``), so every checkpoint
says what trained it.

EMA (:class:`ablate.engine.ema.EMA`) is updated every ``train.ema.every`` optimizer steps with decay
``train.ema.decay``. Validation (spec sections 4 and 6), on fixed data, noise and levels for every
variant: the native loss at 8 equally spaced t, and the cross-formulation x0-MSE at 8 fixed log-SNR
levels, for the raw and the EMA weights (names in :mod:`ablate.engine.metric_keys`). The checkpoint kept
for evaluation is the one with the lowest EMA validation loss (the paper's rule).

Determinism and resumption: every random draw of optimizer step k is a function of (cell seed, k,
rank) alone: the batch (:class:`ablate.engine.batches.StepBatches`) and the conditioning dropout, t and
noise (a generator seeded by :func:`ablate.engine.batches.mix_seed`). A run resumed from a checkpoint at
step k therefore reads the same batches and noise as an uninterrupted one, and gives bit-identical
weights on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import torch
from torch import Tensor

from ablate.engine.accel import fused_adamw
from ablate.engine.batches import mix_seed
from ablate.data.base import DatasetInfo
from ablate.data.conditioning import null_conditioning
from ablate.engine.ema import EMA
from ablate.engine.graphs import forward_fn
from ablate.formulations import Formulation, TimestepDensity, level_times, matched_times, variant_name
from ablate.config.grid import ModelConfig, TrainConfig
from ablate.engine.metric_keys import KINDS, SELECTION, WEIGHTS, is_curve_key, level_key, mean_key
from ablate.errors import ConfigError
from ablate.models.network import BACKBONES, NetworkConfig, build_network
from ablate.models.text_encoder import TextEncoderConfig
from ablate.config.schema import plain

VAL_NOISE_SEED = 1234  # the same validation noise for every variant and seed


TEXT_ENCODER_DEPTH = 2  # blocks of the jointly trained caption encoder (its width and heads are the model's)


def network_config(model: ModelConfig, info: DatasetInfo, conditioning: str = "class",
                   backbone: str = "dit") -> NetworkConfig:
    """The network of a grid's ``model`` section for a dataset and a backbone (:data:`BACKBONES`): its
    latent shape, and class labels (``conditioning`` "class") or captions ("caption") as the condition.
    Captions given as token ids (``info.caption_vocab``) get a jointly trained encoder of the model's width;
    stored caption embeddings go in as they are (DiT: the pooled vector; the others: pooled and tokens)."""
    caption = conditioning == "caption"
    text = TextEncoderConfig(vocab_size=info.caption_vocab, context_length=info.caption_length,
                             width=model.hidden_size, depth=TEXT_ENCODER_DEPTH, num_heads=model.num_heads,
                             pooled_dim=model.hidden_size) if caption and info.caption_vocab else None
    keys = dict(input_size=info.resolution, in_channels=info.channels, patch_size=model.patch_size,
                hidden_size=model.hidden_size, depth=model.depth, num_heads=model.num_heads, mlp_ratio=model.mlp_ratio,
                num_classes=0 if caption else info.num_classes,
                cond_dim=(text.pooled_dim if text else info.cond_dim) if caption else 0)
    stored_tokens = caption and text is None and backbone != "dit"
    if backbone != "dit":
        if not caption:
            raise ConfigError(f"The backbone {backbone!r} attends to caption tokens, so it needs data.conditioning "
                              "'caption'; class-conditional grids use the backbone 'dit'.")
        if stored_tokens and info.token_shape is None:
            raise ConfigError(f"The backbone {backbone!r} attends to caption tokens, but dataset {info.name!r} was "
                              "prepared without them; prepare it again with a text encoder that stores tokens, or "
                              "use the backbone 'dit' (pooled embedding only).")
        length, width = (text.context_length, text.width) if text else info.token_shape
        keys.update(context_length=length, context_dim=width)
    return NetworkConfig(backbone, BACKBONES[backbone][0](**keys), text, stored_tokens)


class DiffusionModule(L.LightningModule):
    """One variant (formulation x timestep density) training one network.

    No host-device synchronisation happens inside a training step: the loss sum and the first
    non-finite loss are kept on the device and read every ``check_every`` steps and at each
    validation by :class:`ablate.engine.monitor.TrainingMonitor`, which reports the exact step of a
    non-finite loss. ``compiled``: the network runs through the process's shared compiled forward
    (:func:`ablate.engine.accel.compiled_call`), replaying CUDA graphs on CUDA where ``graphs``
    (:mod:`ablate.engine.graphs`); ``fused``: AdamW's fused kernel (None: ask
    :func:`ablate.engine.accel.fused_adamw` at fit time). Clipping (``train.grad_clip``) is done here,
    before the optimizer step, which works with fused optimizers and mixed precision alike.
    ``hparams``: ``variant`` (the name), ``network``, ``train`` and ``seed``, as plain data.
    """

    def __init__(self, formulation: Formulation, density: TimestepDensity, network: NetworkConfig,
                 train: TrainConfig, seed: int = 0, compiled: bool = False, fused: bool | None = None,
                 graphs: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters({"variant": variant_name(formulation, density), "network": network.to_dict(),
                                   "train": plain(train), "seed": seed})
        self.formulation, self.density, self.train_config = formulation, density, train
        self.seed, self.fused, self.compiled, self.graphs = seed, fused, compiled, compiled and graphs
        self.net = build_network(network)
        self.net_attends_tokens = network.stored_tokens  # its conditioning packs the stored caption tokens
        self.ema = EMA(self.net, train.ema.decay)
        self.ema.requires_grad_(False)
        self.fused_used: bool | None = None
        self._forward = forward_fn(compiled, graphs)
        self.curve: Callable[[int], dict[str, float]] | None = None  # eval.curve_every's probe (ablate.engine.curve)
        self._val_sums: dict[str, Tensor] = {}
        self._val_count = 0
        self.reset_loss_window()

    # -- training -------------------------------------------------------------------------------
    def reset_loss_window(self) -> None:
        """Start a new window of on-device loss statistics (see :class:`TrainingMonitor`)."""
        self._loss_sum: Tensor | None = None   # sum of finite losses since the window started
        self._first_bad: Tensor | None = None  # index in the window of the first non-finite loss, -1: none
        self._window = 0                       # steps in the window (a host-side count)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        args, finish = self.prepare_step(batch)
        return finish(self._forward(self.net, *args))

    def prepare_step(self, batch: tuple[Tensor, Tensor]) -> tuple[tuple[Any, ...], Callable[[Tensor], Tensor]]:
        """This step's network inputs ``(x, t, y)`` and the function from the network's output to the loss
        (which it also tracks): a pack (:mod:`ablate.engine.pack`) runs the networks of its cells between the two."""
        x0, cond = batch
        n = x0.shape[0]
        gen = torch.Generator(device=x0.device).manual_seed(mix_seed(self.seed, self.global_step, self.global_rank))
        drop = torch.rand(n, generator=gen, device=x0.device) < self.train_config.cond_dropout
        null = null_conditioning(cond, self.net.null_class)
        cond = torch.where(drop.view(-1, *[1] * (cond.ndim - 1)), null, cond)
        t = self.density.sample(n, generator=gen, device=x0.device)
        eps = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        z = self.formulation.add_noise(x0, eps, t)

        def finish(raw: Tensor) -> Tensor:
            loss = self.formulation.loss(raw.float(), x0, eps, t).mean()
            self._track(loss.detach())
            return loss

        return (*self.formulation.model_input(z, t), cond), finish

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
        clip = self.train_config.grad_clip
        if clip:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), clip, foreach=True)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.update_ema()

    def update_ema(self) -> None:
        """The EMA update due after the optimizer step that made ``global_step`` (every ``ema.every`` steps)."""
        ema = self.train_config.ema
        if self.global_step % ema.every == 0:  # before ema.start the average restarts at every update
            self.ema.update_parameters(self.net, restart=self.global_step < ema.start)

    def configure_optimizers(self) -> dict[str, Any]:
        fused = self.fused if self.fused is not None else fused_adamw(str(self.trainer.precision), self.device)
        self.fused_used = fused
        return optimizer_and_schedule(self.train_config, list(self.net.parameters()), fused)

    # -- validation -----------------------------------------------------------------------------
    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x0, cond = batch
        nets = {"raw": self.net, "ema": self.ema.module}
        for level, eps in enumerate(validation_noise(x0, batch_idx)):
            for kind in KINDS:
                args, finish = self.prepare_validation(x0, cond, eps, level, kind)
                for weights in WEIGHTS:
                    finish(self._forward(nets[weights], *args), weights)
        self._val_count += x0.shape[0]

    def prepare_validation(self, x0: Tensor, cond: Tensor, eps: Tensor, level: int,
                           kind: str) -> tuple[tuple[Any, ...], Callable[[Tensor, str], None]]:
        """The network inputs ``(x, t, y)`` of one validation level and kind (:data:`KINDS`), the same for both
        weights, and the function adding a network's output (of the weights named) to this validation's sums:
        a pack (:mod:`ablate.engine.pack_validation`) runs the networks of its cells between the two."""
        f = self.formulation
        times = level_times() if kind == "loss" else matched_times(f)
        t = times[level].to(x0).expand(x0.shape[0])
        z = f.add_noise(x0, eps, t)

        def finish(out: Tensor, weights: str) -> None:
            raw = out.float()
            per = f.loss(raw, x0, eps, t) if kind == "loss" else ((f.denoise(raw, z, t) - x0) ** 2).flatten(1).mean(1)
            key = level_key(weights, kind, level)
            self._val_sums[key] = self._val_sums.get(key, 0) + per.sum().double()

        return (*f.model_input(z, t), cond), finish

    def on_validation_epoch_start(self) -> None:
        self._val_sums, self._val_count = {}, 0

    def validation_numbers(self) -> dict[str, float]:
        """The numbers of the validation that just ended, by key (per level, then the mean, then what ``curve`` adds
        at this step: fidelity and alignment through training); resets the sums."""
        sums, count, self._val_sums = self._val_sums, self._val_count, {}
        numbers: dict[str, float] = {}
        if not sums:
            return numbers
        for weights in WEIGHTS:
            for kind in KINDS:
                levels = [float(sums[level_key(weights, kind, k)] / count) for k in range(len(level_times()))]
                for k, value in enumerate(levels):
                    numbers[level_key(weights, kind, k)] = value
                numbers[mean_key(weights, kind)] = sum(levels) / len(levels)
        if self.curve is not None:
            numbers.update(self.curve(self.global_step))
        return numbers

    def on_validation_epoch_end(self) -> None:
        numbers = self.validation_numbers()
        metrics = self.trainer.callback_metrics  # Lightning's own dict, which keeps what earlier validations logged:
        for key in [k for k in metrics if is_curve_key(k) and k not in numbers]:  # a curve point is drawn only at
            del metrics[key]  # multiples of eval.curve_every, so an earlier one must not pass for this step's
        for key, value in numbers.items():
            self.log(key, value, prog_bar=key == SELECTION)


def validation_noise(x0: Tensor, batch_idx: int) -> Iterator[Tensor]:
    """The validation noise of batch ``batch_idx``, one draw per level (in order, each of ``x0``'s shape): the same
    for every variant and seed (seeded by ``VAL_NOISE_SEED`` and the batch)."""
    gen = torch.Generator(device=x0.device).manual_seed(VAL_NOISE_SEED + batch_idx)
    for _ in range(len(level_times())):
        yield torch.randn(x0.shape, generator=gen, device=x0.device)


def optimizer_and_schedule(cfg: TrainConfig, params: list[Tensor], fused: bool) -> dict[str, Any]:
    """AdamW over ``params`` and its schedule (linear warm-up, then ``cfg.lr_schedule``), as Lightning's ``configure_optimizers`` returns them. AdamW
    is elementwise, so one optimizer over the parameters of several networks (a pack) steps each exactly as
    its own would."""
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused)
    schedule, steps, warmup = cfg.lr_schedule, cfg.max_steps, cfg.warmup_steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule.factor(step, steps, warmup))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
