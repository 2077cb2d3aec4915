"""The search (issue 14): bad search files, point <-> variant mapping, warm start, the report on known
trials, a search with two workers writing every trial once, and a SIGKILLed search resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import workers_kit
from optuna.trial import TrialState

from ablate.cli import main
from ablate.results import ResultsStore, cell_dir, new_record
from ablate.runs.queue import trials_by_cell
from ablate.runs.storage import open_storage
from ablate.search.points import grid_for
from ablate.search.report import write_report
from ablate.search.spec import load_search
from ablate.search.trials import distributions, made, open_search_study
from ablate.search.warm import warm_start

SMOKE = Path(__file__).resolve().parent.parent / "grids" / "search-smoke.yaml"
TINY = """\
name: tiny-search
datasets: [fashion-mnist]
seeds: [0]
data: {resolution: 8, val_size: 32}
model: {patch_size: 4, hidden_size: 32, depth: 2, num_heads: 2}
train: {max_steps: MAX_STEPS, batch_size: 16, lr: 1.0e-3, warmup_steps: 2, val_every: 8, ema: {every: 1, decay: 0.9}}
eval: {num_samples: 16, batch_size: 16, weights: [ema], settings: [{steps: 4, cfg: 2.0}], scorers: [test-moments]}
search:
  variant: "rf/lognorm({m}, {s})"
  params: {m: {low: -1.0, high: 1.0}, s: {low: 0.5, high: 1.5}}
  trials: 4
  batch: 2
  enqueue: ["rf/lognorm(0.00, 1.00)"]
"""


def tiny(tmp_path: Path, max_steps: int = 12, extra: str = "") -> Path:
    path = tmp_path / "tiny-search.yaml"
    path.write_text(TINY.replace("MAX_STEPS", str(max_steps)) + extra)
    return path


def plan(capsys, tmp_path: Path, text: str) -> SimpleNamespace:
    """``search FILE --report-only`` on a fresh results directory: reads and checks the file, trains nothing."""
    file = tmp_path / "search.yaml"
    file.write_text(text)
    code = main(["search", str(file), "--report-only", "--results", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    return SimpleNamespace(code=code, out=out, message=" ".join(err.split()))


BAD = [
    ("no search section", lambda t: t.split("\nsearch:")[0], ["search.yaml", "`search` is missing", "variant"]),
    ("variants given", lambda t: t.replace("datasets:", 'variants: ["rf"]\ndatasets:'),
     ["`variants` is set by the search", "search.enqueue"]),
    ("placeholder without range", lambda t: t.replace("    s: {low: 0.3, high: 2.2}\n", ""),
     ["`search.params`", "['m']", "exactly the template's placeholders (m, s)"]),
    ("range as a list", lambda t: t.replace("m: {low: -1.0, high: 1.5}", "m: [-1.0, 1.5]"),
     ["`search.params`", "{low, high}"]),
    ("empty range", lambda t: t.replace("s: {low: 0.3, high: 2.2}", "s: {low: 2.2, high: 0.3}"),
     ["`search.params.s.high` is 0.3", "larger than `search.params.s.low` = 2.2"]),
    ("three decimals", lambda t: t.replace("low: 0.3,", "low: 0.305,"),
     ["`search.params.s.low` is 0.305", "a multiple of 0.01"]),
    ("invalid density at an end", lambda t: t.replace("low: 0.3,", "low: -0.5,"),
     ["`search.variant`", "`low` end", "scale s = -0.5 must be > 0"]),
    ("mode beyond its range", lambda t: t.replace('"rf/lognorm({m}, {s})"', '"rf/mode({s})/shift({m})"').replace(
        'enqueue: ["rf/lognorm(0.00, 1.00)"]', "enqueue: []").replace("m: {low: -1.0,", "m: {low: 1.0,"),
     ["`search.variant`", "`high` end", "mode(2.2)", "2/(pi-2)"]),
    ("not canonical", lambda t: t.replace('"rf/lognorm({m}, {s})"', '"rf/lognorm({m},{s})"'),
     ["`search.variant`", "canonical spelling", "'rf/lognorm(0.25, 1.25)'"]),
    ("unknown objective", lambda t: t.replace("objective: mean", "objective: 50steps"),
     ["`search.objective` is '50steps'", "5steps-cfg2.5-own-ema"]),
    ("enqueued point of another form", lambda t: t.replace('["rf/lognorm(0.00, 1.00)"]', '["rf/mode(1.29)"]'),
     ["`search.enqueue[0]` is 'rf/mode(1.29)'", "of the form 'rf/lognorm({m}, {s})' inside the ranges"]),
    ("confirm seed clashes", lambda t: t.replace("seeds: [1]}", "seeds: [0]}"),
     ["`search.confirm.seeds`", "other than the trials' `seeds` [0]"]),
    ("bad lr range", lambda t: t.replace("  trials: 6", "  lr: {low: 1.0e-3, high: 1.0e-4}\n  trials: 6"),
     ["`search.lr`", "0 < low < high"]),
    ("unknown sampler", lambda t: t.replace("sampler: nsga2", "sampler: cmaes"),
     ["`search.sampler` is 'cmaes'", "'nsga2', 'tpe'"]),
    ("typo", lambda t: t.replace("  batch: 3", "  batchh: 3"), ["`search.batchh`", "Did you mean `search.batch`"]),
]


@pytest.mark.parametrize("case,edit,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_search_file(capsys, tmp_path, case, edit, fragments) -> None:
    text = SMOKE.read_text()
    changed = edit(text)
    assert changed != text, f"the edit for {case!r} no longer matches grids/search-smoke.yaml"
    result = plan(capsys, tmp_path, changed)
    assert result.code == 2 and result.message.startswith("error:") and "Traceback" not in result.message, result
    for fragment in fragments:
        assert fragment in result.message, result.message
    assert not (tmp_path / "results").exists()


def test_smoke_file_reads_and_maps_points(tmp_path) -> None:
    search = load_search(SMOKE, tmp_path)
    space = search.space
    assert space.variant({"m": 0.123, "s": 1}) == "rf/lognorm(0.12, 1.00)"
    assert space.params("rf/lognorm(0.50, 0.60)") == {"m": 0.5, "s": 0.6}
    assert space.params("rf/lognorm(0.00, 0.20)") is None  # s below the range
    assert space.params("rf/lognorm(0.00, 0.20)", within=False) == {"m": 0.0, "s": 0.2}
    assert space.params("rf/mode(1.29)") is None
    lattice = search.lattice()  # the paper's 5 x 6 lognorm lattice, s = 0.2 outside [0.3, 2.2]
    assert len(lattice) == 25 and "rf/lognorm(1.00, 2.20)" in lattice and "rf/lognorm(0.00, 0.20)" not in lattice
    grid = grid_for(search, ["rf/lognorm(0.10, 1.00)"], 3.2e-4, seeds=(1,))
    assert (grid.name, grid.train.lr, grid.seeds, grid.variants) == ("search-smoke.lr3.2e-04", 3.2e-4, (1,),
                                                                      ("rf/lognorm(0.10, 1.00)",))


def _records(root: Path, grid_name: str, lr: float, points: dict[str, tuple[float, float]], search) -> None:
    grid = grid_for(search, list(points), lr)
    import dataclasses

    grid = dataclasses.replace(grid, name=grid_name)
    store = ResultsStore(root)
    for variant, (align, fd) in points.items():
        cell = next(c for c in grid.cells() if c.variant == variant)
        for setting in grid.eval.all_settings():
            store.write_record(new_record(cell, setting, {"moment_align": align, "moment_fd": fd},
                                          config=grid.to_dict()))


def test_warm_start_adds_comparable_records_once(tmp_path) -> None:
    search = load_search(tiny(tmp_path, extra="  warm_start: [older, other-model]\n"), tmp_path / "results")
    _records(search.base.results_root, "older", 1e-3, {"rf/lognorm(0.50, 1.00)": (-0.4, 0.6), "rf/mode(1.29)": (0, 0),
                                                       "rf/lognorm(0.50, 3.00)": (0, 0)}, search)
    import dataclasses

    other = dataclasses.replace(search, base=dataclasses.replace(
        search.base, model=dataclasses.replace(search.base.model, depth=3)))
    _records(search.base.results_root, "other-model", 1e-3, {"rf/lognorm(0.20, 1.00)": (-0.1, 0.1)}, other)
    study = open_search_study(search, f"sqlite:///{tmp_path / 'search.db'}")
    notes = warm_start(study, search)
    assert notes[0] == "warm start: 1 trials from grid 'older'", notes
    assert "0 trials from grid 'other-model'" in notes[1] and "model.depth differ" in notes[1]
    (trial,) = study.trials
    assert trial.params == {"m": 0.5, "s": 1.0} and trial.values == [-0.4, 0.6]
    assert trial.user_attrs["source"] == "warm start from older"
    assert warm_start(study, search)[0] == "warm start: 0 trials from grid 'older'" and len(study.trials) == 1
    assert made(study) == []  # warm-start trials do not spend the budget


def test_warm_start_reads_the_search_settings_and_the_extra_seeds_of_its_grid(tmp_path, monkeypatch) -> None:
    """A warm-start grid that sampled one more setting, trained the confirm seed too, and was stored before
    `train.lr_by_variant` existed: its trial averages only the search's settings, and confirming the point
    reads seed 1 from that grid instead of training it."""
    import dataclasses

    import ablate.search.trials as trials_module
    from ablate.config.setting import Setting
    from ablate.search.analysis import seed_estimates
    from ablate.search.trials import confirm

    search = load_search(tiny(tmp_path, extra="  warm_start: [older]\n  confirm: {top: 1, seeds: [1]}\n"),
                         tmp_path / "results")
    variant = "rf/lognorm(0.50, 1.00)"
    grid = dataclasses.replace(grid_for(search, [variant], None, seeds=(0, 1)), name="older")
    grid = dataclasses.replace(grid, eval=dataclasses.replace(
        grid.eval, settings=(*grid.eval.settings, Setting(steps=8, cfg=2.0))))
    config = grid.to_dict()
    del config["train"]["lr_by_variant"]
    store = ResultsStore(search.base.results_root)
    for cell in grid.cells():
        for setting in grid.eval.all_settings():
            other = setting.steps == 8  # a setting the search does not sample
            store.write_record(new_record(cell, setting, {"moment_align": 9.0 if other else -0.4 - cell.seed,
                                                          "moment_fd": 9.0 if other else 0.6 + cell.seed},
                                          config=config))
    study = open_search_study(search, f"sqlite:///{tmp_path / 'search.db'}")
    assert warm_start(study, search) == ["warm start: 1 trials from grid 'older'"]
    (trial,) = study.trials
    assert trial.values == [-0.4, 0.6]
    trained = []
    monkeypatch.setattr(trials_module, "run_points", lambda *a, **k: trained.append((a, k)))
    assert confirm(search, study, SimpleNamespace(console=None), None) == [(variant, None)] and trained == []
    estimates = seed_estimates(search, (variant, None))
    assert (estimates["alignment"].seeds, estimates["alignment"].mean) == (2, pytest.approx(-0.9))
    assert estimates["fidelity"].mean == pytest.approx(1.1)


def test_a_resumed_search_draws_new_points_after_a_failed_trial(tmp_path, monkeypatch) -> None:
    """The GPU search's bug: a failed cell left NSGA-II's first generation one trial short, and the next
    process, its sampler seeded as the first, re-drew the first round's points (no cell trained). Each
    `run_search` call here is a new process's (a new study object and sampler)."""
    import io

    from rich.console import Console

    import ablate.search.trials as trials_module
    from ablate.runs.workers import WorkerOptions

    fail = {"rf/lognorm(0.00, 1.00)"}  # the enqueued point's cell fails: no records

    def train(search, points, ctx, options, seeds=()):
        points = [v for v, _ in points if v not in fail]
        if points:
            name = grid_for(search, points, None).name
            _records(search.base.results_root, name, 1e-3, {v: (-len(v) / 100, 1.0) for v in points}, search)

    monkeypatch.setattr(trials_module, "run_points", train)
    ctx = SimpleNamespace(console=Console(file=io.StringIO()))

    def made_points(where: str, *budgets: int) -> list[str]:
        (tmp_path / where).mkdir()
        search = load_search(tiny(tmp_path / where), tmp_path / where / "results")
        options = WorkerOptions(storage=f"sqlite:///{tmp_path / where / 'search.db'}")
        for trials in budgets:
            study = trials_module.run_search(search, ctx, options, trials=trials)
        assert [t.state for t in made(study)].count(TrialState.FAIL) == 1
        return [t.user_attrs["variant"] for t in made(study)]

    resumed = made_points("resumed", 2, 6)
    assert len(resumed) == 6 and len(set(resumed)) == 6, resumed
    assert made_points("unbroken", 6) == resumed  # a resumed search draws what an unbroken one would


def test_repeats_stored_by_an_older_search_spend_no_budget() -> None:
    """The GPU study holds round 1's 8 points twice, told complete (before draws were checked): the
    second copies are repeats, neither made nor told; a point at another learning rate is no repeat."""
    from optuna.distributions import FloatDistribution

    from ablate.search.analysis import repeats, told

    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (variant, lr) in enumerate([("rf/lognorm(0.10, 1.00)", None), ("rf/lognorm(0.20, 1.00)", None),
                                            ("rf/lognorm(0.10, 1.00)", None), ("rf/lognorm(0.10, 1.00)", 1e-4)]):
        study.add_trial(optuna.trial.create_trial(
            params={"m": 0.1}, distributions={"m": FloatDistribution(-1, 1)}, values=[0.9, 10.0 + number],
            user_attrs={"variant": variant, "lr": lr, "source": "search"}))
    assert repeats(study) == {2}
    assert [t.number for t in made(study)] == [0, 1, 3] and [t.number for t in told(study)] == [0, 1, 3]


def test_report_of_known_trials(tmp_path) -> None:
    search = load_search(SMOKE, tmp_path / "results")
    study = open_search_study(search, f"sqlite:///{tmp_path / 'search.db'}")
    points = {"rf/lognorm(0.00, 1.00)": (0.50, 13.0, "enqueued"), "rf/lognorm(0.50, 0.60)": (0.70, 12.0, "search"),
              "rf/lognorm(-0.50, 1.40)": (0.40, 8.0, "search"), "rf/lognorm(1.00, 2.00)": (0.30, 13.0, "search")}
    dists = distributions(search)
    for variant, (align, fd, source) in points.items():
        study.add_trial(optuna.trial.create_trial(params=search.space.params(variant), distributions=dists,
                                                  values=[align, fd], user_attrs={"variant": variant, "lr": None,
                                                                                  "source": source}))
    md, png = write_report(tmp_path / "out", search, study, 4)
    text = md.read_text()
    assert md.name == "search-smoke.md" and png.stat().st_size > 0
    front = text.split("## Pareto front")[1].split("## Best")[0]
    assert "rf/lognorm(0.50, 0.60)" in front and "rf/lognorm(-0.50, 1.40)" in front
    assert "rf/lognorm(1.00, 2.00)" not in front and "`rf/lognorm(0.00, 1.00)`" not in front  # dominated
    assert "| alignment | `rf/lognorm(0.50, 0.60)` | `rf/lognorm(0.00, 1.00)` | m +0.50, s -0.40 | 0.64 |" in text
    assert "| fidelity | `rf/lognorm(-0.50, 1.40)` | `rf/lognorm(0.00, 1.00)` | m -0.50, s +0.40 | 0.64 |" in text
    tv = re.search(r"\| alignment \| `rf/lognorm\(0.50, 0.60\)` \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", text)
    assert tv and all(0 < float(v) < 1 for v in tv.groups()), text
    assert "PED-ANOVA over 4 trials" in text


def _search(tmp_path: Path, file: Path, *args: str, **env: str) -> subprocess.Popen:
    log = open(tmp_path / f"search-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen(workers_kit.cli_command("search", str(file), "--results", str(tmp_path / "results"), *args),
                            env=workers_kit.worker_env(**env), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


def _assert_every_trial_once(tmp_path: Path, trials: int) -> list[optuna.trial.FrozenTrial]:
    url = f"sqlite:///{tmp_path / 'results' / 'tiny-search' / 'optuna.sqlite3'}"
    study = optuna.load_study(study_name="tiny-search.search", storage=open_storage(url, heartbeat=False))
    spent = made(study)
    assert len(spent) == trials and all(t.state == TrialState.COMPLETE for t in spent), [
        (t.number, t.state, t.user_attrs) for t in study.trials]
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    queue = optuna.load_study(study_name="tiny-search", storage=open_storage(url, heartbeat=False))
    by_cell = trials_by_cell(queue)
    assert sorted(c.split("--")[1] for c in by_cell) == sorted({
        workers_kit_slug(t.user_attrs["variant"]) for t in spent})
    for cell_id, cell_trials in by_cell.items():
        assert [t.state for t in cell_trials].count(TrialState.COMPLETE) == 1, cell_id
    for t in spent:
        directory = cell_dir(tmp_path / "results", "tiny-search", "fashion-mnist", t.user_attrs["variant"], 0)
        (record,) = (directory / "records").glob("*.json")
        metrics = json.loads(record.read_text())["metrics"]
        assert t.values == [metrics["moment_align"], metrics["moment_fd"]]  # told what the store holds
    return spent


def workers_kit_slug(variant: str) -> str:
    from ablate.config.grid import Cell

    return Cell("g", variant, "d", 0).id.split("--")[1]


def test_two_workers_write_every_trial_once(tmp_path) -> None:
    proc = _search(tmp_path, tiny(tmp_path), "--workers", "2")
    assert proc.wait(timeout=300) == 0, Path(proc.args[-1]).name
    spent = _assert_every_trial_once(tmp_path, 4)
    assert spent[0].user_attrs["variant"] == "rf/lognorm(0.00, 1.00)" and spent[0].user_attrs["source"] == "enqueued"
    log = "\n".join(p.read_text() for p in tmp_path.glob("search-*.log"))
    done = re.findall(r"\] (\[\d+/\d+\] [^\n]*): done in", log)
    assert len(done) == len(set(done)) == len({t.user_attrs["variant"] for t in spent}), log[-3000:]
    assert len(set(re.findall(r"\[(w\d)\] \[", log))) == 2, log[-3000:]  # both workers trained cells
    assert (tmp_path / "results" / "tiny-search" / "leaderboard" / "search-tiny-search.md").exists()


def test_killed_search_resumes_and_runs_every_trial_once(tmp_path) -> None:
    """SIGKILL while the second round trains; the rerun re-runs that round's asked trials (their cells
    resume from their checkpoints) and does not retrain the first round's."""
    file = tiny(tmp_path, max_steps=40)
    slow = {"ABLATE_TEST_STEP_SLEEP": "0.05", "ABLATE_GRACE_PERIOD": "3600"}
    proc = _search(tmp_path, file, **slow)
    storage = open_storage(f"sqlite:///{tmp_path / 'results' / 'tiny-search' / 'optuna.sqlite3'}", heartbeat=False)
    deadline, killed_in = time.monotonic() + 200, None
    while killed_in is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        try:  # (one storage for every poll: opening one costs ~40 ms of CPU, taken from the search under test)
            study = optuna.load_study(study_name="tiny-search.search", storage=storage)
        except KeyError:
            continue
        trials = study.get_trials(deepcopy=False)  # one snapshot: two queries could see a trial in both states
        running = [t for t in trials if t.state == TrialState.RUNNING]
        told = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(told) == 2 and running:
            ckpts = [cell_dir(tmp_path / "results", "tiny-search", "fashion-mnist", t.user_attrs.get("variant", "?"), 0)
                     / "checkpoints" / "last.ckpt" for t in running]
            if any(p.exists() for p in ckpts):
                killed_in = [t.number for t in running]
                proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert killed_in, "the search finished before it could be killed"
    first_round = {p: os.stat(p).st_mtime_ns for p in (tmp_path / "results").rglob("train.json")}
    assert len(first_round) == 2
    rerun = _search(tmp_path, file, **slow)
    assert rerun.wait(timeout=300) == 0
    spent = _assert_every_trial_once(tmp_path, 4)
    assert sorted(t.number for t in spent) == [0, 1, *killed_in]  # the asked trials were finished, not replaced
    assert {p: os.stat(p).st_mtime_ns for p in first_round} == first_round  # first round not retrained
    resumed = [json.loads(p.read_text())["resumed_from_step"] for p in (tmp_path / "results").rglob("train.json")
               if p not in first_round]
    assert len(resumed) == 2 and max(resumed) > 0  # the killed cell went on from its checkpoint


def test_a_rerun_with_another_space_is_refused(capsys, tmp_path) -> None:
    file = tiny(tmp_path)
    assert main(["search", str(file), "--report-only", "--results", str(tmp_path / "results")]) == 0
    file.write_text(file.read_text().replace("high: 1.5}", "high: 1.8}"))
    assert main(["search", str(file), "--report-only", "--results", str(tmp_path / "results")]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "already holds search 'tiny-search' with another params" in message and "rename it" in message


def test_gpu_search_file_trains_as_the_grid_and_fits_its_budget() -> None:
    """grids/search-fashion-mnist.yaml trains exactly as grids/fashion-mnist.yaml (so the grid's lognorm points
    warm-start it), and its cost note's arithmetic (16 trials and at most 4 confirming cells at the grid's
    measured ~115 GPU-s per cell, four per H200, plus ~90 s of start-up per round on each of two GPUs) stays
    within one GPU-hour."""
    from ablate.config.grid import load_grid
    from ablate.search.warm import config_differences

    search = load_search(SMOKE.parent / "search-fashion-mnist.yaml")
    grid = load_grid(SMOKE.parent / "fashion-mnist.yaml")
    assert search.search.warm_start == ("fashion-mnist",)
    assert config_differences(search, grid.to_dict()) == []
    assert set(search.objective_settings) <= {s.key for s in grid.eval.all_settings()}
    s = search.search
    cells = s.trials + s.confirm.top * 2 * len(s.confirm.seeds)
    rounds = -(-s.trials // s.batch) + 1
    gpu_seconds = cells * 115 + rounds * 2 * 90
    assert gpu_seconds < 3600, gpu_seconds


def test_a_search_whose_space_is_exhausted_stops(tmp_path, monkeypatch) -> None:
    """A space of four lattice points (m in {0.00, 0.01}, s in {1.00, 1.01}) and a budget of 6: the search
    trains the four and stops, saying why, instead of drawing repeats forever."""
    import io

    from rich.console import Console

    import ablate.search.trials as trials_module
    from ablate.runs.workers import WorkerOptions

    text = TINY.replace("MAX_STEPS", "12").replace("{m: {low: -1.0, high: 1.0}, s: {low: 0.5, high: 1.5}}",
                                                    "{m: {low: 0.0, high: 0.01}, s: {low: 1.0, high: 1.01}}")
    (tmp_path / "tiny-search.yaml").write_text(text.replace("trials: 4", "trials: 6"))
    search = load_search(tmp_path / "tiny-search.yaml", tmp_path / "results")

    trained: set[str] = set()

    def train(search, points, ctx, options, seeds=()):
        points = [v for v, _ in points]
        assert not set(points) <= trained, f"a round of repeats only was run: {points}"  # (unguarded: forever)
        trained.update(points)
        _records(search.base.results_root, grid_for(search, points, None).name, 1e-3,
                 {v: (-len(v) / 100, 1.0) for v in points}, search)

    monkeypatch.setattr(trials_module, "run_points", train)
    out = io.StringIO()
    study = trials_module.run_search(search, SimpleNamespace(console=Console(file=out, width=300)),
                                     WorkerOptions(storage=f"sqlite:///{tmp_path / 'search.db'}"), trials=6)
    assert len(made(study)) == 4 and len({t.user_attrs["variant"] for t in made(study)}) == 4
    assert "the space is exhausted" in out.getvalue()
