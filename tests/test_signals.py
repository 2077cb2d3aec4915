"""ablate.runs.signals: a SIGTERM that lands inside torch.save is held back until the write is done, then stops
the run. Raised inside, torch's zip writer turned it into a RuntimeError ("unexpected pos"): in CI a SIGTERM during
a checkpoint write marked the cell failed, not interrupted (tests/test_failures.py, 2026-12-07)."""

from __future__ import annotations

import io
import os
import signal
import sys

import pytest
import torch

from ablate.runs.signals import Stopped, received, stop_on_signals


class _SignalledOnWrite(io.BytesIO):
    """A file whose first write sends this process SIGTERM (as a run stopped mid-checkpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return super().write(data)


def test_a_signal_inside_torch_save_stops_the_run_after_the_write() -> None:
    state = {"w": torch.arange(100_000, dtype=torch.float32)}
    fh = _SignalledOnWrite()
    with pytest.raises(Stopped), stop_on_signals():
        torch.save(state, fh)
        for _ in range(3):  # the held-back signal is raised at the caller's next line
            pass
    assert fh.sent and received() == signal.SIGTERM
    fh.seek(0)
    assert torch.equal(torch.load(fh)["w"], state["w"])  # the write was not cut


class _SignalledOnDelete:
    """An object whose finalizer sends this process SIGTERM (as the garbage collector running a finalizer when the
    signal comes)."""

    sent = False

    def __del__(self) -> None:
        type(self).sent = True
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(3):  # the handler runs here, inside the finalizer
            pass


def _send_sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(3):  # the handler runs here, inside weakref.finalize's call
        pass


def test_a_signal_inside_a_finalizer_stops_the_run_after_it() -> None:
    """Raised inside ``__del__``, the stop would be "ignored" by Python (printed as a traceback, seen in CI inside a
    WeakKeyDictionary's callback): held back, it stops the run at the next line out of it."""
    with pytest.raises(Stopped), stop_on_signals():
        obj = _SignalledOnDelete()
        del obj
        for _ in range(3):
            pass
    assert _SignalledOnDelete.sent and received() == signal.SIGTERM


def test_a_signal_inside_a_weakref_callback_stops_the_run_after_it() -> None:
    import weakref

    class Target:
        pass

    with pytest.raises(Stopped), stop_on_signals():
        target = Target()
        weakref.finalize(target, _send_sigterm)
        del target
        for _ in range(3):
            pass
    assert received() == signal.SIGTERM


def test_a_signal_inside_a_callback_of_any_module_stops_the_run_after_it() -> None:
    """A weak reference's callback defined outside the held-back modules (here, in this test module): Python ignores
    the stop raised inside it; it is raised at the next line of the code the garbage collector interrupted."""
    import weakref

    class Target:
        pass

    hooked_before = sys.unraisablehook
    with pytest.raises(Stopped), stop_on_signals():
        target = Target()
        ref = weakref.ref(target, lambda _: _send_sigterm())
        del target
        for _ in range(3):
            pass
    assert ref() is None and received() == signal.SIGTERM
    assert sys.unraisablehook is hooked_before  # the hook is put back
