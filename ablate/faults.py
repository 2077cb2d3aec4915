"""Fault injection for tests, read from the environment in this one place.

``ABLATE_TEST_PAUSE_AT=POINT`` or ``POINT:PATTERN`` makes the first process that reaches the point
write its pid to the file ``ABLATE_TEST_PAUSE_FILE`` and sleep there, so that a test can kill or
signal it at that moment. Points: ``claim`` (a worker claimed a cell, whose trial is RUNNING, and
has not sent its first heartbeat) and ``write`` (a file whose path matches PATTERN, e.g.
``write:*/records/*.json``, is written and fsynced under a temporary name, not yet renamed into
place). Other processes, and every process without the variables, pass through at no cost. The
paused process goes on once a file named like the marker plus ``.release`` exists (so a test can
SIGSTOP it there, release it, and SIGCONT it later); no other process pauses at that point after it.
"""

from __future__ import annotations

import fnmatch
import os
import time


def pause_at(point: str, subject: str = "") -> None:
    """Sleep here until released if ``ABLATE_TEST_PAUSE_AT`` names this point and no process paused yet."""
    spec = os.environ.get("ABLATE_TEST_PAUSE_AT")
    if not spec:
        return
    name, _, pattern = spec.partition(":")
    if name != point or (pattern and not fnmatch.fnmatch(subject, pattern)):
        return
    marker = os.environ["ABLATE_TEST_PAUSE_FILE"]
    try:
        fd = os.open(marker + ".tmp-" + str(os.getpid()), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.link(marker + ".tmp-" + str(os.getpid()), marker)  # the first process to link pauses
    except FileExistsError:
        return
    finally:
        try:
            os.unlink(marker + ".tmp-" + str(os.getpid()))
        except OSError:
            pass
    while not os.path.exists(marker + ".release"):
        time.sleep(0.1)
