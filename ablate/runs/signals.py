"""Stopping a run on SIGINT (Ctrl-C) or SIGTERM, the same way for both.

Inside :func:`stop_on_signals` the first SIGINT or SIGTERM raises :class:`Stopped` (a
``KeyboardInterrupt``) in the main thread: Lightning shuts training down gracefully, the running
cell's trial is marked interrupted (the next run re-queues it and resumes it from its checkpoint),
and a run with worker processes stops each of them. Later signals are noted, not raised, so they
cannot cut that shutdown short. The CLI names the signal (:func:`received`) and exits with
128 + its number. The previous handlers come back when the block ends.

A signal that arrives while the main thread is inside code that must not be cut is not raised there, but at the
first line the thread runs once it is back out of it (a line trace, as a debugger's breakpoint):

- database code (SQLAlchemy, Optuna's storages): an exception in the middle of a SQLite transaction can leave the
  connection holding the database's write lock, which blocks every worker of the grid;
- ``torch.save`` (``torch.serialization``): its zip writer turns an exception in a file write into a
  ``RuntimeError`` ("unexpected pos"), so a signal during a checkpoint write read as a crash of the cell, which
  was then marked failed instead of interrupted (seen in CI, 2026-12-07). The write finishes, then the run stops;
- finalizers (``__del__``) and weak-reference callbacks (``weakref``, ``_weakrefset``), which the garbage collector
  runs inside whatever code is running: Python ignores an exception raised there ("Exception ignored in ..."), so
  the stop was printed as a traceback and lost (seen in CI, 2026-12-07, inside a ``WeakKeyDictionary``'s callback).
  A callback of any other module that a stop lands in is caught where Python would ignore it (``sys.unraisablehook``)
  and raised, likewise, at the next line of the code it interrupted.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_HELD_BACK = ("sqlalchemy", "sqlite3", "optuna.storages", "torch.serialization", "weakref", "_weakrefset")  # module
# names: not cut (above); nor a finalizer, whatever its module (_FINALIZER)
_FINALIZER = "__del__"
_received: int | None = None
_traced: list[FrameType] = []  # frames where a held-back signal is to be raised


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


def _held_back_caller(frame: FrameType | None) -> FrameType | None:
    """If ``frame`` runs inside code of :data:`_HELD_BACK` or a finalizer: the frame that called into it (the
    outermost such frame's caller); else None."""
    caller, inside = None, False
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(_HELD_BACK) or frame.f_code.co_name == _FINALIZER:
            inside = True
            caller = frame.f_back
        frame = frame.f_back
    return caller if inside else None


def _raise_on_return(caller: FrameType, signum: int) -> None:
    """Raise :class:`Stopped` at the next line that ``caller`` (or a frame further out) runs, as a debugger
    stops there: a line trace on those frames, and a no-op trace for the frames called meanwhile."""
    frame: FrameType | None = caller
    while frame is not None:
        _traced.append(frame)
        frame = frame.f_back

    def on_line(frame: FrameType, event: str, arg: object) -> object:
        if event != "line":
            return on_line
        settle()
        raise Stopped(signum)

    for f in _traced:
        f.f_trace = on_line
    sys.settrace(lambda frame, event, arg: None)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is not None:
        return  # already stopping
    _received = signum
    caller = _held_back_caller(frame)
    if caller is None:
        raise Stopped(signum)
    _raise_on_return(caller, signum)


def settle() -> None:
    """The stop is being carried out (e.g. Lightning stopped training on its own notice of SIGTERM):
    a held-back signal is not raised any more."""
    if _traced:
        sys.settrace(None)
        for f in _traced:
            f.f_trace = None
        _traced.clear()


def _unraisable_hook(previous: Callable[[sys.UnraisableHookArgs], object]) -> Callable[[sys.UnraisableHookArgs], None]:
    """A ``sys.unraisablehook`` that raises an ignored :class:`Stopped` at the next line of the interrupted code
    (the frame that was running when the garbage collector ran the callback), and passes anything else on."""

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, Stopped) and not _traced:
            _raise_on_return(sys._getframe(1), unraisable.exc_value.signum)
        else:
            previous(unraisable)

    return hook


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` once inside the block (main thread only)."""
    global _received
    _received = None
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _unraisable_hook(previous_hook)
    try:
        yield
    finally:
        settle()
        sys.unraisablehook = previous_hook
        for s, handler in previous.items():
            signal.signal(s, handler)
