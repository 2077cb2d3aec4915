"""Atomic file writes for the whole package: a reader sees the old file or the whole new one, never a part.

Bytes go to a temp file in the same directory, are fsynced, then ``os.replace``d over the target
(:func:`atomic_file`; checkpoints are written through it too); the directory is created if missing.
A killed writer may leave a temp file ``.<name>.<random>.tmp``, never a partial ``<name>``. Failures
raise :class:`ablate.errors.ResultsError` (an ``OSError``) naming the directory. No heavy imports, so
every layer may use it.

Fencing: inside :func:`fenced` (a queue worker running a cell it claimed, :mod:`ablate.runs.claims`),
every atomic write calls the fence's check right before its rename, and :func:`check_fence` lets other
code ask too: a check raises once the claim was taken over, so the write never lands (its temp file is
removed) and the worker stops the cell.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from ablate.errors import ResultsError
from ablate.faults import full_disk, pause_at

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: temp files are created 0600, the written file gets 0666 & ~umask
_FENCES: list[Callable[[Path], None]] = []


@contextmanager
def fenced(check: Callable[[Path], None]) -> Iterator[None]:
    """Within the block, ``check(path)`` runs before every atomic write lands (and at :func:`check_fence`);
    it raises to stop the write (see the module doc)."""
    _FENCES.append(check)
    try:
        yield
    finally:
        _FENCES.remove(check)


def check_fence(path: Path) -> None:
    """Run the checks of the :func:`fenced` blocks around this call (none outside them) for ``path``."""
    for check in list(_FENCES):
        check(Path(path))


# ---------------------------------------------------------------------------------- atomic writes

@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through, so that readers see the old file or the whole new one.

    What the block writes goes to a temp file in the same directory (created if missing); when the
    block ends it is fsynced and ``os.replace``d over ``path``; if the block raises, the temp file is
    removed and ``path`` is untouched. Raises :class:`ResultsError` naming the directory when it
    cannot be created or written (e.g. a full disk).
    """
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ResultsError(write_failure(path, err) or (
            f"Cannot write {path.name!r} into the directory {str(directory)!r}: {err.strerror or err}. "
            "Check that the directory (or its parent) exists, is writable and has free space, "
            "or choose another location.")
        ) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            yield full_disk(fh, str(path))
            fh.flush()
            os.fsync(fh.fileno())
        pause_at("write", str(path))
        check_fence(path)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, ResultsError):
            raise
        if isinstance(err, OSError) or disk_full(err) is not None:  # torch.save reports ENOSPC as "unexpected pos"
            raise ResultsError(write_failure(path, err) or (
                f"Cannot write {path.name!r} into the directory {str(directory)!r}: "
                f"{getattr(err, 'strerror', None) or err}. Check that it is writable and has free space.")
            ) from err
        raise
    _fsync_dir(directory)


DISK_FULL = "disk full at"  # how a full disk reads in every message (a cell's failure reason, the console)


def disk_full(err: BaseException) -> OSError | None:
    """The out-of-space ``OSError`` (ENOSPC, EDQUOT) behind ``err``, following its causes and contexts: torch.save
    turns a full disk into "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos" with the
    ``OSError`` as its context. None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return current
        current = current.__cause__ or current.__context__
    return None


def write_failure(path: Path | str | None, err: BaseException) -> str | None:
    """The sentence for a write that failed because the disk is full (``disk full at PATH``), else None."""
    full = disk_full(err)
    if full is None:
        return None
    where = path or full.filename or "an unknown path"
    return (f"{DISK_FULL} {where} ({full.strerror or 'no space left on device'}). Free space there (or point --results "
            "or --cache-dir at another disk) and run the same command again: finished results are kept.")


def failure_reason(err: BaseException) -> str:
    """One line for a failed cell: ``disk full at PATH ...`` when the disk filled, else ``Type: message``."""
    if not isinstance(err, ResultsError):
        full = write_failure(None, err)
        if full is not None:
            return full
    return f"{type(err).__name__}: {err}"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON (keys in insertion order), atomically.

    numpy scalars/arrays, torch scalars and paths are converted; NaN/inf are kept (see module doc).
    """
    try:
        text = json.dumps(obj, indent=1, default=_json_default, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise ResultsError(
            f"Cannot write {str(path)!r}: the record is not JSON-serialisable ({err}). "
            "Records may hold numbers, strings, booleans, None, lists and dicts (numpy/torch "
            "scalars and arrays are converted)."
        ) from err
    write_text_atomic(path, text + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays/scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
