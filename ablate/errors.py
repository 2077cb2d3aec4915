"""Errors meant for a person: one paragraph naming the file, key or value and what is allowed.

The CLI prints any :class:`AblateError` as its message alone (no traceback) and exits 2.
"""

from __future__ import annotations


class AblateError(Exception):
    """Base class: the message is a complete sentence for the user."""


class VariantError(AblateError, ValueError):
    """A variant, trajectory or timestep-sampler name that does not parse or is out of range."""


class ConfigError(AblateError, ValueError):
    """A grid file or command-line override that is malformed or names an unknown key/value."""


class DatasetNotFoundError(AblateError, FileNotFoundError):
    """A dataset (or its files) that cannot be found locally nor downloaded."""


class ScorerUnavailableError(AblateError, RuntimeError):
    """A scorer whose weights or reference data are missing; says which file and where to put it."""


class ResultsError(AblateError, OSError):
    """A results directory that cannot be written or holds something unexpected."""



SHORT = 120  # characters of a user's value quoted in a message


def shorten(value: object, limit: int = SHORT) -> str:
    """``repr(value)``, bounded: a long string keeps its start and end and says how long it was, a long list
    or mapping its first items, so that a message quoting a user's value stays one readable paragraph (a
    10 MB string is never echoed whole)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 8, 8, 8, 8
    short.maxstring = short.maxother = limit
    text = short.repr(value)
    if isinstance(value, str) and len(value) > limit:
        text += f" ({len(value):,} characters)"
    return text
