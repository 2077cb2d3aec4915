"""A grid always finishes (issue 10): a worker killed at any moment has its cell reclaimed and done once,
a failing cell is marked failed with its step and reason while the others complete (plain runs too),
two plain runs on one results directory share the cells, signals stop every worker and are named, and
the console stays free of third-party noise. Checkpoints: test_checkpointing.py."""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import signal
import subprocess
import time

import optuna
import pytest
import torch
import workers_kit
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.runs.queue import queue_cells, reclaim_stale, trials_by_cell
from ablate.runs.storage import default_storage, open_storage
from ablate.results import cell_dir
from ablate.engine.runner import RunContext
from ablate.errors import ResultsError
from ablate.runs.workers import WorkerOptions, run_grid


@functools.cache
def _storage(url: str) -> RDBStorage:
    """One storage per database in this process: the tests poll it every 0.2 s, and opening one (engine,
    schema check) costs ~40 ms of CPU, taken from the runs under test."""
    return open_storage(url, heartbeat=False)


def _study(url: str, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_storage(url))


def _start(root, *args: str, **env: str) -> tuple[subprocess.Popen, object]:
    log = open(root / f"run-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen(workers_kit.cli_command("run", *args, "--no-leaderboard"), env=workers_kit.worker_env(**env),
                            stdout=log, stderr=subprocess.STDOUT, cwd=root)
    return proc, log


def _confirmed_running(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        trials = _study(url).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    except KeyError:  # the study does not exist yet
        return []
    return [t for t in trials if (t.user_attrs.get("where") or {}).get("trial") == t.number]


def _assert_every_cell_done_once(root, url: str, log: str, variants=workers_kit.VARIANTS) -> dict:
    by_cell = trials_by_cell(_study(url))
    assert len(by_cell) == len(variants)
    for cell_id, trials in by_cell.items():
        assert [t.state for t in trials].count(TrialState.COMPLETE) == 1, (cell_id, log[-3000:])
    done = re.findall(r"(\[\d+/\d+\]) [^\n]*: done in", log)
    assert len(done) == len(variants) == len(set(done)), log[-3000:]  # every cell evaluated exactly once
    for variant in variants:
        directory = cell_dir(root / "results", "tiny", "fashion-mnist", variant, 0)
        assert (directory / "done.json").exists()
        assert len(list((directory / "records").glob("*.json"))) == 1
    assert not list((root / "results").rglob("*.tmp"))  # nothing half-written left behind
    return by_cell


@pytest.mark.parametrize("point", ["claim", "write:*/records/*.json"])
def test_worker_killed_before_first_heartbeat_or_while_writing_a_record(tmp_path, point):
    """SIGKILL of a worker paused right after claiming a cell (its trial RUNNING, no heartbeat yet), or with
    a record written under its temp name but not renamed: the cell is reclaimed and done exactly once."""
    grid_file = workers_kit.write_grid(tmp_path, max_steps=16)
    url = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    marker = tmp_path / "paused"
    proc, log = _start(tmp_path, str(grid_file), "--results", str(tmp_path / "results"), "--storage", url,
                       "--workers", "2", ABLATE_TEST_PAUSE_AT=point, ABLATE_TEST_PAUSE_FILE=str(marker))
    with log:
        pid = workers_kit.pid_paused_at(marker, proc)
        if point.startswith("write"):
            assert list((tmp_path / "results").rglob("records/.*.json.*.tmp"))  # killed mid-write
        os.kill(pid, signal.SIGKILL)
        code = proc.wait(timeout=240)
    text = open(log.name).read()
    assert code == 0, text[-3000:]
    assert re.search(r"worker w\d died \(signal 9\); starting a replacement", text)
    by_cell = _assert_every_cell_done_once(tmp_path, url, text)
    (killed,) = [trials for trials in by_cell.values() if len(trials) > 1]
    lost, retry = killed
    assert lost.state == TrialState.FAIL and retry.system_attrs["failed_trial"] == lost.number
    where = lost.user_attrs.get("where") or {}
    if point == "claim":
        assert where.get("trial") != lost.number  # never confirmed: reclaimed by the claim's age
    else:
        assert where["pid"] == pid and where["trial"] == lost.number


def test_plain_run_marks_a_diverging_cell_failed_and_the_console_stays_clean(tmp_path):
    grid_file = workers_kit.write_grid(tmp_path, max_steps=16)
    proc = subprocess.run(workers_kit.cli_command("run", str(grid_file), "--results", str(tmp_path / "results"),
                                                  "--no-leaderboard"),
                          env=workers_kit.worker_env(ABLATE_TEST_NAN_VARIANT="eps/linear"), capture_output=True,
                          text=True, cwd=tmp_path, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for noise in ("Traceback", "litlogger", "LeafSpec", "GPU available", "Trial 1 failed", "Warning"):
        assert noise not in out, out
    assert re.search(r"grid tiny: 2 done, 1 failed\nfailed cells .*\n +fashion-mnist · eps/linear · seed 0 at step 3: "
                     r"FloatingPointError: training loss is not finite \(nan or inf\) at step 3\n", out), out
    failed_dir = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", "eps/linear", 0)
    cell_log = (failed_dir / "logs" / "output.log").read_text()
    assert "Traceback" in cell_log and "FloatingPointError" in cell_log and "litlogger" in cell_log
    assert not (failed_dir / "done.json").exists()
    from ablate.commands.status import status_table

    _, counts = status_table(str(grid_file), None, GridOverrides(results=tmp_path / "results"))
    assert counts == {"pending": 0, "running": 0, "done": 2, "failed": 1}


def test_plain_run_marks_a_crashed_cell_failed_and_retry_resumes_its_evaluation(tmp_path, monkeypatch):
    """A full disk while writing a record fails that cell (step and reason kept, the grid goes on), and the run then
    stops with "disk full at" rather than ending as a success (issue 27); --retry-failed then evaluates it without
    training it again. Checkpoints go through the atomic writer."""
    import ablate.engine.checkpointing
    from ablate.results import ResultsStore

    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    grid = load_grid(workers_kit.write_grid(tmp_path, max_steps=12), GridOverrides(results=tmp_path / "results"))
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    real_write, atomic, written = ResultsStore.write_record, ablate.engine.checkpointing.atomic_file, []

    def full_disk(store, record):  # type: ignore[no-untyped-def]
        if record["variant"] == "eps/linear":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(store, record)

    monkeypatch.setattr(ResultsStore, "write_record", full_disk)
    monkeypatch.setattr(ablate.engine.checkpointing, "atomic_file", lambda path: written.append(path.name) or atomic(path))
    with pytest.raises(ResultsError, match="1 cell.* could not be written: disk full at .*--retry-failed"):
        run_grid(grid, ctx)
    assert ResultsStore(tmp_path / "results").frame("tiny")["variant"].nunique() == 2  # the others went on
    assert {"best.ckpt", "last.ckpt"} <= set(written)
    url = default_storage(grid)
    (trial,) = trials_by_cell(_study(url))["fashion-mnist--eps+linear--seed0"]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_step"] == 12
    assert trial.user_attrs["fail_reason"].startswith("disk full at ")
    assert trial.user_attrs["fail_reason"].endswith("(during evaluation)")
    summary = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", "eps/linear", 0) / "train.json"
    trained_at = summary.stat().st_mtime_ns
    monkeypatch.setattr(ResultsStore, "write_record", real_write)
    with pytest.raises(ResultsError, match="--retry-failed"):  # a failed cell stays failed (and said unwritten) ...
        run_grid(grid, ctx)
    assert run_grid(grid, ctx, WorkerOptions(retry_failed=True)) == {"done": 3}  # ... until --retry-failed
    assert summary.stat().st_mtime_ns == trained_at  # evaluated, not trained again


def test_two_plain_runs_on_one_results_directory_run_each_cell_once(tmp_path):
    grid_file = workers_kit.write_grid(tmp_path, max_steps=16)
    runs = [_start(tmp_path, str(grid_file), "--results", str(tmp_path / "results"), ABLATE_TEST_STEP_SLEEP="0.05")
            for _ in range(2)]
    codes = [proc.wait(timeout=240) for proc, _ in runs]
    texts = []
    for _, log in runs:
        log.close()
        texts.append(open(log.name).read())
    assert codes == [0, 0], [t[-2000:] for t in texts]
    both = "\n".join(texts)
    started = re.findall(r"(\[\d+/\d+\]) fashion-mnist[^\n:]*\n", both)
    assert len(started) == 3 == len(set(started)), both  # no cell started twice
    grid = load_grid(grid_file, GridOverrides(results=tmp_path / "results"))
    _assert_every_cell_done_once(tmp_path, default_storage(grid), both)
    for variant in workers_kit.VARIANTS:
        summary = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", variant, 0) / "train.json"
        assert json.loads(summary.read_text())["resumed_from_step"] == 0  # trained once, from the start


def test_plain_run_killed_mid_training_is_resumed_at_once_by_the_next_run(tmp_path):
    """SIGKILL of a plain run: the next run sees that the cell's worker (on this machine) is gone and
    resumes the cell from its checkpoint at once, without waiting out the grace period."""
    grid_file = workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=40)
    grid = load_grid(grid_file, GridOverrides(results=tmp_path / "results"))
    last = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", "rf", 0) / "checkpoints" / "last.ckpt"
    slow = {"ABLATE_TEST_STEP_SLEEP": "0.1", "ABLATE_GRACE_PERIOD": "3600"}
    proc, log = _start(tmp_path, str(grid_file), "--results", str(tmp_path / "results"), **slow)
    with log:
        deadline = time.monotonic() + 120
        while not last.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    assert last.exists(), open(log.name).read()[-3000:]
    rerun = subprocess.run(workers_kit.cli_command("run", str(grid_file), "--results", str(tmp_path / "results"),
                                                   "--no-leaderboard"), env=workers_kit.worker_env(**slow),
                           capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert rerun.returncode == 0 and "grid tiny: 1 done" in rerun.stdout, rerun.stdout + rerun.stderr
    assert "waiting for" not in rerun.stdout
    summary = json.loads((last.parent.parent / "train.json").read_text())
    assert summary["resumed_from_step"] > 0
    lost, done = trials_by_cell(_study(default_storage(grid)))["fashion-mnist--rf--seed0"]
    assert lost.state == TrialState.FAIL and done.state == TrialState.COMPLETE


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_the_main_process_stops_every_worker(tmp_path, signum):
    grid_file = workers_kit.write_grid(tmp_path, max_steps=400)
    url = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    proc, log = _start(tmp_path, str(grid_file), "--results", str(tmp_path / "results"), "--storage", url,
                       "--workers", "2", ABLATE_TEST_STEP_SLEEP="0.1")
    with log:
        deadline = time.monotonic() + 120
        while len(running := _confirmed_running(url)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(running) == 2, open(log.name).read()[-3000:]
        below = workers_kit.descendants(proc.pid)
        worker_pids = {t.user_attrs["where"]["pid"] for t in running}
        assert worker_pids <= below
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    text = open(log.name).read()
    assert code == 128 + signum, text[-3000:]
    name = "SIGINT (Ctrl-C)" if signum == signal.SIGINT else "SIGTERM"
    assert f"interrupted: stopped by {name}" in text and "stopped 2 workers" in text and "Traceback" not in text
    assert not [pid for pid in worker_pids if workers_kit.alive(pid)]  # the main process waited for them
    deadline = time.monotonic() + 15
    while [pid for pid in below if workers_kit.alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in below if workers_kit.alive(pid)]  # no process of the run survives
    stopped = [t for t in _study(url).get_trials(deepcopy=False) if t.number in {r.number for r in running}]
    if "did not stop within" not in text:  # (the main process may have had to SIGKILL a worker stuck in C code)
        assert [(t.state, t.user_attrs.get("interrupted"), t.user_attrs.get("fail_reason")) for t in stopped] == [
            (TrialState.FAIL, True, "stopped by SIGTERM; the next run resumes it")] * 2  # workers got SIGTERM
    study = _study(url)
    reclaim_stale(study)  # what the next run does first
    assert queue_cells(study, load_grid(grid_file, GridOverrides(results=tmp_path / "results"))) == 2  # resumed


@pytest.mark.parametrize("phase", ["training", "evaluation"])
def test_sigterm_to_a_plain_run_is_reported_as_sigterm(tmp_path, phase):
    grid_file = workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=400 if phase == "training" else 8)
    grid = load_grid(grid_file, GridOverrides(results=tmp_path / "results"))
    url, marker = default_storage(grid), tmp_path / "paused"
    pause = {"ABLATE_TEST_STEP_SLEEP": "0.1"} if phase == "training" else {
        "ABLATE_TEST_PAUSE_AT": "write:*/records/*.json", "ABLATE_TEST_PAUSE_FILE": str(marker)}
    proc, log = _start(tmp_path, str(grid_file), "--results", str(tmp_path / "results"), **pause)
    with log:
        if phase == "training":
            deadline = time.monotonic() + 120
            while not any(t.user_attrs.get("step") for t in _confirmed_running(url)) and time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            assert workers_kit.pid_paused_at(marker, proc) == proc.pid
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    text = open(log.name).read()
    assert code == 143 and "interrupted: stopped by SIGTERM." in text and "Traceback" not in text, text[-3000:]
    (trial,) = trials_by_cell(_study(url))["fashion-mnist--rf--seed0"]
    assert trial.state == TrialState.FAIL and trial.user_attrs["interrupted"] is True
    assert trial.user_attrs["fail_reason"] == "stopped by SIGTERM; the next run resumes it"
    assert queue_cells(_study(url), grid) == 1  # the next run re-queues it


def test_verbose_run_shows_third_party_output(tmp_path, capsys):
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=["rf"], max_steps=4),
                     GridOverrides(results=tmp_path / "results"))
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    assert run_grid(grid, ctx, WorkerOptions(verbose=True)) == {"done": 1}
    err = capsys.readouterr().err
    assert "GPU available" in err and "litlogger" in err  # what a plain run keeps in logs/output.log
    cell_log = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", "rf", 0) / "logs" / "output.log"
    assert "GPU available" in cell_log.read_text()


# ---------------------------------------------------------------------------------------------------------------
# Issue 27: the store heals (damaged or missing records, cells and training files), the queue is rebuilt from it.

TWO_SETTINGS = "[{steps: 4, cfg: 2.0}, {steps: 2, cfg: 1.0}]"
HEAL_VARIANTS = ["rf", "eps/linear"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-cell, 2-setting grid (one validation, at the last step: best.ckpt and last.ckpt hold the
    same state); each test copies it. Returns (root, {relative path: bytes} of every record and summary)."""
    root = tmp_path_factory.mktemp("finished")
    grid = load_grid(workers_kit.write_grid(root, variants=HEAL_VARIANTS, max_steps=5, settings=TWO_SETTINGS),
                     GridOverrides(results=root / "results"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in worker processes; the tests re-evaluate with it too (bit-identical sums)
    assert run_grid(grid, _quiet_ctx()) == {"done": 2}
    files = {str(p.relative_to(root)): p.read_bytes() for p in (root / "results").rglob("*")
             if p.suffix == ".json" or p.suffix == ".ckpt"}
    yield root, files
    torch.set_num_threads(threads)


def _quiet_ctx(console: Console | None = None) -> RunContext:
    return RunContext(device=torch.device("cpu"), console=console or Console(quiet=True), progress=False)


def _copy(finished, tmp_path):  # type: ignore[no-untyped-def]
    import shutil

    root, files = finished
    shutil.copytree(root / "results", tmp_path / "results")
    grid = load_grid(workers_kit.write_grid(tmp_path, variants=HEAL_VARIANTS, max_steps=5, settings=TWO_SETTINGS),
                     GridOverrides(results=tmp_path / "results"))
    return grid, files


def _cell(tmp_path, variant="rf"):  # type: ignore[no-untyped-def]
    return cell_dir(tmp_path / "results", "tiny", "fashion-mnist", variant, 0)


def _metrics(path) -> dict:  # type: ignore[no-untyped-def]
    return json.loads(path.read_text())["metrics"]


def _unchanged_except(tmp_path, files: dict, changed: set[str]) -> None:
    """Every record, summary and checkpoint of the finished grid is byte-identical, except ``changed``."""
    for rel, data in files.items():
        if rel not in changed and not rel.endswith(("done.json", "train-runs.json")):
            assert (tmp_path / rel).read_bytes() == data, rel


def _run_and_log(grid, tmp_path, **options) -> tuple:  # type: ignore[no-untyped-def]
    import io

    out = io.StringIO()
    counts = run_grid(grid, _quiet_ctx(Console(file=out, width=400, soft_wrap=True)), WorkerOptions(**options))
    return counts, out.getvalue()


RECORD = "results/tiny/fashion-mnist/rf/seed0/records/2steps-cfg1.0-own-ema.json"
OTHER = "results/tiny/fashion-mnist/rf/seed0/records/4steps-cfg2.0-own-ema.json"


@pytest.mark.parametrize("damage", ["truncated", "binary", "a JSON list", "wrong identity", "string metrics"])
def test_a_damaged_record_is_re_evaluated_without_retraining(finished, tmp_path, damage):
    """`run` on a finished grid with one damaged record: the queue says done, the store does not; that one
    setting is evaluated again from the checkpoint (same numbers), nothing else is touched."""
    grid, files = _copy(finished, tmp_path)
    path = tmp_path / RECORD
    original = json.loads(files[RECORD])
    path.write_bytes({"truncated": files[RECORD][:50], "binary": bytes(range(256)) * 4,
                      "a JSON list": b"[1, 2]", "wrong identity": files[OTHER],
                      "string metrics": json.dumps({**original, "metrics": {"moment_fd": "0.5"}}).encode()}[damage])
    counts, out = _run_and_log(grid, tmp_path)
    assert counts == {"done": 2}, out
    assert "1 cells queued" in out and "records to evaluate again" in out and RECORD.split("/")[-1] in out, out
    assert _metrics(path) == original["metrics"]
    _unchanged_except(tmp_path, files, {RECORD})  # not trained again, no other record rewritten
    assert not list((tmp_path / "results").rglob("*.tmp"))


@pytest.mark.parametrize("loss", ["records/ deleted, done.json kept", "the cell folder deleted"])
def test_a_lost_cell_is_queued_again(finished, tmp_path, loss):
    """Today: "0 cells queued, 2 done" and the variant silently gone. Now the cell runs again: its records
    are evaluated from the checkpoint, or (the folder gone) the cell is trained again, to the same numbers."""
    import shutil

    grid, files = _copy(finished, tmp_path)
    shutil.rmtree(_cell(tmp_path, "eps/linear") / ("records" if loss.startswith("records") else ""))
    counts, out = _run_and_log(grid, tmp_path)
    assert counts == {"done": 2} and "1 cells queued" in out, out
    assert "eps/linear · seed 0 is done in the queue, but 2 of its 2 records" in out
    lost = {rel for rel in files if "/eps__linear/" in rel}
    for rel in lost:
        if "/records/" in rel:
            assert _metrics(tmp_path / rel) == json.loads(files[rel])["metrics"], rel
    _unchanged_except(tmp_path, files, lost if loss.startswith("the cell") else {r for r in lost if "/records/" in r})
    assert run_grid(grid, _quiet_ctx()) == {"done": 2}  # healed: nothing more to do
    assert trials_by_cell(_study(default_storage(grid)))["fashion-mnist--eps+linear--seed0"][-1].user_attrs["heals"] == 1


@pytest.mark.parametrize("damage", ["best.ckpt truncated", "best.ckpt and last.ckpt truncated", "train.json truncated",
                                    "train-runs.json truncated, train.json gone", "last.ckpt truncated, train.json gone"])
def test_damaged_training_state_resumes_from_an_intact_checkpoint_or_starts_over(finished, tmp_path, damage):
    """A damaged training file of a cell that still has a record to evaluate: today a torch-internal error or
    a JSONDecodeError naming no file, and --retry-failed fails the same for ever. Now the cell goes on from the
    intact checkpoint (or starts over), says which on the console and in its log, and ends with the numbers
    of an undamaged run."""
    grid, files = _copy(finished, tmp_path)
    cell = _cell(tmp_path)
    (tmp_path / RECORD).unlink()
    for name in damage.split(", ")[0].replace(" truncated", "").split(" and "):
        target = cell / ("checkpoints" if name.endswith(".ckpt") else "") / name
        data = target.read_bytes()
        target.write_bytes(data[:min(300, len(data) // 2)])
    if "train.json gone" in damage:
        (cell / "train.json").unlink()
    (cell / "done.json").unlink()  # the cell as a worker finds it that resumes (or retries) it after a crash
    import io

    from ablate.engine.runner import run_cell
    from ablate.runs import logs

    out = io.StringIO()
    logs.route_output(tmp_path / "run.log")
    with logs.to_file(cell / logs.CELL_LOG):
        assert run_cell(grid, grid.cells()[0], _quiet_ctx(Console(file=out, width=400, soft_wrap=True))) == "done"
    out = out.getvalue()
    said = {"best.ckpt truncated": "restored from last.ckpt, written at the same step (5",
            "best.ckpt and last.ckpt truncated": "the cell starts over from step 0",
            "train.json truncated": "train.json is damaged",
            "train-runs.json truncated, train.json gone": "train-runs.json is damaged",
            "last.ckpt truncated, train.json gone": "last.ckpt is damaged"}[damage]
    assert said in out, out
    assert said in (cell / "logs" / "output.log").read_text()
    assert _metrics(tmp_path / RECORD) == json.loads(files[RECORD])["metrics"]  # as if nothing had happened
    assert (tmp_path / OTHER).read_bytes() == files[OTHER]  # the whole record is kept
    summary = json.loads((cell / "train.json").read_text())
    assert summary["val_loss"] == json.loads(files["results/tiny/fashion-mnist/rf/seed0/train.json"])["val_loss"]
    assert summary["resumed_from_step"] == (0 if "starts over" in said else 5 if "train" in damage or "last" in damage
                                            else json.loads(files["results/tiny/fashion-mnist/rf/seed0/train.json"])[
                                                "resumed_from_step"])
    assert torch.load(cell / "checkpoints" / "best.ckpt", weights_only=False)["global_step"] == 5


@pytest.mark.parametrize("damage", ["random bytes", "truncated"])
def test_a_damaged_queue_file_is_named_and_rebuilt_from_the_records(finished, tmp_path, damage):
    from ablate.errors import ResultsError

    grid, files = _copy(finished, tmp_path)
    queue = tmp_path / "results" / "tiny" / "optuna.sqlite3"
    data = queue.read_bytes()
    queue.write_bytes(bytes(range(256)) * 16 if damage == "random bytes" else data[:len(data) // 2])
    damaged = queue.read_bytes()
    (tmp_path / RECORD).unlink()  # one record to do after the rebuild
    with pytest.raises(ResultsError) as err:
        run_grid(grid, _quiet_ctx())
    message = str(err.value)
    assert f"The queue file {queue} is damaged" in message and "records, checkpoints" in message, message
    assert f"python -m ablate run {tmp_path / 'tiny.yaml'} --results {tmp_path / 'results'} --rebuild-queue" in message
    for hint in ("SQL", "database server", "psycopg", "\n"):
        assert hint not in message
    assert queue.read_bytes() == damaged  # left as it was
    counts, out = _run_and_log(grid, tmp_path, rebuild_queue=True)
    assert counts == {"done": 2}, out
    assert "1 of 2 cells done (every record whole)" in out and "1 cells queued" in out, out
    (aside,) = queue.parent.glob("optuna.sqlite3.damaged-*")
    assert aside.read_bytes() == damaged
    _unchanged_except(tmp_path, files, {RECORD})  # nothing trained again
    assert _metrics(tmp_path / RECORD) == json.loads(files[RECORD])["metrics"]
