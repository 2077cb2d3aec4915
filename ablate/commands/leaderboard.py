"""``python -m ablate leaderboard``: rank the variants of each grid's results (paper Table 1).

The .md and .png go under the results directory (``<results>/<grid>/leaderboard/``) unless ``--out DIR``
says otherwise: a run with a scratch ``--results`` never overwrites the repository's published
``leaderboard/`` (the nox smoke session writes there with an explicit ``--out leaderboard``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ablate.errors import AblateError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="rank variants (Table 1), Table 2, validation loss and a fidelity-vs-steps plot",
        description=(
            "Rank the variants of a grid by repeated non-dominated sorting per control setting "
            "(alignment up, fidelity down), averaged over settings as in the paper's Table 1. "
            "Prints the tables and writes <out>/<grid>.md and <out>/<grid>-fidelity-vs-steps.png, "
            "<out> being <results>/<grid>/leaderboard unless --out is given."
        ),
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--grid", default=None, help="grid name (default: every grid found, one after another)")
    p.add_argument("--storage", metavar="URL", default=None,
                   help="read the records from this Optuna storage (as `run --storage URL` left them) instead of "
                        "--results; needs --grid")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                   help="console output: rich tables, markdown, or CSV of Table 1 (default: table)")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write .md and .png (default: <results>/<grid>/leaderboard, beside the grid's results)")
    p.add_argument("--alignment", default=None, metavar="METRIC",
                   help="alignment metric, higher is better (default: first present of clip, align_probe)")
    p.add_argument("--fidelity", default=None, metavar="METRIC",
                   help="fidelity metric, lower is better (default: first present of fid_clip, fd_probe)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablate.leaderboard import build_leaderboard, render_console, render_markdown, table1_csv, write_outputs
    from ablate.results import grids_in, load_records

    results: Path = args.results
    if args.storage and not args.grid:
        raise AblateError(f"--storage {args.storage!r} needs --grid NAME: a storage can hold several grids' studies.")
    grids = [args.grid] if args.grid else grids_in(results) if results.is_dir() else []
    if not grids:
        raise AblateError(
            f"No results found in {str(results)!r}: it has no result records "
            "(<grid>/<dataset>/<variant>/seed<k>/records/*.json). Make some with "
            "`python -m ablate run grids/smoke.yaml`, or point --results at the directory that holds them."
        )
    console = Console()
    err = Console(stderr=True)
    csv_parts: list[str] = []
    for grid in grids:
        if args.storage:
            frame = records_from_storage(args.storage, grid)
        else:
            frame = load_records(results, grid)
        if frame.empty and args.storage:
            raise AblateError(f"No complete cells of grid {grid!r} in the storage {args.storage!r}; "
                              f"see `python -m ablate status {grid} --storage {args.storage}`.")
        if frame.empty:
            raise AblateError(
                f"No result records for grid {grid!r} in {str(results / grid)!r}. Grids with results "
                f"there: {', '.join(grids_in(results)) or 'none'}. Make results with "
                f"`python -m ablate run grids/{grid}.yaml`."
            )
        lb = build_leaderboard(frame, grid, alignment=args.alignment, fidelity=args.fidelity)
        written = write_outputs(lb, args.out if args.out is not None else results / grid / "leaderboard")
        if args.format == "table":
            render_console(lb, console)
        elif args.format == "markdown":
            sys.stdout.write(render_markdown(lb, figure=written[1].name) + "\n")
        else:
            text = table1_csv(lb)
            csv_parts.append(text if not csv_parts else text.split("\n", 1)[1])
        err.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False, markup=False, style="dim")
    if csv_parts:
        sys.stdout.write("".join(csv_parts))
    return 0


def records_from_storage(url: str, grid_name: str) -> Any:
    """The result records stored in the study's complete trials, as :func:`ablate.results.load_records` gives
    them from files (``path`` is ``<url>#trial<n>``)."""
    import optuna
    import pandas as pd
    from optuna.trial import TrialState

    from ablate.results import SCALAR_KEYS, _flatten
    from ablate.storage import open_storage

    try:
        study = optuna.load_study(study_name=grid_name, storage=open_storage(url, heartbeat=False))
    except KeyError:
        raise AblateError(f"The storage {url!r} holds no study of grid {grid_name!r}; run the grid there with "
                          f"`python -m ablate run GRID --storage {url}`.") from None
    rows = [_flatten(value, f"{url}#trial{t.number}")  # type: ignore[arg-type]  # only str()-ed
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            for key, value in sorted(t.user_attrs.items()) if key.startswith("record:")]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(SCALAR_KEYS))
    for key in SCALAR_KEYS:
        if key not in frame:
            frame[key] = None
    return frame
