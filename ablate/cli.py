"""Command-line entry point: ``python -m ablate <command>``.

Each command lives in ``ablate/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Only the command being run is imported (all
of them for ``--help``), so a light command (``leaderboard``) never loads torch. Errors that are the user's
(:class:`ablate.errors.AblateError`) print as one paragraph, no traceback, exit 2; messages
are plain text, never read as rich markup (they quote user input such as ``[/<sampler>]``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from rich.console import Console
from rich.text import Text

from ablate import __version__
from ablate.errors import AblateError

COMMANDS = ("run", "leaderboard", "status", "prepare", "score", "bench", "scale", "search", "metrics")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors look like every other user error: one paragraph, ``error:`` first, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}. See `{self.prog} --help` for what is allowed.\n")


MAX_MESSAGE = 4000  # characters of an error paragraph; the values in it are shortened where they are quoted


def bounded(message: str) -> str:
    """``message``, its middle left out if it is longer than :data:`MAX_MESSAGE` (a safety net: a value quoted
    whole somewhere must not flood the console)."""
    if len(message) <= MAX_MESSAGE:
        return message
    left = len(message) - MAX_MESSAGE
    return f"{message[: MAX_MESSAGE // 2]} ... ({left:,} characters left out) ... {message[-MAX_MESSAGE // 2:]}"


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or with only the command ``only``."""
    parser = Parser(
        prog="python -m ablate",
        description="Ablation benchmark suite for diffusion formulations (SD3, section 5.1).",
    )
    parser.add_argument("--version", action="version", version=f"ablate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f"ablate.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(next((w for w in words if not w.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    err_console = Console(stderr=True, soft_wrap=True)  # a path in a message is never broken across lines
    try:
        return int(args.func(args) or 0)
    except AblateError as err:
        err_console.print(Text.assemble(("error:", "bold red"), " ", bounded(str(err))), highlight=False)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, or a signal turned into one by ablate.runs.signals
        import signal

        from ablate.runs.signals import describe, received

        signum = received() or signal.SIGINT
        err_console.print(
            f"[bold yellow]interrupted:[/] stopped by {describe(signum)}. Finished results are kept; "
            "rerun the same command to continue where it stopped."
        )
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
