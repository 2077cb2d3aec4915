"""Grid cells as Optuna trials: workers in several processes or machines claim, run and finish cells.

Conventions:

- One study per grid (named like the grid) in an Optuna RDB storage: by default
  ``sqlite:///<results>/<grid>/optuna.sqlite3``; ``postgresql://`` or ``mysql://`` URLs let
  workers on several machines share a grid. Optuna's journal storage is not offered: it has no
  heartbeat, so a dead worker's cell would never be reclaimed.
- Every cell is one enqueued trial whose user attributes name it (``cell``, ``variant``,
  ``dataset``, ``seed``). A worker claims the oldest waiting trial through ``study.optimize``,
  which also runs Optuna's heartbeat thread and fails trials whose heartbeat is older than the
  grace period; :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` re-queues those, and the cell
  resumes from its last checkpoint (if this machine sees the cell's results directory).
- A finished trial is COMPLETE with value = the cell's EMA validation loss; its result records live
  only in the results store (:class:`ablate.results.ResultsStore`), which the leaderboard reads.
- A cell that diverges or errors is FAIL with ``fail_reason`` and ``fail_step``; it stays failed
  until ``--retry-failed``. A cell stopped by Ctrl-C is re-queued by the next run.
- A trial without a ``cell`` attribute is a spare one Optuna made when the queue emptied between
  a worker's look and its claim; it is pruned at once and ignored.
- ``ABLATE_HEARTBEAT_INTERVAL`` (s, default 20) and ``ABLATE_GRACE_PERIOD`` (s, default 120) tune
  how fast a dead worker's cell is reclaimed.
"""

from __future__ import annotations

import functools
import json
import multiprocessing as mp
import os
import re
import socket
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from ablate.errors import AblateError, ConfigError
from ablate.grid import Cell, Grid
from ablate.results import cell_dir
from ablate.storage_urls import sqlite_file
from ablate.runner import RunContext, run_cell

SCHEMES = ("sqlite", "postgresql", "mysql")
MAX_STALE_RETRIES = 3
POLL_S = 2.0
STATE_NAMES = {None: "pending", TrialState.WAITING: "pending", TrialState.RUNNING: "running",
               TrialState.COMPLETE: "done", TrialState.FAIL: "failed"}
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class WorkerOptions:
    """How ``run`` spreads a grid: ``storage`` None means the default SQLite file of the grid."""

    storage: str | None = None
    workers: int | None = None          # None: one per GPU group x workers_per_gpu on GPUs, else 1
    workers_per_gpu: int = 1
    retry_failed: bool = False


class CellFailed(Exception):
    """A cell's run failed (divergence, a crash in training or scoring); the grid goes on."""


class TrialLost(RuntimeError):
    """This worker's trial was failed by another worker (its heartbeat looked stale): stop the cell."""


def heartbeat_settings() -> tuple[int, int]:
    return int(os.environ.get("ABLATE_HEARTBEAT_INTERVAL", 20)), int(os.environ.get("ABLATE_GRACE_PERIOD", 120))


def default_storage(grid: Grid) -> str:
    return f"sqlite:///{(grid.results_dir / 'optuna.sqlite3').resolve()}"


def open_storage(url: str, heartbeat: bool = True) -> RDBStorage:
    """An RDB storage with Optuna's heartbeat (and stale-trial retry) unless ``heartbeat`` is False."""
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if scheme not in SCHEMES:
        raise ConfigError(f"--storage {url!r} is not a supported Optuna storage URL; allowed: sqlite:///PATH, "
                          "postgresql://USER:PASSWORD@HOST/DB or mysql://... (an RDB storage: Optuna's journal "
                          "storage has no heartbeat, so a dead worker's cell could never be reclaimed).")
    kwargs: dict[str, Any] = {}
    if scheme == "sqlite":
        sqlite_file(url).parent.mkdir(parents=True, exist_ok=True)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}
    if heartbeat:
        interval, grace = heartbeat_settings()
        kwargs.update(heartbeat_interval=interval, grace_period=grace,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_STALE_RETRIES))
    for attempt in range(5):  # several processes creating the tables of a new database at once can race
        try:
            storage = RDBStorage(url, **kwargs)
            if scheme == "sqlite":
                _serialise_sqlite(storage.engine)
            return storage
        except Exception as err:  # noqa: BLE001
            if attempt == 4 or "already exists" not in str(err) and "locked" not in str(err):
                raise ConfigError(f"Cannot open the Optuna storage {url!r}: {err}. Check the URL, that the "
                                  "database server runs and accepts this user, and that its driver is installed "
                                  "(psycopg[binary] for PostgreSQL).") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def _serialise_sqlite(engine: Any) -> None:
    """pysqlite opens a transaction only at the first write, so two processes can both read a trial as
    waiting and both claim it (SQLite has no SELECT ... FOR UPDATE). SQLAlchemy's recipe: take the write
    lock when the transaction begins (BEGIN IMMEDIATE), which serialises every transaction on the file."""
    from sqlalchemy import event

    event.listen(engine, "connect", lambda dbapi_connection, record: setattr(dbapi_connection, "isolation_level", None))
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
    engine.dispose()  # connections opened before the listeners would not take the lock


def shared_config(grid: Grid) -> dict[str, Any]:
    """What every worker of a grid must agree on: the grid minus its cell list and machine-local paths."""
    config = grid.to_dict()
    for key in ("variants", "datasets", "seeds", "description"):
        config.pop(key, None)
    config["data"].pop("data_dir", None)
    return config


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    return [] if a == b else [f"{path} ({b!r} in the storage, {a!r} here)"]


def open_study(grid: Grid, storage: RDBStorage) -> optuna.Study:
    """The grid's study, created on first use; its config must match this grid's."""
    study = optuna.create_study(study_name=grid.name, storage=storage, direction="minimize", load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    mine = json.loads(json.dumps(shared_config(grid)))
    stored = study.user_attrs.get("config")
    if stored is None:
        study.set_user_attr("config", mine)
    elif stored != mine:
        diff = "; ".join(_differences(mine, stored))
        raise ConfigError(f"The storage already holds grid {grid.name!r} with a different configuration: {diff}. "
                          "Every worker of a grid must run the same grid file and options; use another --storage "
                          "or rename the grid to start a separate study.")
    return study


def cell_of(attrs: dict[str, Any], grid_name: str) -> Cell | None:
    if "cell" not in attrs:
        return None
    return Cell(grid_name, attrs["variant"], attrs["dataset"], int(attrs["seed"]))


def trials_by_cell(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    """Every cell's trials, oldest first (spare and duplicate trials, which are pruned, left out)."""
    out: dict[str, list[FrozenTrial]] = {}
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if "cell" in trial.user_attrs and trial.state != TrialState.PRUNED:
            out.setdefault(trial.user_attrs["cell"], []).append(trial)
    return out


def queue_cells(study: optuna.Study, grid: Grid, retry_failed: bool = False) -> int:
    """Enqueue each cell that has no trial yet, or whose last trial failed (interrupted by Ctrl-C, or any
    failure with ``retry_failed``). Returns how many were queued."""
    existing, queued = trials_by_cell(study), 0
    for cell in grid.cells():
        last = existing.get(cell.id, [None])[-1]
        if last is None or (last.state == TrialState.FAIL and (retry_failed or last.user_attrs.get("interrupted"))):
            study.enqueue_trial({}, user_attrs={"cell": cell.id, "variant": cell.variant, "dataset": cell.dataset,
                                                "seed": cell.seed})
            queued += 1
    return queued


def _superseded(study: optuna.Study, trial: optuna.Trial, cell_id: str) -> bool:
    """Another trial already covers this cell: it is complete, or older and waiting or running."""
    for other in trials_by_cell(study).get(cell_id, []):
        if other.number == trial.number:
            continue
        if other.state == TrialState.COMPLETE or (
                other.state in (TrialState.RUNNING, TrialState.WAITING) and other.number < trial.number):
            return True
    return False


@functools.lru_cache(maxsize=4)
def _plain_storage(url: str) -> RDBStorage:
    """One heartbeat-less connection per storage and process, for progress reports."""
    return open_storage(url, heartbeat=False)


class TrialReporter(L.Callback):
    """On global rank 0, every heartbeat interval: stores the training step in the trial (``step``) and
    stops training with :class:`TrialLost` if the trial is no longer this worker's (no longer RUNNING)."""

    def __init__(self, url: str, trial_id: int) -> None:
        self.url, self.trial_id, self.every = url, trial_id, heartbeat_settings()[0]
        self._storage: RDBStorage | None = None
        self._last = 0.0

    def __getstate__(self) -> dict[str, Any]:  # ddp_spawn pickles callbacks: reconnect in the child
        return {**self.__dict__, "_storage": None}

    def report(self, trainer: L.Trainer, force: bool = False) -> None:
        if trainer.global_rank != 0 or (not force and time.monotonic() - self._last < self.every):
            return
        self._last = time.monotonic()
        self._storage = self._storage or _plain_storage(self.url)
        if self._storage.get_trial(self.trial_id).state != TrialState.RUNNING:
            raise TrialLost(f"trial {self.trial_id} was taken over by another worker (stale heartbeat)")
        self._storage.set_trial_user_attr(self.trial_id, "step", int(trainer.global_step))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.report(trainer, force=True)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.report(trainer)


class Worker:
    """Claims and runs cells of one grid until none is waiting or running anywhere."""

    def __init__(self, grid: Grid, ctx: RunContext, url: str, name: str = "w0") -> None:
        self.grid, self.ctx, self.url, self.name = grid, ctx, url, name
        self.study = optuna.load_study(study_name=grid.name, storage=open_storage(url))
        self.counts: Counter[str] = Counter()
        self.lost = False
        self.where = {"host": socket.gethostname(), "pid": os.getpid(), "worker": name,
                      "device": os.environ.get("CUDA_VISIBLE_DEVICES", str(ctx.device))
                      if ctx.device.type == "cuda" else "cpu"}

    def say(self, text: str) -> None:
        self.ctx.console.print(f"[bold]\\[{self.name}][/] {text}", highlight=False)

    def objective(self, trial: optuna.Trial) -> float:
        cell = cell_of(trial.user_attrs, self.grid.name)
        if cell is None or _superseded(self.study, trial, cell.id):
            raise optuna.TrialPruned("no cell to run (spare or duplicate trial)")
        trial.set_user_attr("where", self.where)
        for key in ("step", "fail_reason", "fail_step"):
            trial.set_user_attr(key, None)  # attributes of a retried attempt
        self.say(f"trial {trial.number}: {cell.dataset} · {cell.variant} · seed {cell.seed}")
        self.ctx.callbacks = [TrialReporter(self.url, trial._trial_id)]
        start = time.perf_counter()
        try:
            outcome = run_cell(self.grid, cell, self.ctx)
        except TrialLost:
            self.lost = True
            raise
        except AblateError:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as err:
            match = re.search(r"at step (\d+)", str(err))
            step = int(match.group(1)) if match else self.study._storage.get_trial(trial._trial_id).user_attrs.get("step")
            trial.set_user_attr("fail_reason", f"{type(err).__name__}: {err}"[:1000])
            trial.set_user_attr("fail_step", step)
            self.ctx.console.print(f"[{self.name}] trial {trial.number} failed at step {step}: {type(err).__name__}: {err}",
                                   markup=False, style="red")  # err quotes user input: never markup
            self.counts["failed"] += 1
            raise CellFailed(str(err)) from err
        finally:
            self.ctx.callbacks = []
        summary = json.loads((cell_dir(self.grid.results_root, self.grid.name, cell.dataset, cell.variant, cell.seed)
                              / "train.json").read_text())
        trial.set_user_attr("train", summary)
        trial.set_user_attr("step", summary["max_steps"])
        self.counts[outcome] += 1
        self.say(f"trial {trial.number} {outcome} in {time.perf_counter() - start:.1f} s")
        return float(summary["val_loss"])

    def run(self) -> Counter[str]:
        for dataset in self.grid.datasets:  # fail before any training if data or a scorer is unavailable
            self.ctx.scorers(self.grid, dataset)
        while True:
            fail_stale_trials(self.study)
            states = {t.state for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,
                                                                                      TrialState.RUNNING))}
            if TrialState.WAITING in states:
                self.lost = False
                try:
                    self.study.optimize(self.objective, n_trials=1, catch=(CellFailed,))
                except Exception:  # telling a trial that another worker already failed as stale raises too
                    if not self.lost:
                        raise
                    self.say("[yellow]another worker took this cell over (our heartbeat looked stale); moving on[/]")
                    self.counts["lost"] += 1
            elif TrialState.RUNNING in states:
                time.sleep(POLL_S)  # another worker is busy; its cell comes back here if it dies
            else:
                return self.counts


def _worker_process(grid: Grid, device: str, cache_dir: Path, weights_dir: Path | None, url: str, name: str,
                    gpus: str | None, modules: list[str], threads: int) -> None:
    """Entry point of a local worker process (forked from the forkserver, which never touches CUDA)."""
    import importlib

    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(threads)
    for module in modules:  # scorers registered outside ablate (e.g. by tests) must exist here too
        importlib.import_module(module)
    ctx = RunContext(device=torch.device(device), cache_dir=cache_dir, weights_dir=weights_dir, progress=False)
    try:
        Worker(grid, ctx, url, name).run()
    except AblateError as err:
        Console(stderr=True).print(f"[{name}] error: {err}", markup=False, highlight=False, style="bold red")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def gpu_assignment(workers: int, per_gpu: int, devices: int, visible: list[str]) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each worker: ``per_gpu`` workers share each group of ``devices`` GPUs."""
    groups = [visible[i:i + devices] for i in range(0, len(visible) - devices + 1, devices)] or [visible]
    return [",".join(groups[(i // per_gpu) % len(groups)]) for i in range(workers)]


def run_workers(grid: Grid, ctx: RunContext, options: WorkerOptions) -> Counter[str]:
    """Queue the grid's cells in the storage, then run ``options.workers`` workers (in this process if
    one, else in spawned processes spread over the visible GPUs, a killed one restarted); returns the
    grid's cell counts by state when no cell is waiting or running any more."""
    from ablate.scorers.base import _REGISTRY, _load_builtin

    if grid.train.num_nodes > 1:
        raise ConfigError(f"--num-nodes {grid.train.num_nodes} cannot be combined with workers (--workers, --storage, "
                          "--retry-failed): a multi-node run is started by the cluster on every node at once "
                          "(Lightning's NODE_RANK/MASTER_ADDR), while a worker claims cells for itself. Use "
                          "--devices N for several GPUs of one machine per run.")
    url = options.storage or default_storage(grid)
    study = open_study(grid, open_storage(url))
    queued = queue_cells(study, grid, options.retry_failed)
    ctx.console.print(f"storage {url}: study {grid.name!r}, {queued} cells queued", highlight=False)
    workers, gpus = options.workers or 1, [None] * (options.workers or 1)
    if ctx.device.type == "cuda":
        env = os.environ.get("CUDA_VISIBLE_DEVICES")
        visible = env.split(",") if env else [str(i) for i in range(torch.cuda.device_count())]
        workers = options.workers or max(len(visible) // grid.train.devices, 1) * options.workers_per_gpu
        gpus = list(gpu_assignment(workers, options.workers_per_gpu, grid.train.devices, visible))
    if workers <= 1:
        Worker(grid, ctx, url).run()
    else:
        _load_builtin()
        modules = sorted({_REGISTRY[s].__module__ for s in grid.eval.scorers if s in _REGISTRY})
        spawn = mp.get_context("forkserver")  # workers fork from a server that imported ablate once: fast starts
        spawn.set_forkserver_preload(["ablate.workers", *modules])
        threads = max(1, (os.cpu_count() or 1) // workers)
        args = lambda i: (grid, ctx.device.type, ctx.cache_dir, ctx.weights_dir, url, f"w{i}", gpus[i],  # noqa: E731
                          modules, threads)
        procs = {i: spawn.Process(target=_worker_process, args=args(i), name=f"ablate-w{i}") for i in range(workers)}
        restarts: Counter[int] = Counter()
        errors = []
        for p in procs.values():
            p.start()
        while procs:
            for i, p in list(procs.items()):
                p.join(timeout=0.5)
                if p.exitcode is None:
                    continue
                del procs[i]
                if p.exitcode < 0 and restarts[i] < MAX_STALE_RETRIES:  # killed by a signal: replace it
                    restarts[i] += 1
                    ctx.console.print(f"[yellow]worker w{i} died (signal {-p.exitcode}); starting a replacement[/]")
                    procs[i] = spawn.Process(target=_worker_process, args=args(i), name=f"ablate-w{i}")
                    procs[i].start()
                elif p.exitcode != 0:
                    errors.append(f"w{i} (exit code {p.exitcode})")
        if errors:
            raise AblateError(f"Workers {', '.join(errors)} stopped on an error (printed above); the cells they did "
                              f"not finish stay in the storage {url}: see `python -m ablate status {grid.name} "
                              f"--storage {url}`, and run the same command again once the cause is fixed.")
    counts = Counter(state for state, *_ in cell_states(study, grid).values())
    ctx.console.print("grid " + grid.name + ": " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
                      highlight=False)
    return counts


def cell_states(study: optuna.Study | None, grid: Grid) -> dict[str, tuple[str, FrozenTrial | None, int]]:
    """(state, latest trial, attempts) per cell id, the grid's cells first, then other cells of the study.
    States: pending (not queued, waiting, or re-queued after a lost worker), running, done, failed."""
    by_cell = trials_by_cell(study) if study is not None else {}
    out = {}
    for cell_id in {**{c.id: None for c in grid.cells()}, **by_cell}:
        trials = by_cell.get(cell_id, [])
        last = trials[-1] if trials else None
        out[cell_id] = (STATE_NAMES[last.state if last else None], last, len(trials))
    return out
