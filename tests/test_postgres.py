"""Two "machines" (worker processes with different working directories, no shared results) share one grid
through a real PostgreSQL server on loopback; the leaderboard is then built from their results directories
gathered into one (records live only in the results store, never in the storage).

The server is started here (initdb + pg_ctl into a temporary directory, as the ``postgres`` user when
run as root). The test is skipped only if the server cannot start, with the reason."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
import workers_kit
from optuna.trial import TrialState

from ablate.config.grid import Cell
from ablate.results import cell_dir
from ablate.runs.storage import open_storage

VARIANTS = ["rf", "eps/linear"]


def _as_server_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres_url():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    initdb = found[-1]
    if not initdb:
        reason = "PostgreSQL cannot start: no initdb found (CI: apt-get install -y postgresql)"
        print(reason)
        pytest.skip(reason)
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    base = Path(tempfile.mkdtemp(prefix="ablate-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = base / "data"
    steps = [[initdb, "-D", str(data), "--auth=trust", "-U", "postgres"],
             [pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
              f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"]]
    for cmd in steps:
        try:
            done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=90)
        except (OSError, subprocess.SubprocessError) as err:
            done = subprocess.CompletedProcess(cmd, 1, "", str(err))
        if done.returncode != 0:
            log = (base / "server.log").read_text() if (base / "server.log").exists() else ""
            reason = f"PostgreSQL cannot start ({Path(cmd[0]).name} failed): {(done.stderr + log)[-800:]}"
            print(reason)
            shutil.rmtree(base, ignore_errors=True)
            pytest.skip(reason)
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(_as_server_user([pg_ctl, "-D", str(data), "-m", "immediate", "stop"]), capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def test_two_machines_share_a_grid_through_postgres(postgres_url, tmp_path):
    from ablate.cli import main

    grid_file = workers_kit.write_grid(tmp_path, "pg", VARIANTS, max_steps=16)
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    procs = []
    for home in machines:
        home.mkdir()
        log = open(home / "run.log", "w")
        procs.append(subprocess.Popen(
            workers_kit.cli_command("run", str(grid_file), "--storage", postgres_url, "--results", "results",
                                    "--no-leaderboard", "--pack", "1"),  # a pack would let one machine claim both
            cwd=home, env=workers_kit.worker_env(ABLATE_TEST_STEP_SLEEP="0.25"), stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=240) for p in procs]
    logs = [(home / "run.log").read_text() for home in machines]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    by_cell: dict[str, list] = {}
    for trial in optuna.load_study(study_name="pg", storage=open_storage(postgres_url, heartbeat=False)).get_trials():
        if "cell" in trial.user_attrs:
            by_cell.setdefault(trial.user_attrs["cell"], []).append(trial.state)
    assert sorted(by_cell) == sorted(Cell("pg", v, "fashion-mnist", 0).id for v in VARIANTS)
    assert all(states.count(TrialState.COMPLETE) == 1 for states in by_cell.values()), by_cell
    ran = {home.name: [v for v in VARIANTS
                       if (cell_dir(home / "results", "pg", "fashion-mnist", v, 0) / "done.json").exists()]
           for home in machines}
    assert sorted(sum(ran.values(), [])) == sorted(VARIANTS), ran  # every cell run once, somewhere
    assert all(ran.values()), ran  # both machines took part
    out, gathered = tmp_path / "board", tmp_path / "gathered"
    for home in machines:
        shutil.copytree(home / "results", gathered, dirs_exist_ok=True)
    assert main(["leaderboard", "--storage", postgres_url, "--grid", "pg"]) == 2  # records are not in the storage
    assert main(["leaderboard", "--results", str(gathered), "--grid", "pg", "--alignment", "moment_align",
                 "--fidelity", "moment_fd", "--format", "csv", "--out", str(out)]) == 0
    assert (out / "pg.md").exists()
    assert all(v in (out / "pg.md").read_text() for v in VARIANTS)
