"""Command-line entry point: ``python -m ablate <command>``.

Each command lives in ``ablate/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``func(args) -> int``. Errors that are the user's
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

COMMANDS = ("run", "leaderboard", "status", "prepare", "score", "bench")


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors look like every other user error: one paragraph, ``error:`` first, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}. See `{self.prog} --help` for what is allowed.\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m ablate",
        description="Ablation benchmark suite for diffusion formulations (SD3, section 5.1).",
    )
    parser.add_argument("--version", action="version", version=f"ablate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"ablate.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    err_console = Console(stderr=True)
    try:
        return int(args.func(args) or 0)
    except AblateError as err:
        err_console.print(Text.assemble(("error:", "bold red"), " ", str(err)), highlight=False)
        return 2
    except KeyboardInterrupt:
        err_console.print(
            "[bold yellow]interrupted:[/] stopped by Ctrl-C. Finished results are kept; "
            "rerun the same command to continue where it stopped."
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
