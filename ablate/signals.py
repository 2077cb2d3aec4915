"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM, the same way for both.

Inside :func:`stop_on_signals` the first SIGINT or SIGTERM raises :class:`Stopped` (a
``KeyboardInterrupt``) in the main thread: Lightning shuts training down gracefully, the running
cell's trial is marked interrupted (the next run re-queues it and resumes it from its checkpoint),
and a run with worker processes stops each of them. Later signals are noted, not raised, so they
cannot cut that shutdown short. The CLI names the signal (:func:`received`) and exits with
128 + its number. The previous handlers come back when the block ends.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: int | None = None


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(describe(signum))
        self.signum = signum


def describe(signum: int) -> str:
    """``SIGTERM``, or ``SIGINT (Ctrl-C)``."""
    name = signal.Signals(signum).name
    return f"{name} (Ctrl-C)" if signum == signal.SIGINT else name


def received() -> int | None:
    """The signal that stopped the last :func:`stop_on_signals` block, if one did."""
    return _received


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is None:
        _received = signum
        raise Stopped(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` once inside the block (main thread only)."""
    global _received
    _received = None
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
