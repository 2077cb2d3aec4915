"""Where a run's output goes: ablate's own lines on the console, everything else in log files.

Third-party messages (Lightning's notices and tips, Optuna's trial reports), Python warnings (e.g.
deprecations inside libraries, Lightning's data-loader advice) and the tracebacks of failed cells go
to the running cell's ``logs/output.log``, and outside a cell to the grid's ``run.log``; so do ablate's own
notes for the log (the ``ablate`` logger: e.g. a damaged file that a cell worked around). With
``run --verbose`` they are also echoed to stderr. A log file that cannot be written (a full disk)
is skipped silently: it must not add its own errors to the console.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

THIRD_PARTY = ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning", "optuna", "torch",
               "py.warnings")
CELL_LOG = Path("logs") / "output.log"  # relative to a cell's directory


class _FileRouter(logging.Handler):
    """Appends records to the innermost log file of :func:`to_file` (else the run log); echoes them if
    verbose."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        self.files: list[tuple[Path, ...]] = []
        self.run_log: Path | None = None
        self.echo = False

    def write(self, text: str) -> None:
        targets = self.files[-1] if self.files else (self.run_log,) if self.run_log is not None else ()
        for target in targets:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "a", encoding="utf-8") as fh:
                    fh.write(text if text.endswith("\n") else text + "\n")
            except OSError:
                pass
        if self.echo:
            sys.stderr.write(text if text.endswith("\n") else text + "\n")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(self.format(record))
        except Exception:  # noqa: BLE001 -- a message that cannot be formatted is dropped, never raised
            pass

    def handleError(self, record: logging.LogRecord) -> None:  # no "--- Logging error ---" on the console
        pass


_ROUTER = _FileRouter()


def route_output(run_log: Path | None, verbose: bool = False) -> None:
    """Send third-party logging and Python warnings to the log files (see the module doc); call once
    per process before a run (again to change the run log)."""
    _ROUTER.run_log, _ROUTER.echo = run_log, verbose
    logging.captureWarnings(True)
    import optuna

    optuna.logging.disable_default_handler()
    for name in (*THIRD_PARTY, "ablate"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.addHandler(_ROUTER)
        logger.propagate = False


@contextmanager
def to_file(path: Path | Sequence[Path]) -> Iterator[None]:
    """Within the block, routed output goes to ``path`` (a cell's log; several: every cell of a pack's)."""
    _ROUTER.files.append((path,) if isinstance(path, Path) else tuple(path))
    try:
        yield
    finally:
        _ROUTER.files.pop()


def write_failure(path: Path, err: BaseException) -> None:
    """Append ``err``'s traceback to the log file ``path`` (echoed with --verbose)."""
    with to_file(path):
        _ROUTER.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
