"""A worker's host time under cProfile, on request (issue 25: say what limits a run, measured with a profile).

``ABLATE_PROFILE=DIR`` makes every worker process of ``run``, ``scale`` and ``search`` profile itself and write
``DIR/<worker>.prof`` (``pstats``) and ``DIR/<worker>.txt`` (the functions of most cumulative time) when it ends,
signals included. cProfile slows Python-bound code, so read it for where the host's time goes (checkpoint writes,
validation, the Lightning loop), not for a run's speed. Unset: nothing is profiled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ablate.env import env_path

PROFILE_ENV = "ABLATE_PROFILE"
TOP = 80  # functions in the text summary


@contextmanager
def host_profile(name: str) -> Iterator[None]:
    """Profile the block when ``ABLATE_PROFILE`` names a folder (module doc), writing ``<name>.prof`` and ``.txt``."""
    out = env_path(PROFILE_ENV, None, what="the folder for each worker's host profile")
    if out is None:
        yield
        return
    import cProfile
    import io
    import pstats

    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        out.mkdir(parents=True, exist_ok=True)
        profile.dump_stats(out / f"{name}.prof")
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(TOP)
        (out / f"{name}.txt").write_text(text.getvalue())
