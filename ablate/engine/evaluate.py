"""Evaluation of a trained cell: each :class:`~ablate.config.setting.Setting` -> samples -> scores.

Samples come from the formulation core's Euler sampler (:func:`ablate.formulations.euler_sample`),
batched. Every variant and setting of a cell's seed draws the same prompts and the same initial
noise (common random numbers), so differences between settings are the settings', not the noise's.
Prompts are test-split items: their class (or caption embedding) conditions the sample and their
caption is what alignment scorers compare against.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from ablate.engine.accel import gpu_hours
from ablate.engine.graphs import forward_fn
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.formulations import Formulation, euler_sample, sampling_times, solver_metadata
from ablate.io import write_bytes_atomic
from ablate.scorers.base import Scorer
from ablate.data.conditioning import conditioning_of, null_conditioning
from ablate.config.setting import Setting

PROMPT_SEED_OFFSET = 10_000  # prompts/noise seed = cell seed + this, distinct from training's


@dataclass(frozen=True)
class Prompts:
    """What the samples of one evaluation are conditioned on, shared by every setting."""

    cond: Tensor            # class labels (N,), caption token ids (N, L) or caption embeddings (N, D[+L W])
    labels: Tensor          # class labels (N,) (for class-aware scorers)
    captions: list[str]     # the text each sample should match
    noise: Tensor           # initial standard-normal noise (N, C, H, W)


def draw_prompts(info: DatasetInfo, test: LatentSplit, n: int, seed: int, conditioning: str,
                 tokens: bool = False) -> Prompts:
    """n prompts drawn (with replacement if n > len(test)) from the test split, deterministically; each
    carries its class label and caption (the item's own when the split has them); ``tokens``: stored caption
    token sequences join the conditioning (see :func:`ablate.data.conditioning.conditioning_of`)."""
    gen = torch.Generator().manual_seed(seed + PROMPT_SEED_OFFSET)
    index = torch.randint(len(test), (n,), generator=gen) if n > len(test) else torch.randperm(len(test), generator=gen)[:n]
    labels = test.labels[index]
    if test.captions is not None:
        captions = [test.captions[int(i)] for i in index]
    else:
        captions = [info.caption(int(y), gen) for y in labels]
    noise = torch.randn(n, info.channels, info.resolution, info.resolution, generator=gen)
    return Prompts(conditioning_of(test, index, conditioning, tokens), labels, captions, noise)


@torch.inference_mode()
def generate(net: nn.Module, formulation: Formulation, info: DatasetInfo, prompts: Prompts, steps: int,
             cfg: float, time_grid: str, batch_size: int, device: torch.device,
             on_batch: Callable[[int], None] | None = None, compiled: bool = False,
             graphs: bool = False) -> tuple[Tensor, int]:
    """Samples (N, C, H, W) on the CPU, and the NFE per sample; ``compiled``: through the process's
    shared compiled forward (:func:`ablate.engine.accel.compiled_call`), with CUDA graphs on CUDA where ``graphs``
    (:mod:`ablate.engine.graphs`: one per batch shape and set of weights)."""
    net.eval()
    autocast = sampling_autocast(device)
    forward = forward_fn(compiled, graphs)

    def model_fn(x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        with autocast:
            return forward(net, x, t, cond).float()

    out, nfe = [], 0
    for start in range(0, len(prompts.noise), batch_size):
        sl = slice(start, start + batch_size)
        cond = prompts.cond[sl].to(device)
        x, nfe = euler_sample(formulation, model_fn, prompts.noise[sl].to(device), steps=steps, cfg=cfg,
                              cond=cond, uncond=null_conditioning(cond, info.num_classes), time_grid=time_grid)
        out.append(x.float().cpu())
        if on_batch:
            on_batch(len(x))
    return torch.cat(out), nfe


def sampling_autocast(device: torch.device) -> torch.autocast:
    """The sampler's precision: the network in bf16 autocast on CUDA, as trained; full precision on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def score_samples(scorers: list[Scorer], samples: Tensor, prompts: Prompts) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for scorer in scorers:
        metrics.update(scorer.score(samples, prompts.labels, prompts.captions))
    return metrics


def resamples_of(scorers: list[Scorer], replicates: bool = False) -> dict[str, list[float]]:
    """The scorers' per-part values of their last scores (:meth:`ablate.scorers.base.Scorer.resamples`), or with
    ``replicates`` their replicates (:meth:`ablate.scorers.base.Scorer.replicates`)."""
    return {name: values for scorer in scorers
            for name, values in (scorer.replicates() if replicates else scorer.resamples()).items()}


def evaluate_setting(net: nn.Module, formulation: Formulation, info: DatasetInfo, prompts: Prompts,
                     scorers: list[Scorer], setting: Setting, batch_size: int, device: torch.device,
                     preview: Path | None = None, on_batch: Callable[[int], None] | None = None,
                     compiled: bool = False, gpu_share: float = 1.0, graphs: bool = False) -> dict:
    """One setting, sampled with ``net`` (the caller picks it by ``setting.weights``): the record's
    ``metrics``, ``metric_resamples``, ``metric_replicates``, ``nfe``, ``num_samples``, ``solver_details`` and
    ``eval`` (timing) parts; ``gpu_share``: the share of the GPU this process holds (1 / processes sharing it), by which its GPU-hours are counted."""
    start = time.perf_counter()
    samples, nfe = generate(net, formulation, info, prompts, setting.steps, setting.cfg, setting.time_grid,
                            batch_size, device, on_batch, compiled, graphs)
    return setting_result(samples, nfe, time.perf_counter() - start, formulation, info, prompts, scorers, setting,
                          device, preview, gpu_share)


def setting_result(samples: Tensor, nfe: int, sample_s: float, formulation: Formulation, info: DatasetInfo,
                   prompts: Prompts, scorers: list[Scorer], setting: Setting, device: torch.device,
                   preview: Path | None = None, gpu_share: float = 1.0, pack: int = 1) -> dict:
    """:func:`evaluate_setting`'s parts for ``samples`` drawn in ``sample_s`` seconds (scored here, timed on from
    there); ``pack``: the cells that sampled together (:mod:`ablate.engine.pack_sampling`), whose shared sampling
    time each counts a ``1 / pack`` share of (recorded as ``eval.pack`` where over 1)."""
    start = time.perf_counter() - sample_s
    nonfinite = int((~torch.isfinite(samples).flatten(1).all(1)).sum())
    if nonfinite:  # a diverged solver: record NaN (ranked last) rather than feed scorers garbage
        metrics, resamples, replicates = {m.name: float("nan") for scorer in scorers for m in scorer.metrics}, {}, {}
    else:
        metrics = score_samples(scorers, samples, prompts)
        resamples, replicates = resamples_of(scorers), resamples_of(scorers, replicates=True)
    if preview is not None and info.autoencoder == "identity":
        save_preview(samples[:64], preview)
    wall = time.perf_counter() - start
    return {
        "metrics": metrics, "metric_resamples": resamples, "metric_replicates": replicates, "nfe": nfe,
        "num_samples": len(samples),
        "solver_details": solver_details(formulation, setting),
        "eval": {"wall_s": wall, "sample_s": sample_s, "nonfinite_samples": nonfinite,
                 "gpu_hours": gpu_hours(wall, device, gpu_share), **({"pack": pack} if pack > 1 else {})},
    }


def solver_details(formulation: Formulation, setting: Setting) -> dict:
    """How the solver ran, with where its last network call was: ``last_call_t`` (the formulation's t)
    and ``last_call_rf_noise`` (the rf-equivalent noise level b / (a + b) there; the last step returns
    that call's x0 estimate, so this is the noise level the sample is denoised from in one jump)."""
    times = sampling_times(formulation, setting.steps, setting.time_grid)
    t_last = times[-2:-1]
    a, b = formulation.coefficients(t_last)
    return {**solver_metadata(formulation, setting.steps, setting.cfg, setting.time_grid),
            "last_call_t": float(t_last[0]), "last_call_rf_noise": float((b / (a + b))[0])}


def save_preview(samples: Tensor, path: Path) -> None:
    """An 8-wide PNG grid of pixel-space samples in [-1, 1] (for looking, not for scoring)."""
    from torchvision.utils import make_grid
    from PIL import Image

    grid = make_grid(samples.clamp(-1, 1) * 0.5 + 0.5, nrow=8, padding=1, pad_value=1.0)
    array = grid.permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
