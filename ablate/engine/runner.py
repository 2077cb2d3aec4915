"""Running grid cells: train -> keep the best-EMA checkpoint -> evaluate every setting -> records.

Layout of one cell (``results/<grid>/<dataset>/<variant-slug>/seed<k>/``): ``checkpoints/``
(best EMA validation loss, and last), ``logs/`` (Lightning CSV/TensorBoard), ``train.json`` (the
training summary, written once training finished), ``records/*.json`` (one per setting x weights,
each written atomically), ``samples/*.png`` (previews) and ``done.json`` (written last). The records are
the truth: a cell whose every record reads back whole is skipped; otherwise exactly its missing or
damaged records are evaluated (again), ``done.json`` or not; a cell with ``train.json`` resumes at
evaluation; a cell with a checkpoint but no ``train.json`` resumes training from ``checkpoints/last.ckpt`` (model,
EMA, optimizer, schedule, step; data order and noise follow from the step, see :mod:`ablate.engine.train`).
A damaged training file is worked around first (:mod:`ablate.engine.cell_state`).
Checkpoints are written atomically, the last step is always validated, and the training summary is
read from the checkpoints (see :mod:`ablate.engine.checkpointing`); temp files of a killed writer are removed
when the cell starts (whoever runs a cell owns it: :mod:`ablate.runs.queue`).
With ``train.devices`` x ``train.num_nodes`` > 1 one cell trains with Lightning's ``ddp_spawn``
(gloo on the CPU); the training summary records world size and effective batch size.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from rich.console import Console
from rich.markup import escape

from ablate.engine.accel import compile_for, gpu_hours, graphs_for, precision_for
from ablate.engine.graphs import fell_back
from ablate.engine.cell_state import check_training_state, load_checkpoint, note
from ablate.engine.checkpointing import AtomicCheckpointIO, CellCheckpoint, validation_curve_of, validation_of
from ablate.engine.curve import curve_probe
from ablate.data import load_dataset
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.errors import ResultsError
from ablate.io import check_fence
from ablate.io import write_failure
from ablate.engine.evaluate import Prompts, draw_prompts, evaluate_setting
from ablate.formulations import parse_variant
from ablate.config.grid import Cell, Grid
from ablate.config.setting import Setting
from ablate.engine.metric_keys import curve_point, summary as validation_summary
from ablate.results import (ResultsStore, cell_dir, new_record, provenance_stamp, write_json_atomic,
                            write_text_atomic)
from ablate.scorers.base import ScoreContext, Scorer, get_scorer, metric_roles
from ablate.engine.monitor import TrainingMonitor
from ablate.engine.batches import LatentDataModule
from ablate.engine.train import DiffusionModule, network_config


@dataclass
class RunContext:
    """What every cell of one ``run`` shares: device, directories, loaded datasets and scorers."""

    device: torch.device
    cache_dir: Path = Path("cache")
    weights_dir: Path | None = None
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))  # log lines are not cut at 80 columns
    progress: bool = True
    callbacks: list[Any] = field(default_factory=list)  # extra Lightning callbacks (e.g. a worker's heartbeat)
    fused: bool | None = None  # fused AdamW; None: ablate.engine.accel.fused_adamw decides
    gpu_share: float = 1.0  # the share of its GPUs a cell holds (1 / workers per GPU): GPU-hours count only it
    _datasets: dict[tuple[str, int, str], tuple[DatasetInfo, dict[str, LatentSplit]]] = field(default_factory=dict)
    _scorers: dict[tuple[str, str], Scorer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")  # TF32 matmuls for fp32 work (and no Lightning notice)

    def dataset(self, grid: Grid, name: str) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
        key = (name, grid.data.resolution, grid.data.conditioning)
        if key not in self._datasets:
            data_dir = Path(grid.data.data_dir) if grid.data.data_dir else None
            self._datasets[key] = load_dataset(name, grid.data.resolution, data_dir, grid.data.conditioning)
        return self._datasets[key]

    def scorers(self, grid: Grid, dataset: str) -> list[Scorer]:
        info, _ = self.dataset(grid, dataset)
        out = []
        for name in grid.eval.scorers:
            if (dataset, name) not in self._scorers:
                ctx = ScoreContext(dataset=info, data_dir=Path(grid.data.data_dir) if grid.data.data_dir else None,
                                   cache_dir=self.cache_dir, weights_dir=self.weights_dir, device=self.device,
                                   options=dict(grid.eval.scorer_options.get(name, {})))
                scorer = get_scorer(name, ctx)
                scorer.check_available()
                self._scorers[(dataset, name)] = scorer
            out.append(self._scorers[(dataset, name)])
        return out


def check_results_writable(grid: Grid) -> None:
    root = grid.results_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ResultsError(write_failure(root, err) or (
            f"The results directory {root} cannot be written ({err.strerror or err}). Choose a writable "
            f"directory with --results DIR, or fix the permissions of {root}.")
        ) from None


class _SpawnLauncher(_MultiProcessingLauncher):
    """Lightning's spawn launcher, defined here so that a spawned rank, unpickling it, imports ablate (and
    its torchvision fix, see :mod:`ablate._torchvision_compat`) before Lightning, whatever the main module."""


class SpawnDDPStrategy(DDPStrategy):
    """``ddp_spawn``: the ranks are spawned processes and the calling process goes on after ``fit`` (a
    worker keeps its claim on the cell, then evaluates it alone)."""

    def __init__(self) -> None:
        super().__init__(start_method="spawn")

    def _configure_launcher(self) -> None:
        self._launcher = _SpawnLauncher(self, start_method="spawn")


def resume_checkpoint(directory: Path, say: Callable[[str], None] | None = None) -> Path | None:
    """The checkpoint to resume a cell's training from: ``last.ckpt``, else ``best.ckpt`` (both hold the
    whole training state), skipping a file that does not load (a write cut short, said); None: start at step 0."""
    for name in ("last.ckpt", "best.ckpt"):
        path = directory / "checkpoints" / name
        checkpoint, fault = load_checkpoint(path)
        if checkpoint is not None:
            return path
        if fault != "missing" and say is not None:
            say(f"{path} is damaged ({fault}): not resuming from it"
                + (", trying best.ckpt" if name == "last.ckpt" else ", the cell starts at step 0"))
    return None


def make_trainer(grid: Grid, ctx: RunContext, directory: Path, label: str,
                 extra_callbacks: tuple[Any, ...] = ()) -> tuple[L.Trainer, CellCheckpoint, TrainingMonitor]:
    """The Lightning trainer of a cell (also what ``bench`` times): precision, validation cadence, the
    best-EMA checkpoint, the loss monitor and the CSV/TensorBoard logs under ``directory``."""
    cfg = grid.train
    best = CellCheckpoint(directory / "checkpoints")
    loggers = cell_loggers(directory)
    monitor = TrainingMonitor(label, None if ctx.progress else ctx.console)
    trainer = L.Trainer(
        callbacks=[best, monitor, *([RichProgressBar()] if ctx.progress else []), *ctx.callbacks, *extra_callbacks],
        plugins=[AtomicCheckpointIO()], logger=loggers, enable_progress_bar=ctx.progress,
        log_every_n_steps=min(50, cfg.max_steps), **trainer_options(grid, ctx),
    )
    return trainer, best, monitor


def cell_loggers(directory: Path) -> list[Any]:
    """A cell's CSV (``logs/metrics.csv``) and, where installed, TensorBoard loggers."""
    loggers: list[Any] = [CSVLogger(directory, name="logs", version="")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(directory, name="logs", version="tb"))
    except (ImportError, ModuleNotFoundError):
        pass
    return loggers


def trainer_options(grid: Grid, ctx: RunContext) -> dict[str, Any]:
    """What every cell's trainer has, lone or in a pack: device, precision, steps and validation cadence."""
    cfg = grid.train
    distributed = cfg.devices * cfg.num_nodes > 1
    return dict(
        accelerator="gpu" if ctx.device.type == "cuda" else "cpu", devices=cfg.devices, num_nodes=cfg.num_nodes,
        strategy=SpawnDDPStrategy() if distributed else "auto", use_distributed_sampler=False,
        precision=precision_for(cfg.precision, ctx.device), max_steps=cfg.max_steps, max_epochs=-1,
        val_check_interval=min(cfg.val_every, cfg.max_steps), check_val_every_n_epoch=None, num_sanity_val_steps=0,
        enable_model_summary=False, deterministic=ctx.device.type == "cpu",
    )


def cell_module(grid: Grid, variant: str, info: DatasetInfo, seed: int = 0, compiled: bool = False,
                fused: bool | None = None, backbone: str = "dit") -> DiffusionModule:
    """The Lightning module of one cell of ``grid``: the variant's formulation and timestep density, the
    grid's network (of ``backbone``) for the dataset ``info``, and its training settings; a ``compiled`` network
    replays CUDA graphs wherever its inputs are on CUDA unless ``train.cuda_graphs`` is false."""
    formulation, density = parse_variant(variant)
    return DiffusionModule(formulation, density, network_config(grid.model.for_backbone(backbone), info,
                                                                    grid.data.conditioning, backbone),
                           grid.train.for_variant(variant), seed=seed, compiled=compiled, fused=fused,
                           graphs=graphs_for(grid.train.cuda_graphs, compiled))


def train_cell(grid: Grid, cell: Cell, ctx: RunContext, directory: Path) -> dict[str, Any]:
    """Train one cell with Lightning, resuming from its last checkpoint if there is one; returns the
    training summary (also written to train.json)."""
    info, splits = ctx.dataset(grid, cell.dataset)
    L.seed_everything(cell.seed, workers=True, verbose=False)
    module = cell_module(grid, cell.variant, info, cell.seed, compile_for(grid.train.compile, ctx.device), ctx.fused,
                         cell.backbone)
    module.curve = curve_probe(grid, cell, ctx, module)
    data = LatentDataModule(splits, grid.train.batch_size, grid.data.val_size, cell.seed, grid.data.conditioning,
                            tokens=module.net_attends_tokens)
    trainer, _, monitor = make_trainer(grid, ctx, directory, f"{cell.variant} · seed {cell.seed}")
    resume = resume_checkpoint(directory, say_to_cell(ctx))
    resumed_step = int(torch.load(resume, map_location="cpu", weights_only=False)["global_step"]) if resume else 0
    keep_earlier_log(directory / "logs", resumed_step)
    start = time.perf_counter()
    try:
        trainer.fit(module, datamodule=data, ckpt_path=resume)
    except SystemExit:  # Lightning's Ctrl-C handling shuts down gracefully, then calls sys.exit(1)
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:  # an interrupted run's time counts too: the cell's cost is the sum of its runs
        wall = time.perf_counter() - start
        runs = record_run(directory, resumed_step, wall, trainer.world_size, ctx)
    best_path = directory / "checkpoints" / "best.ckpt"  # not best_model_path: the results may have moved since
    return training_summary(grid, module, directory, best_path, wall, runs, monitor.img_per_s,
                            resumed_step, trainer.world_size, ctx)


def training_summary(grid: Grid, module: DiffusionModule, directory: Path, best_path: Path, wall: float,
                     runs: list[dict], img_per_s: float, resumed_step: int, world: int, ctx: RunContext,
                     pack: int = 1) -> dict[str, Any]:
    """A trained cell's summary from its checkpoints and runs, written to its ``train.json`` (and returned);
    ``pack``: the cells trained with it as one stacked model (1: alone)."""
    cfg, precision = grid.train, precision_for(grid.train.precision, ctx.device)
    val_every, distributed = min(cfg.val_every, cfg.max_steps), cfg.devices * cfg.num_nodes > 1
    last_path = directory / "checkpoints" / "last.ckpt"
    best_ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
    best_val = validation_of(best_ckpt, best_path)
    summary = {
        "max_steps": cfg.max_steps, "val_every": val_every, "best_step": int(best_ckpt["global_step"]),
        "batch_size": cfg.batch_size, "world_size": world,
        "effective_batch_size": cfg.batch_size * world, "devices": cfg.devices, "num_nodes": cfg.num_nodes,
        "strategy": "ddp_spawn" if distributed else "single", "resumed_from_step": resumed_step,
        "wall_s": wall, "gpu_hours": sum(r["gpu_hours"] for r in runs), "gpu_share": ctx.gpu_share,
        "runs": len(runs), "total_wall_s": sum(r["wall_s"] for r in runs),
        "threads": torch.get_num_threads(),
        "gflops_per_image": module.net.gflops_per_image(), "num_params": module.net.num_params(),
        "train_gflops": module.net.gflops_per_image() * 3 * cfg.batch_size * world * cfg.max_steps,
        "precision": precision, "compiled": module.compiled, "fused_optimizer": module.fused_used,
        "cuda_graphs": graphs_for(cfg.cuda_graphs, module.compiled, ctx.device) and not fell_back(),
        "grad_clip": cfg.grad_clip, "train_img_per_s": img_per_s, "checkpoint": best_path.name,
        "final_val": validation_of(load_checkpoint(last_path)[0] or best_ckpt, last_path),  # last damaged: resumed at best
        **validation_summary(best_val), **({"pack": pack} if pack > 1 else {}),
    }
    write_json_atomic(directory / "train.json", summary)
    return summary


TRAIN_RUNS = "train-runs.json"


def record_run(directory: Path, resumed_step: int, wall: float, world: int, ctx: RunContext) -> list[dict]:
    """Append this training run (from ``resumed_step``, ``wall`` seconds) to the cell's ``train-runs.json``
    and return the runs so far: a cell cut by a deadline and resumed trains in several runs, and its
    ``gpu_hours`` is their sum (a run killed by SIGKILL leaves no entry, so that sum is a lower bound).
    A run from step 0 starts the list again."""
    path = directory / TRAIN_RUNS
    earlier = json.loads(path.read_text()) if resumed_step > 0 and path.exists() else []
    run = {"from_step": resumed_step, "wall_s": wall, "world_size": world, "gpu_share": ctx.gpu_share,
           "gpu_hours": gpu_hours(wall, ctx.device, ctx.gpu_share, world)}
    runs = [r for r in earlier if r["from_step"] < resumed_step] + [run]
    write_json_atomic(path, runs)
    return runs


EARLIER_LOG = "metrics-before-resume.csv"


def keep_earlier_log(logs: Path, resumed_step: int) -> None:
    """Lightning's CSV logger starts ``metrics.csv`` afresh, so before a (re)start the rows logged before
    ``resumed_step`` move to ``metrics-before-resume.csv`` (later rows are logged again, identically). The
    logs are for people: a row or file that does not parse (cut short by a kill) is left out, never fatal;
    rows are copied as written (columns united, in order of appearance)."""
    rows: list[dict[str, str]] = []
    columns: dict[str, None] = {}
    parsed = False
    for path in (logs / EARLIER_LOG, logs / "metrics.csv"):
        try:
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if "step" not in (reader.fieldnames or ()):
                    continue
                parsed = True
                columns.update(dict.fromkeys(reader.fieldnames or ()))
                rows += [row for row in reader if None not in row and None not in row.values()
                         and _step_of(row) is not None and _step_of(row) < resumed_step]
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
    if parsed:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(logs / EARLIER_LOG, out.getvalue())


def _step_of(row: dict[str, str]) -> int | None:
    try:
        return int(float(row["step"]))
    except (ValueError, OverflowError):  # not a number, nan, inf
        return None


def say_to_cell(ctx: RunContext) -> Callable[[str], None]:
    """A warning on the console that also goes to the cell's log."""
    return note(lambda text: ctx.console.print(f"[yellow]{escape(text)}[/]", highlight=False))


def run_cell(grid: Grid, cell: Cell, ctx: RunContext) -> str:
    """Train (unless already trained) and evaluate the cell's missing or damaged records; returns "done", or
    "skipped" when every record was whole and ``done.json`` there."""
    claimed = claim_directory(grid, cell, ctx)
    if claimed is None:
        return "skipped"
    directory, settings = claimed
    summary = check_training_state(directory, say_to_cell(ctx)) or train_cell(grid, cell, ctx, directory)
    return evaluate_cell(grid, cell, ctx, directory, summary, settings)


def claim_directory(grid: Grid, cell: Cell, ctx: RunContext) -> tuple[Path, list[Setting]] | None:
    """The cell's directory (made, cleared of a killed writer's temp files) and the settings whose records are
    missing or damaged (said when the cell looked done); None if ``done.json`` is there and every record whole."""
    directory = cell_dir(grid.results_root, grid.name, cell.dataset, cell.variant, cell.seed, cell.backbone)
    store, settings = ResultsStore(grid.results_root), grid.eval.all_settings()
    faults, done = store.faults(cell, settings), (directory / "done.json").exists()
    if not faults and done:
        return None
    if done or any(why != "missing" for why in faults.values()):
        say_to_cell(ctx)(f"{len(faults)} of the cell's {len(settings)} records to evaluate again: "
                         + "; ".join(f"{store.record_path(cell, s)} ({why})" for s, why in faults.items()))
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.rglob(".*.tmp"):  # temp files of a killed writer (the cell is ours now)
        leftover.unlink(missing_ok=True)
    return directory, list(faults)


def evaluate_cell(grid: Grid, cell: Cell, ctx: RunContext, directory: Path, summary: dict[str, Any],
                  settings: list[Setting]) -> str:
    """Sample and score ``settings`` from the cell's best checkpoint, one record each, then mark it done."""
    info, _ = ctx.dataset(grid, cell.dataset)
    scorers, store = ctx.scorers(grid, cell.dataset), ResultsStore(grid.results_root)
    module, prompts, summary = evaluation_inputs(grid, cell, ctx, directory, summary)
    nets = {"ema": module.ema.module, "raw": module.net}
    stamp = provenance_stamp(str(ctx.device))
    for setting in settings:
        check_fence(store.record_path(cell, setting))  # a worker whose claim was taken over stops here
        result = evaluate_setting(nets[setting.weights], module.formulation, info, prompts, scorers, setting,
                                  grid.eval.batch_size, ctx.device,
                                  preview=store.preview_path(cell, setting), compiled=module.compiled,
                                  gpu_share=ctx.gpu_share, graphs=module.graphs)
        write_setting_record(grid, cell, module, summary, setting, result, scorers, info, stamp)
    write_json_atomic(directory / "done.json", {"cell": dataclasses.asdict(cell), **stamp})
    return "done"


def evaluation_inputs(grid: Grid, cell: Cell, ctx: RunContext, directory: Path,
                      summary: dict[str, Any]) -> tuple[DiffusionModule, Prompts, dict[str, Any]]:
    """What a cell's evaluation samples from: its module with the best checkpoint loaded (on ``ctx.device``), its
    prompts (:func:`~ablate.engine.evaluate.draw_prompts`) and the summary its records carry (with the validation curve)."""
    info, splits = ctx.dataset(grid, cell.dataset)
    ckpt = directory / "checkpoints" / "best.ckpt"
    if "val_curve" not in summary:  # the record carries the validation curve (convergence checks)
        last, _ = load_checkpoint(directory / "checkpoints" / "last.ckpt")
        summary = {**summary, "val_curve": [curve_point(p) for p in (validation_curve_of(last) if last else [])]}
    module = cell_module(grid, cell.variant, info, cell.seed, compile_for(grid.train.compile, ctx.device),
                         backbone=cell.backbone)
    module.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"])
    module.to(ctx.device)
    prompts = draw_prompts(info, splits["test"], grid.eval.num_samples, cell.seed, grid.data.conditioning,
                           tokens=module.net_attends_tokens)
    return module, prompts, summary


def write_setting_record(grid: Grid, cell: Cell, module: DiffusionModule, summary: dict[str, Any], setting: Setting,
                         result: dict[str, Any], scorers: list[Scorer], info: DatasetInfo, stamp: dict[str, Any]) -> None:
    """The record of one evaluated setting (``result``: :func:`~ablate.engine.evaluate.evaluate_setting`'s)."""
    provenance = {s.name: {**s.provenance(), "num_samples": result["num_samples"], "metrics": metric_roles(s)}
                  for s in scorers}
    ResultsStore(grid.results_root).write_record(new_record(
        cell, setting, result["metrics"], metric_resamples=result["metric_resamples"],
        metric_replicates=result["metric_replicates"],
        nfe=result["nfe"], num_samples=result["num_samples"],
        train=summary, eval=result["eval"], solver_details=result["solver_details"],
        formulation={**module.formulation.metadata(), "timestep_density": module.density.name,
                     "variant": cell.variant},
        scorers=provenance, config=grid.to_dict(), dataset_provenance=info.provenance, **stamp))
