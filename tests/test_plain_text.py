"""Text that quotes user input is printed as written, never read as rich markup (issue 10)."""

from __future__ import annotations

from optuna.trial import TrialState

import workers_kit
from ablate.cli import main
from ablate.config.grid import GridOverrides, load_grid
from ablate.runs.queue import queue_cells
from ablate.runs.storage import open_storage, open_study

REASON = "VariantError: a variant is written <trajectory>[/<sampler>] (not [bold]x0[/bold])"


def test_status_prints_a_failure_reason_with_brackets_verbatim(tmp_path, capsys) -> None:
    grid_file = workers_kit.write_grid(tmp_path, "plain", ["rf"])
    grid = load_grid(grid_file, GridOverrides(results=tmp_path))
    url = f"sqlite:///{tmp_path / 'plain.sqlite3'}"
    study = open_study(grid, open_storage(url, heartbeat=False))
    queue_cells(study, grid)
    failed = study.ask()
    failed.set_user_attr("fail_reason", REASON)
    study.tell(failed, state=TrialState.FAIL)
    assert main(["status", str(grid_file), "--storage", url, "--results", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "failed" in out and "<trajectory>[/<sampler>]" in " ".join(out.split()), out
    assert "[bold]x0[/bold]" in out


def test_the_error_printer_does_not_interpret_markup(capsys) -> None:
    assert main(["run", "smoke", "--variant", "[bold]rf[/bold]"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith("error:") and "--variant '[bold]rf[/bold]' matches none" in err
