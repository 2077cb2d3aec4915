"""Sessions: ``tests`` (unit tests), ``smoke`` (the CPU smoke grid end to end, then assertions on
the leaderboard it produced). ``nox`` runs both. Every install keeps the torch pin in
constraints.txt (a different torch would pull several GB of CUDA packages)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "smoke"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": "0"}
SMOKE_RESULTS = ".nox/smoke-results"


def _install(session: nox.Session) -> None:
    session.install("torch==2.13.0")
    session.install("-e", ".[test]", *CONSTRAINTS)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests (everything but the smoke grid)."""
    _install(session)
    session.run("pytest", "-m", "not smoke", *session.posargs, env=ENV)


@nox.session
def smoke(session: nox.Session) -> None:
    """The 24-variant smoke grid on Fashion-MNIST, then tests that assert on its leaderboard."""
    _install(session)
    # two single-threaded workers share the grid through its Optuna storage: ~1.2x faster than one
    # two-threaded process for these tiny models on 2 cores, and it runs the distributed path in CI
    session.run("python", "-m", "ablate", "run", "grids/smoke.yaml", "--results", SMOKE_RESULTS, "--workers", "2",
                "--no-leaderboard", env={**ENV, "OMP_NUM_THREADS": "1"})
    session.run("python", "-m", "ablate", "leaderboard", "--results", SMOKE_RESULTS, "--grid", "smoke",
                "--out", "leaderboard", env=ENV)
    session.run("pytest", "-m", "smoke", *session.posargs, env={**ENV, "ABLATE_SMOKE_RESULTS": SMOKE_RESULTS})
