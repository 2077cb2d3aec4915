"""Workers sharing a grid through an Optuna storage (issue 6): exactly-once cells, a SIGKILLed worker
replaced and its cell resumed from its checkpoint with the metrics and training summary of an
uninterrupted run, a diverging cell failed (and re-queued by --retry-failed), and the status table.
More failure cases (issue 10) are in test_failures.py."""

from __future__ import annotations

import dataclasses
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
from optuna.trial import TrialState
from rich.console import Console

from ablate.config.grid import GridOverrides, load_grid
from ablate.results import cell_dir
from ablate.engine.runner import RunContext, run_cell
from ablate.runs.queue import queue_cells, trials_by_cell
from ablate.runs.storage import open_storage, open_study
from ablate.runs.workers import WorkerOptions, run_grid

VICTIM = workers_kit.VARIANTS[0]


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))


@pytest.fixture
def one_thread():
    """Torch in this process as in the worker processes: one thread (bit-identical sums, no oversubscription)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """``run --workers 2`` on a 3-cell grid; the worker training VICTIM is SIGKILLed once that cell has a
    checkpoint. Returns (root, url, log text, killed pid, exit code)."""
    root = tmp_path_factory.mktemp("shared")
    grid_file = workers_kit.write_grid(root, max_steps=20)  # not a multiple of val_every (8)
    url = f"sqlite:///{root / 'optuna.sqlite3'}"
    victim_ckpt = cell_dir(root / "results", "tiny", "fashion-mnist", VICTIM, 0) / "checkpoints" / "last.ckpt"
    log_path = root / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(workers_kit.cli_command("run", str(grid_file), "--results", str(root / "results"),
                                                        "--storage", url, "--workers", "2", "--no-leaderboard"),
                                env=workers_kit.worker_env(ABLATE_TEST_STEP_SLEEP="0.1"), stdout=log,
                                stderr=subprocess.STDOUT, cwd=root)
        killed, victim, deadline = None, None, time.monotonic() + 150
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            if victim is None and victim_ckpt.parent.parent.exists():  # its worker's pid, known from the claim,
                # before the checkpoint: loading the study after it took more than the cell's last 12 steps on a
                # loaded machine (CI, 2026-12-07), and the kill then landed after training
                running = [t for t in trials_by_cell(_study(url, "tiny")).get(f"fashion-mnist--{VICTIM}--seed0", [])
                           if t.state == TrialState.RUNNING and "where" in t.user_attrs]
                victim = running[0].user_attrs["where"]["pid"] if running else None
            elif victim_ckpt.exists():
                killed = victim
                os.kill(killed, signal.SIGKILL)
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    return root, url, log_path.read_text(), killed, code


def test_two_workers_complete_grid_once(shared_run):
    root, url, log, killed, code = shared_run
    assert code == 0, log[-3000:]
    assert killed is not None, "the victim cell finished before it could be killed"
    by_cell = trials_by_cell(_study(url, "tiny"))
    assert len(by_cell) == 3
    for cell_id, trials in by_cell.items():
        assert [t.state for t in trials].count(TrialState.COMPLETE) == 1, cell_id
    pids = {t.user_attrs["where"]["pid"] for ts in by_cell.values() for t in ts if "where" in t.user_attrs}
    assert len(pids) >= 2  # the grid was shared by separate worker processes
    done_lines = re.findall(r"\] (\[\d+/\d+\]) [^\n]*: done in", log)
    assert len(done_lines) == 3 == len(set(done_lines)), log[-3000:]  # every cell evaluated exactly once
    for variant in workers_kit.VARIANTS:
        directory = cell_dir(root / "results", "tiny", "fashion-mnist", variant, 0)
        assert (directory / "done.json").exists()
        assert len(list((directory / "records").glob("*.json"))) == 1
        assert not list(directory.rglob("*.tmp"))  # nothing half-written
        if variant != VICTIM:
            assert json.loads((directory / "train.json").read_text())["resumed_from_step"] == 0


def test_killed_worker_resumes_from_checkpoint(shared_run, tmp_path, one_thread):
    root, url, log, killed, code = shared_run
    assert code == 0 and killed is not None, log[-3000:]
    assert "worker w0 died (signal 9)" in log or "worker w1 died (signal 9)" in log  # and was replaced
    trials = trials_by_cell(_study(url, "tiny"))[f"fashion-mnist--{VICTIM}--seed0"]
    lost = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.user_attrs["where"]["pid"] for t in lost] == [killed]  # failed by heartbeat, then retried
    assert trials[-1].state == TrialState.COMPLETE and trials[-1].system_attrs["failed_trial"] == lost[0].number
    directory = cell_dir(root / "results", "tiny", "fashion-mnist", VICTIM, 0)
    resumed = json.loads((directory / "train.json").read_text())
    assert resumed["resumed_from_step"] > 0
    # the same cell, uninterrupted, in this process
    grid = load_grid(root / "tiny.yaml", GridOverrides(results=tmp_path))
    cell = next(c for c in grid.cells() if c.variant == VICTIM)
    run_cell(grid, cell, RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False))
    reference = cell_dir(tmp_path, "tiny", "fashion-mnist", VICTIM, 0)
    (mine,), (ref,) = ([json.loads(p.read_text()) for p in (d / "records").glob("*.json")] for d in (directory, reference))
    assert mine["metrics"] == ref["metrics"]
    volatile = ("wall_s", "total_wall_s", "gpu_hours", "resumed_from_step", "train_img_per_s")  # may differ
    uninterrupted = json.loads((reference / "train.json").read_text())
    assert {k: v for k, v in resumed.items() if k not in volatile} == {
        k: v for k, v in uninterrupted.items() if k not in volatile}  # the same provenance, validation included
    assert resumed["final_val"] and resumed["max_steps"] == 20
    assert resumed["runs"] == 1  # a SIGKILLed run leaves no entry in train-runs.json: its time is not counted
    a, b = (torch.load(d / "checkpoints" / "best.ckpt", weights_only=False)["state_dict"] for d in (directory, reference))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical weights, EMA included
    assert not any(k.startswith("record:") for k in trials[-1].user_attrs)  # records live in the results store only


def test_diverging_cell_fails_then_retry(tmp_path, monkeypatch, one_thread):
    for key, value in workers_kit.worker_env().items():
        if key.startswith("ABLATE_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("ABLATE_TEST_NAN_VARIANT", "eps/linear")
    grid = load_grid(workers_kit.write_grid(tmp_path, "nan", ["rf", "eps/linear"], max_steps=16),
                     GridOverrides(results=tmp_path / "results"))
    url = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    assert run_grid(grid, ctx, WorkerOptions(storage=url)) == {"done": 1, "failed": 1}
    failed = trials_by_cell(_study(url, "nan"))["fashion-mnist--eps+linear--seed0"]
    assert [t.state for t in failed] == [TrialState.FAIL]
    assert failed[0].user_attrs["fail_step"] == 3
    assert "FloatingPointError" in failed[0].user_attrs["fail_reason"] and "nan" in failed[0].user_attrs["fail_reason"]
    assert run_grid(grid, ctx, WorkerOptions(storage=url)) == {"done": 1, "failed": 1}  # stays failed
    monkeypatch.delenv("ABLATE_TEST_NAN_VARIANT")
    assert run_grid(grid, ctx, WorkerOptions(storage=url, retry_failed=True)) == {"done": 2}
    states = [t.state for t in trials_by_cell(_study(url, "nan"))["fashion-mnist--eps+linear--seed0"]]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]
    from ablate.results import ResultsStore

    assert sorted(ResultsStore(tmp_path / "results").frame("nan")["variant"]) == ["eps/linear", "rf"]


def test_status_table_shows_every_state(tmp_path):
    from ablate.commands.status import status_table

    variants = ["rf", "eps/linear", "v/cos", "edm/rf"]
    queued = load_grid(workers_kit.write_grid(tmp_path, "st", variants), GridOverrides(results=tmp_path))
    url = f"sqlite:///{tmp_path / 'st.sqlite3'}"
    study = open_study(queued, open_storage(url, heartbeat=False))
    assert queue_cells(study, queued) == 4 and queue_cells(study, queued) == 0
    where = {"host": "node7", "pid": 4242, "worker": "w3", "device": "cpu"}
    running, done, failed = study.ask(), study.ask(), study.ask()  # rf, eps/linear, v/cos; edm/rf waits
    running.set_user_attr("where", where)
    running.set_user_attr("step", 17)
    done.set_user_attr("where", where)
    study.tell(done, 0.125)
    failed.set_user_attr("fail_reason", "FloatingPointError: training loss is nan at step 3")
    failed.set_user_attr("fail_step", 3)
    study.tell(failed, state=TrialState.FAIL)
    grid_file = workers_kit.write_grid(tmp_path, "st", variants + ["rf/cosmap"])  # one cell never queued
    from ablate.results import ResultsStore, new_record

    settings = queued.eval.all_settings()
    done_cell = next(c for c in queued.cells() if c.variant == "eps/linear")
    ResultsStore(queued.results_root).write_record(new_record(done_cell, settings[0], {"fd_probe": 1.0}))
    table, counts = status_table(str(grid_file), url, GridOverrides(results=tmp_path))
    assert counts == {"pending": 2, "running": 1, "done": 1, "failed": 1}
    console = Console(width=250, record=True, file=open(os.devnull, "w"))
    console.print(table)
    rows = {line.split("│")[2].strip(): line for line in console.export_text().splitlines() if line.count("│") > 5}
    assert re.search(r"running .* node7:4242 \(cpu\) .* \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ .* 17/24", rows["rf"])
    assert re.search(rf"done .* 1/{len(settings)} .* val loss 0\.1250", rows["eps/linear"])
    assert f"0/{len(settings)}" in rows["rf"]
    assert re.search(r"failed .* 3/24 .* FloatingPointError: training loss is nan at step 3", rows["v/cos"])
    assert "pending" in rows["edm/rf"] and "not queued" not in rows["edm/rf"]
    assert re.search(r"pending .* not queued yet", rows["rf/cosmap"])


def test_joining_with_another_config_is_refused(tmp_path):
    from ablate.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'cfg.sqlite3'}"
    grid = load_grid(workers_kit.write_grid(tmp_path, "cfg"), GridOverrides(results=tmp_path))
    open_study(grid, open_storage(url, heartbeat=False))
    other = load_grid(workers_kit.write_grid(tmp_path, "cfg", max_steps=99), GridOverrides(results=tmp_path))
    with pytest.raises(ConfigError, match=r"train\.max_steps \(24 in the storage, 99 here\)"):
        open_study(other, open_storage(url, heartbeat=False))
    subset = load_grid(workers_kit.write_grid(tmp_path, "cfg", ["rf"]), GridOverrides(results=tmp_path))
    open_study(subset, open_storage(url, heartbeat=False))  # other cells, same config: joins


def test_a_study_stored_before_an_option_existed_is_joined_at_its_default(tmp_path):
    from ablate.errors import ConfigError

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    grid = load_grid(workers_kit.write_grid(tmp_path, "old"), GridOverrides(results=tmp_path))
    study = open_study(grid, open_storage(url, heartbeat=False))
    config = study.user_attrs["config"]
    del config["train"]["lr_by_variant"]  # as stored by a version without the option
    study.set_user_attr("config", config)
    open_study(grid, open_storage(url, heartbeat=False))  # the option at its default: the same study
    tuned = dataclasses.replace(grid, train=dataclasses.replace(grid.train, lr_by_variant={"rf": 1e-3}))
    with pytest.raises(ConfigError, match=r"train\.lr_by_variant\.rf \(None in the storage, 0\.001 here\)"):
        open_study(tuned, open_storage(url, heartbeat=False))


def test_gpu_assignment_spreads_workers_over_gpu_groups():
    from ablate.runs.workers import gpu_assignment

    assert gpu_assignment(4, 1, ["0", "1"]) == ["0", "1", "0", "1"]
    assert gpu_assignment(3, 1, ["0", "1"]) == ["0", "1", "0"]  # fewer workers than slots: still both GPUs
    assert gpu_assignment(3, 2, ["0", "1", "2", "3"]) == ["0,1", "2,3", "0,1"]
    assert gpu_assignment(2, 4, ["5", "7"]) == ["5,7", "5,7"]  # fewer GPUs than devices: share what there is


def test_no_more_workers_than_unfinished_cells(tmp_path, monkeypatch):
    """--workers 8 on a grid with 3 cells left starts 3 workers: the others would only start and wait."""
    from ablate.runs import workers

    grid = load_grid(workers_kit.write_grid(tmp_path, "few", ["rf", "eps/linear", "v/cos"], max_steps=4),
                     GridOverrides(results=tmp_path / "results"))
    started = []
    monkeypatch.setattr(workers, "_supervise", lambda grid, ctx, url, options, gpus, pack: started.append(len(gpus)))
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    assert run_grid(grid, ctx, WorkerOptions(storage=f"sqlite:///{tmp_path / 'q.db'}", workers=8)) == {"pending": 3}
    assert started == [3]


def test_gpu_hours_count_a_workers_share_of_its_gpus():
    from ablate.runs.workers import gpu_assignment, gpu_shares

    assert gpu_shares(gpu_assignment(8, 1, ["0", "1"])) == [0.25] * 8  # the issue-12 grid's layout
    assert gpu_shares(["0", "0", "1"]) == [0.5, 0.5, 1.0] and gpu_shares([None, None]) == [1.0, 1.0]


def _pop_all(url: str, start: float, queue) -> None:  # type: ignore[no-untyped-def]
    study = _study(url, "race")
    while time.time() < start:
        pass
    claimed = []
    while (trial_id := study._pop_waiting_trial_id()) is not None:  # what study.ask() does first
        claimed.append(trial_id)
    queue.put(claimed)


def test_sqlite_claims_are_exclusive(tmp_path):
    """Four processes claiming waiting trials at once on SQLite: every trial is claimed exactly once
    (without BEGIN IMMEDIATE, about a quarter are claimed twice)."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    study = optuna.create_study(study_name="race", storage=open_storage(url, heartbeat=False))
    for i in range(40):
        study.enqueue_trial({}, user_attrs={"i": i})
    context = multiprocessing.get_context("fork")
    queue, start = context.Queue(), time.time() + 1
    procs = [context.Process(target=_pop_all, args=(url, start, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    claimed = [trial for _ in procs for trial in queue.get(timeout=60)]
    for p in procs:
        p.join()
    assert len(claimed) == len(set(claimed)) == 40


def test_cells_tried_before_go_to_the_head_of_the_queue(tmp_path, monkeypatch):
    """A run cut by a deadline (a device call) re-queues its interrupted cells ahead of the cells that
    were still waiting, so the next run resumes them from their checkpoints before starting new ones."""
    from ablate.runs import queue

    monkeypatch.setattr(queue, "store_faults", lambda *args: {})  # the done cells' records are whole (not made here)
    variants = ["rf", "eps/linear", "v/cos", "edm/rf", "rf/cosmap"]
    grid = load_grid(workers_kit.write_grid(tmp_path, "order", variants), GridOverrides(results=tmp_path))
    study = open_study(grid, open_storage(f"sqlite:///{tmp_path / 'order.sqlite3'}", heartbeat=False))
    assert queue_cells(study, grid) == 5
    done, cut, lost = study.ask(), study.ask(), study.ask()  # rf, eps/linear, v/cos; edm/rf and rf/cosmap wait
    study.tell(done, 0.5)
    cut.set_user_attr("interrupted", True)
    cut.set_user_attr("fail_reason", "stopped by SIGTERM; the next run resumes it")
    study.tell(cut, state=TrialState.FAIL)
    study.tell(lost, state=TrialState.FAIL)  # its worker was lost (no reason recorded)
    assert queue_cells(study, grid) == 2  # the two cut cells are new in the queue; the waiting two move behind
    claims = []
    while (trial := study.ask()).user_attrs.get("cell"):
        claims.append(trial.user_attrs["variant"])
        study.tell(trial, 0.0)
    assert claims == ["eps/linear", "v/cos", "edm/rf", "rf/cosmap"]
    assert queue_cells(study, grid) == 0
    # the waiting trial of edm/rf was failed (unattributed) and replaced behind the cut cells
    assert {c: [t.state for t in ts] for c, ts in trials_by_cell(study).items()}[grid.cells()[3].id] == [
        TrialState.FAIL, TrialState.COMPLETE]


def test_no_cell_is_claimed_after_the_time_limit(tmp_path, monkeypatch, one_thread):
    """--stop-claiming-after: a run claims no cell once its limit has passed, finishing the one it runs; the
    cells it left stay queued and the next run does them."""
    from ablate.runs import queue

    grid = load_grid(workers_kit.write_grid(tmp_path, "limit", ["rf", "eps/linear"], max_steps=4),
                     GridOverrides(results=tmp_path / "results"))
    url = f"sqlite:///{tmp_path / 'optuna.sqlite3'}"
    ctx = RunContext(device=torch.device("cpu"), console=Console(quiet=True), progress=False)
    assert run_grid(grid, ctx, WorkerOptions(storage=url, claim_until=time.time())) == {"pending": 2}
    until = time.time() + 10.0  # claimed before this, and still running when it passes
    real = queue.run_cell

    def run_past_the_limit(*args, **kwargs):  # type: ignore[no-untyped-def]
        outcome = real(*args, **kwargs)
        time.sleep(max(until - time.time(), 0.0))
        return outcome

    monkeypatch.setattr(queue, "run_cell", run_past_the_limit)
    # one cell at a time (a pack would claim both at once, before the limit)
    assert run_grid(grid, ctx, WorkerOptions(storage=url, claim_until=until, pack=1)) == {"done": 1, "pending": 1}
    monkeypatch.setattr(queue, "run_cell", real)
    assert run_grid(grid, ctx, WorkerOptions(storage=url)) == {"done": 2}


# ---------------------------------------------------------------------------------------------------------------
# Issue 27: a cell never runs twice at once (fencing), heartbeats survive a locked storage, clocks need not agree.

def test_a_worker_whose_claim_was_taken_over_writes_nothing_and_moves_on(tmp_path):
    """A worker stopped (SIGSTOP) while writing a record, past the grace period: the other worker reclaims the
    cell and finishes it. Continued (SIGCONT), the first one checks its claim before the rename, finds it taken
    over, drops the write and moves on: every record and done.json written once, no crash (today: both write,
    then "Cannot tell a FAIL trial", run rc 2)."""
    grid_file = workers_kit.write_grid(tmp_path, variants=["rf", "eps/linear"], max_steps=8)
    url, marker = f"sqlite:///{tmp_path / 'optuna.sqlite3'}", tmp_path / "paused"
    log_path = tmp_path / "run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(workers_kit.cli_command("run", str(grid_file), "--results", str(tmp_path / "results"),
                                                        "--storage", url, "--workers", "2", "--no-leaderboard"),
                                env=workers_kit.worker_env(ABLATE_TEST_PAUSE_AT="write:*/records/*.json",
                                                           ABLATE_TEST_PAUSE_FILE=str(marker)),
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        pid = workers_kit.pid_paused_at(marker, proc)
        workers_kit.stop_holding_no_lock(pid, tmp_path / "optuna.sqlite3")
        (tmp_path / "paused.release").touch()  # it goes on from the pause once continued
        (stopped,) = [t for t in _study(url, "tiny").get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                      if t.user_attrs.get("where", {}).get("pid") == pid]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and not any(
                t.state == TrialState.COMPLETE for t in trials_by_cell(_study(url, "tiny"))[stopped.user_attrs["cell"]]):
            time.sleep(0.2)
        record = next((tmp_path / "results").rglob(f"{stopped.user_attrs['variant'].replace('/', '__')}/seed0/records/*.json"))
        written = record.read_bytes()
        os.kill(pid, signal.SIGCONT)
        code = proc.wait(timeout=180)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert "Cannot tell" not in text and "Traceback" not in text, text[-3000:]
    assert re.search(r"another worker took this cell over .*records/[^ ]+\.json not written", text), text[-3000:]
    trials = trials_by_cell(_study(url, "tiny"))[stopped.user_attrs["cell"]]
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert record.read_bytes() == written  # the stopped worker's record never landed over the reclaimer's
    assert len(re.findall(r"(\[\d+/\d+\]) [^\n]*: done in", text)) == 2, text  # each cell finished once
    assert not list((tmp_path / "results").rglob("*.tmp"))


def test_a_fenced_write_of_a_lost_claim_does_not_land(tmp_path):
    from ablate.io import fenced, write_json_atomic
    from ablate.runs.claims import Claim, TrialLost

    url = f"sqlite:///{tmp_path / 'fence.sqlite3'}"
    study = optuna.create_study(study_name="fence", storage=open_storage(url, heartbeat=False))
    trial = study.ask()
    target = tmp_path / "done.json"
    with fenced(Claim(url, trial._trial_id).check):
        write_json_atomic(target, {"claim": 1})  # the claim holds: written
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # reclaimed by another worker
        with pytest.raises(TrialLost, match="taken over"):
            write_json_atomic(target, {"claim": 2})
    assert json.loads(target.read_text()) == {"claim": 1} and not list(tmp_path.glob(".*.tmp"))
    write_json_atomic(target, {"claim": 3})  # outside the block: no fence
    assert json.loads(target.read_text()) == {"claim": 3}


def test_heartbeats_survive_a_storage_locked_past_its_timeout(tmp_path, monkeypatch, capfd):
    """A SQLite file locked by another process past the timeout: the beat is noted in the cell's log and sent
    again, Optuna's heartbeat thread lives on (today: its traceback on the console and no more heartbeats)."""
    import sqlite3

    from optuna.storages._heartbeat import get_heartbeat_thread

    from ablate.runs import logs, storage

    monkeypatch.setattr(storage, "SQLITE_TIMEOUT_S", 0.2)
    monkeypatch.setenv("ABLATE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("ABLATE_GRACE_PERIOD", "3")
    path = tmp_path / "lock.sqlite3"
    study = optuna.create_study(study_name="lock", storage=storage.open_storage(f"sqlite:///{path}"))
    trial = study.ask()
    beats = "SELECT heartbeat FROM trial_heartbeats WHERE trial_id = ?"
    logs.route_output(tmp_path / "run.log")
    with logs.to_file(tmp_path / "cell.log"), get_heartbeat_thread(trial._trial_id, study._storage):
        time.sleep(0.5)
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        time.sleep(2.5)  # two beats fail
        lock.execute("ROLLBACK")
        before = lock.execute(beats, (trial._trial_id,)).fetchone()
        time.sleep(2.5)
        after = lock.execute(beats, (trial._trial_id,)).fetchone()
    assert after > before  # beating again after the lock
    assert "heartbeat of trial" in (tmp_path / "cell.log").read_text() and "not recorded" in (tmp_path / "cell.log").read_text()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "OperationalError" not in err, err


def test_an_unconfirmed_claim_is_timed_on_the_observers_clock(tmp_path, monkeypatch):
    """A claim whose worker's clock is an hour behind (Optuna stores the start in the claimer's local time) is
    not reclaimed at once: it is reclaimed after the grace period of this process's own monotonic clock."""
    import datetime
    import sqlite3

    from ablate.runs import claims
    from ablate.runs.queue import reclaim_stale

    monkeypatch.setenv("ABLATE_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("ABLATE_GRACE_PERIOD", "3")
    url = f"sqlite:///{tmp_path / 'clock.sqlite3'}"
    study = optuna.create_study(study_name="clock", storage=open_storage(url))
    study.enqueue_trial({}, user_attrs={"cell": "c"})
    trial = study.ask()  # RUNNING, no heartbeat, not confirmed
    with sqlite3.connect(tmp_path / "clock.sqlite3") as db:
        db.execute("UPDATE trials SET datetime_start = ? WHERE trial_id = ?",
                   ((datetime.datetime.now() - datetime.timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f"),
                    trial._trial_id))
    study = _study(url, "clock")  # read afresh
    assert study.trials[0].datetime_start < datetime.datetime.now() - datetime.timedelta(minutes=59)
    reclaim_stale(study)
    assert study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING  # today: failed at once
    for key in claims._FIRST_SEEN:
        claims._FIRST_SEEN[key] -= 3.0  # the grace period passed on this process's clock
    reclaim_stale(study)
    assert study._storage.get_trial(trial._trial_id).state == TrialState.FAIL


def test_a_cell_done_on_another_machine_is_not_queued_again(tmp_path):
    """The store heals only what this machine can tell: a cell done on another host, whose folder is not in this
    results directory, keeps its trial (its records are in that machine's results directory)."""
    grid = load_grid(workers_kit.write_grid(tmp_path, "away", ["rf", "eps/linear"]), GridOverrides(results=tmp_path))
    study = open_study(grid, open_storage(f"sqlite:///{tmp_path / 'away.sqlite3'}", heartbeat=False))
    assert queue_cells(study, grid) == 2
    for host in ("another-host", None):  # None: a trial of this machine (no where: rebuilt)
        trial = study.ask()
        if host:
            trial.set_user_attr("where", {"host": host, "pid": 1, "trial": trial.number})
        study.tell(trial, 0.5)
    said: list[str] = []
    assert queue_cells(study, grid, say=said.append) == 1  # only this machine's cell, whose records are missing
    assert len(said) == 1 and "eps/linear · seed 0 is done in the queue, but 1 of its 1 records is missing" in said[0]
