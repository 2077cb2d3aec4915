"""The ``ABLATE_*`` environment variables, each read through one validating helper.

Every reader returns the variable's value, or its default when it is unset; an unusable value (a
number that is not one, out of range, an empty or whitespace-only path) is one
:class:`~ablate.errors.ConfigError` paragraph naming the variable, the value and what is allowed,
raised when the value is read (before anything is written). A variable set to the empty string is
not "unset": it is refused, since it is usually an unset shell variable expanded by mistake.
No heavy imports: every layer may use it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ablate.errors import ConfigError, shorten


def refuse(name: str, text: str, allowed: str) -> ConfigError:
    """The error for variable ``name`` set to ``text``: ``allowed`` says what it may be (for checks of one's own)."""
    return ConfigError(f"Environment variable {name}={shorten(text)} is not allowed: {allowed}. Set it to such a "
                       f"value, or unset it (`unset {name}`) for the default.")


def env_text(name: str) -> str | None:
    """The variable's raw value, or None when it is unset."""
    return os.environ.get(name)


def env_number(name: str, default: float, *, what: str, minimum: float | None = None, above: float | None = None,
               integer: bool = False) -> float:
    """A number from ``name`` (``default`` when unset): finite, ``>= minimum`` and ``> above`` where given,
    a whole number when ``integer``. ``what`` says what the number is, for the error (``seconds between two
    checkpoints of a cell``)."""
    text = env_text(name)
    if text is None:
        return default
    bounds = ([f">= {minimum:g}"] if minimum is not None else []) + ([f"> {above:g}"] if above is not None else [])
    kind = "a whole number" if integer else "a number"
    allowed = f"{what}, {kind}{' ' + ' and '.join(bounds) if bounds else ''} (default {default:g})"
    try:
        value = float(text.strip())
    except ValueError:
        raise refuse(name, text, allowed) from None
    if (not math.isfinite(value) or (integer and not value.is_integer())
            or (minimum is not None and value < minimum) or (above is not None and value <= above)):
        raise refuse(name, text, allowed)
    return int(value) if integer else value


def env_path(name: str, default: Path | None, *, what: str) -> Path | None:
    """A directory path from ``name`` (``default`` when unset; ``~`` expanded); an empty or blank value is refused."""
    text = env_text(name)
    if text is None:
        return default
    if not text.strip() or "\x00" in text:
        raise refuse(name, text, f"{what}, a directory path (not empty)")
    return Path(text).expanduser()


def env_choice(name: str, choices: tuple[str, ...], *, what: str) -> str | None:
    """One of ``choices`` from ``name`` (None when unset); anything else is refused, naming the choices."""
    text = env_text(name)
    if text is None:
        return None
    if text not in choices:
        raise refuse(name, text, f"{what}, one of {', '.join(repr(c) for c in choices)}")
    return text


def env_commit(name: str) -> str | None:
    """A git commit (40 hex digits, lower case) from ``name``, or None when it is unset."""
    text = env_text(name)
    if text is None:
        return None
    commit = text.strip().lower()
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise refuse(name, text, "the full 40-hex-digit commit of the code that runs (`git rev-parse HEAD`)")
    return commit
