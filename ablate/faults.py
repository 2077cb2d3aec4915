"""Fault injection for tests, read from the environment in this one place.

``ABLATE_TEST_PAUSE_AT=POINT`` or ``POINT:PATTERN`` makes the first process that reaches the point
write its pid to the file ``ABLATE_TEST_PAUSE_FILE`` and sleep there, so that a test can kill or
signal it at that moment. Points: ``claim`` (a worker claimed a cell, whose trial is RUNNING, and
has not sent its first heartbeat) and ``write`` (a file whose path matches PATTERN, e.g.
``write:*/records/*.json``, is written and fsynced under a temporary name, not yet renamed into
place). Other processes, and every process without the variables, pass through at no cost. The
paused process goes on once a file named like the marker plus ``.release`` exists (so a test can
SIGSTOP it there, release it, and SIGCONT it later); no other process pauses at that point after it.

``ABLATE_TEST_DISK_FULL=PATTERN`` makes every atomic write (:mod:`ablate.io`) of a path matching PATTERN fail as
on a disk that fills during the write: after the first write the file's ``write`` raises ``OSError(ENOSPC)``
(which torch.save reports as "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos").
"""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import time
from typing import BinaryIO

from ablate.env import env_text, refuse


POINTS = ("claim", "write")


def pause_spec() -> tuple[str, str, str] | None:
    """(point, pattern, marker file) from ``ABLATE_TEST_PAUSE_AT`` and ``ABLATE_TEST_PAUSE_FILE``, or None when
    unset; a point that does not exist, or no marker file, is refused with one paragraph naming the variable."""
    spec = env_text("ABLATE_TEST_PAUSE_AT")
    if spec is None:
        return None
    name, _, pattern = spec.partition(":")
    if name not in POINTS:
        raise refuse("ABLATE_TEST_PAUSE_AT", spec, f"a fault-injection point for tests, POINT or POINT:PATTERN with "
                                                   f"POINT one of {', '.join(POINTS)}")
    marker = env_text("ABLATE_TEST_PAUSE_FILE")
    if not marker or not marker.strip():
        raise refuse("ABLATE_TEST_PAUSE_FILE", marker or "", "the file a paused process writes its pid to, a path "
                                                             "(required while ABLATE_TEST_PAUSE_AT is set)")
    return name, pattern, marker


def pause_at(point: str, subject: str = "") -> None:
    """Sleep here until released if ``ABLATE_TEST_PAUSE_AT`` names this point and no process paused yet."""
    if "ABLATE_TEST_PAUSE_AT" not in os.environ:
        return
    spec = pause_spec()
    assert spec is not None
    name, pattern, marker = spec
    if name != point or (pattern and not fnmatch.fnmatch(subject, pattern)):
        return
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


def full_disk(fh: BinaryIO, path: str) -> BinaryIO:
    """The file to write ``path`` through: ``fh``, or, while ``ABLATE_TEST_DISK_FULL`` is a pattern matching
    ``path`` (``*/checkpoints/*.ckpt``), a file whose every write fails as on a full disk (ENOSPC)."""
    pattern = env_text("ABLATE_TEST_DISK_FULL")
    if pattern is None or not fnmatch.fnmatch(path, pattern):
        return fh
    return _FullDisk()  # type: ignore[return-value]


class _FullDisk(io.RawIOBase):
    """A disk that fills during the write: the first write goes through, every later one raises ENOSPC."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)
