"""Sessions: ``ci`` (the default, what ``nox`` and CI run, in one environment: the unit tests with the CPU
scaling study and search running beside them, then the smoke grid (Table 1's 16 variants, two seeds), then the assertions on the smoke
leaderboard and the studies' reports), ``tests`` and ``smoke`` (each part alone), ``studies`` (the CPU
scaling study and search alone, and their assertions). ``nox -s gpu`` (not in the default run) is the GPU
check: on a machine with a CUDA GPU, in the environment it is started from. Every install keeps the torch pin in
constraints.txt (a different torch would pull several GB of CUDA packages)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.sessions = ["ci"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
SMOKE_RESULTS = ".nox/smoke-results"
SMOKE_SEEDS = "0,1"  # two training seeds, so the smoke leaderboard shows its confidence intervals
STUDY_RESULTS = ".nox/study-results"


def _install(session: nox.Session) -> None:
    session.install("torch==2.13.0")
    session.install("-e", ".[test]", *CONSTRAINTS)


def _unit_tests(session: nox.Session) -> None:
    # two processes (pytest-xdist, one test file each at a time): many tests wait on subprocesses; one thread
    # each, as the studies beside them (two threads each oversubscribed the 2 cores; a small model's step runs
    # as fast on one thread, see ablate/threads.py); the longest files first (tests/conftest.py)
    session.run("pytest", "-m", "not smoke and not slow", "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder",
                *session.posargs, env={**ENV, "OMP_NUM_THREADS": "1"})


def _table1(session: nox.Session) -> list[str]:
    """``--variant`` arguments for the paper's Table 1 (16 of the smoke grid's 24 variants; ablate.report.paper)."""
    names = session.run("python", "-c", "import ablate.report.paper as p; print('\\n'.join(p.TABLE1))", silent=True, env=ENV)
    return [arg for name in str(names).strip().splitlines() for arg in ("--variant", name)]


def _smoke(session: nox.Session, assert_env: dict[str, str] | None = None, table1: bool = False) -> None:
    """The grid, its leaderboard, then the ``smoke`` tests; ``assert_env`` adds results for them to check;
    ``table1``: the paper's 16 variants only (CI: 32 cells instead of 48 keeps it under 25 minutes; the other 8
    are the quick start's, README command 1, and every trajectory and density family is among the 16)."""
    # two single-threaded workers share the grid through its Optuna storage: ~1.2x faster than one
    # two-threaded process for these tiny models on 2 cores, and it runs the distributed path in CI
    variants = _table1(session) if table1 else []
    session.run("python", "-m", "ablate", "run", "grids/smoke.yaml", *variants, "--results", SMOKE_RESULTS, "--workers",
                "2", "--seeds", SMOKE_SEEDS, "--no-leaderboard", env={**ENV, "OMP_NUM_THREADS": "1"})
    session.run("python", "-m", "ablate", "leaderboard", "--results", SMOKE_RESULTS, "--grid", "smoke",
                "--out", "leaderboard", env=ENV)
    session.run("pytest", "-m", "smoke", *session.posargs,
                env={**ENV, "ABLATE_SMOKE_RESULTS": SMOKE_RESULTS, "ABLATE_SMOKE_SEEDS": SMOKE_SEEDS,
                     **({"ABLATE_SMOKE_VARIANTS": "table1"} if table1 else {}), **(assert_env or {})})


STUDIES = (("scale", "grids/scaling-smoke.yaml"), ("search", "grids/search-smoke.yaml"))


def _study_commands() -> list[list[str]]:
    # then the backbone axis's smoke grid (8 cells, ~3 min single-threaded beside the tests) and its leaderboard
    return [["python", "-m", "ablate", command, grid, "--results", STUDY_RESULTS, "--out", f"{STUDY_RESULTS}/reports"]
            for command, grid in STUDIES] + [
        ["python", "-m", "ablate", "run", "grids/architectures-smoke.yaml", "--results", STUDY_RESULTS,
         "--no-leaderboard"],
        ["python", "-m", "ablate", "leaderboard", "--results", STUDY_RESULTS, "--grid", "architectures-smoke",
         "--out", f"{STUDY_RESULTS}/reports", "--replicates", "200"]]


def _study_assertions(session: nox.Session) -> None:
    session.run("pytest", "-m", "smoke", "tests/e2e/test_smoke_leaderboard.py", "-k", "study", *session.posargs,
                env={**ENV, "ABLATE_STUDY_RESULTS": STUDY_RESULTS})


@nox.session
def ci(session: nox.Session) -> None:
    """Unit tests with the CPU studies beside them (single-threaded, in the time the tests spend waiting on
    their subprocesses), then the smoke grid on the paper's 16 Table 1 variants with two seeds, then the
    assertions on both (one install)."""
    _install(session)
    log = Path(STUDY_RESULTS) / "studies.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    script = " && ".join(" ".join(f"'{a}'" for a in [f"{session.bin}/python", *cmd[1:]]) for cmd in _study_commands())
    with log.open("w") as out:
        studies = subprocess.Popen(["bash", "-c", script], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **ENV, "OMP_NUM_THREADS": "1"})
    try:
        _unit_tests(session)
    except BaseException:
        studies.terminate()
        raise
    code = studies.wait()
    session.log(f"the CPU studies (beside the unit tests) exited with {code}; their log: {log}")
    if code:
        session.error("the CPU studies failed:\n" + "\n".join(log.read_text().splitlines()[-40:]))
    _smoke(session, {"ABLATE_STUDY_RESULTS": STUDY_RESULTS}, table1=True)  # one pytest run asserts on both


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests (everything but the smoke grid)."""
    _install(session)
    _unit_tests(session)


@nox.session
def smoke(session: nox.Session) -> None:
    """The 24-variant smoke grid on Fashion-MNIST, then tests that assert on its leaderboard."""
    _install(session)
    _smoke(session)


@nox.session
def studies(session: nox.Session) -> None:
    """The CPU-sized studies alone (``ci`` runs them beside the unit tests), then assertions on their reports:
    an isoFLOP scaling study (about 3.5 min on a slow 2-core VM) and a formulation search (about 45 s); then
    the ``slow`` tests (the probe's full recipe trained from scratch, about 2.5 min)."""
    _install(session)
    for command in _study_commands():
        session.run(*command, env={**ENV, "OMP_NUM_THREADS": "1"})
    _study_assertions(session)
    session.run("pytest", "-m", "slow", *session.posargs, env=ENV)


GPU_RESULTS = ".nox/gpu-results"
GPU_VARIANTS = ("rf/lognorm(0.00, 1.00)", "eps/linear", "edm(-1.20, 1.20)")
FIRST_CELL_DONE = r"^\[2/"  # the line starting the second cell (the first one, compiling included, is done): GPU busy is also averaged from here


@nox.session(python=False)
def gpu(session: nox.Session) -> None:
    """The GPU check: a 3-variant fashion-mnist grid end to end through the CLI (compiled, bf16, fused
    AdamW with clipping, EMA, validation, checkpoint, evaluation of every setting, leaderboard) with
    GPU busy sampled, assertions on what it wrote, then the bench table. Runs in the current
    environment (a GPU machine brings its own CUDA torch); exits non-zero on any failure.
    ``nox -s gpu -- --data-dir DIR`` passes options to the grid run."""
    session.run("python", "-c", "import sys, torch; sys.exit(0 if torch.cuda.is_available() else "
                "'nox -s gpu needs a CUDA GPU: torch ' + torch.__version__ + ' sees none')")
    variants = [arg for v in GPU_VARIANTS for arg in ("--variant", v)]
    session.run("python", "benchmarks/gpu_busy.py", "--json", f"{GPU_RESULTS}/busy.json", "--mark", FIRST_CELL_DONE, "--",
                "python", "-m", "ablate", "run", "grids/fashion-mnist.yaml", *variants, "--max-steps", "400", "--seeds", "0",
                "--results", GPU_RESULTS, "--device", "cuda", *session.posargs, env=ENV)
    session.run("python", "-m", "pytest", "-m", "gpu", "tests/e2e/test_gpu_check.py", "-q",
                env={**ENV, "ABLATE_GPU_RESULTS": GPU_RESULTS})
    data_dir = [a for i, a in enumerate(session.posargs) if i and session.posargs[i - 1] == "--data-dir"]
    session.run("python", "-m", "ablate", "bench", "fashion-mnist", "--device", "cuda", "--profile", "--steps", "40",
                "--warmup", "8", "--json", f"{GPU_RESULTS}/bench.json", *(["--data-dir", *data_dir[:1]] if data_dir else []), env=ENV)
