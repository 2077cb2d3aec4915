"""``python -m ablate leaderboard``: rank the variants of each grid's results (paper Table 1).

Each shown metric's validity verdict comes from ``validity-<dataset>.json`` (``python -m ablate metrics check``),
looked for in ``<results>/validity/``, the output folder, then ``./leaderboard/`` (the published copy).

The .md and .png go under the results directory (``<results>/<grid>/leaderboard/``) unless ``--out DIR``
says otherwise: a run with a scratch ``--results`` never overwrites the repository's published
``leaderboard/`` (the nox smoke session writes there with an explicit ``--out leaderboard``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from ablate.errors import AblateError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "leaderboard",
        help="rank variants (Table 1), Table 2, validation loss and a fidelity-vs-steps plot",
        description=(
            "Rank the variants of a grid by repeated non-dominated sorting per control setting "
            "(alignment up, fidelity down), averaged over settings as in the paper's Table 1. "
            "Prints the tables and writes <out>/<grid>.md, <out>/<grid>-fidelity-vs-steps.png, "
            "<out>/<grid>-ranks.png and (where sample previews exist) <out>/<grid>-samples.png, "
            "<out> being <results>/<grid>/leaderboard unless --out is given."
        ),
    )
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default: results)")
    p.add_argument("--grid", default=None, help="grid name (default: every grid found, one after another)")
    p.add_argument("--storage", metavar="URL", default=None,
                   help="not supported: records are read from --results only (a storage holds no records)")
    p.add_argument("--format", choices=("table", "markdown", "csv"), default="table",
                   help="console output: rich tables, markdown, or CSV of Table 1 (default: table)")
    p.add_argument("--out", default=None,
                   help="where to write .md and .png (default: <results>/<grid>/leaderboard, beside the grid's results)")
    p.add_argument("--alignment", default=None, metavar="METRIC",
                   help="alignment metric (default: first present of clip, ckid_effnet, align_probe)")
    p.add_argument("--fidelity", default=None, metavar="METRIC",
                   help="fidelity metric (default: first present of fid_clip, kid_effnet, fd_probe)")
    p.add_argument("--replicates", type=int, default=1000, metavar="N",
                   help="bootstrap replicates for Figure 3's test (default: 1000; fewer is faster and coarser; the "
                        "rank and metric intervals are t-intervals over seeds and need none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ablate.results import ResultsStore

    results: Path = args.results
    if args.replicates < 1:
        raise AblateError(f"--replicates {args.replicates} is not allowed: the bootstrap of Figure 3's test needs at least "
                          "1 replicate (1000, the default, for its 95% interval).")
    if args.storage:
        raise AblateError(f"leaderboard --storage {args.storage!r}: records are read from the results directory "
                          "(--results DIR, default results), not from an Optuna storage, which holds no records. "
                          "Gather the workers' results directories into one and pass it with --results.")
    store = ResultsStore(results)
    grids = [args.grid] if args.grid else store.grids() if results.is_dir() else []
    if not grids:
        raise AblateError(
            f"No results found in {str(results)!r}: it has no result records "
            "(<grid>/<dataset>/<variant>/seed<k>/records/*.json). Make some with "
            "`python -m ablate run grids/smoke.yaml`, or point --results at the directory that holds them."
        )
    return show(results, grids, out=args.out, fmt=args.format, alignment=args.alignment, fidelity=args.fidelity,
                replicates=args.replicates)


def run_command(grid: str, results: Path) -> str:
    """The command that makes a grid's results, naming its shipped file only where one exists."""
    from ablate.config.grid import GRIDS_DIR

    shipped = GRIDS_DIR / f"{grid}.yaml"
    file = f"grids/{grid}.yaml" if shipped.is_file() else "GRID_FILE"
    where = "" if Path(results) == Path("results") else f" --results {results}"
    return f"`python -m ablate run {file}{where}`" + ("" if shipped.is_file() else f" (the grid file named {grid!r})")


def show(results: Path, grids: list[str], out: Path | None = None, fmt: str = "table", alignment: str | None = None,
         fidelity: str | None = None, replicates: int = 1000) -> int:
    """Build, print and write the leaderboard of each grid from the records under ``results``; ``out``
    defaults to ``<results>/<grid>/leaderboard``."""
    from ablate.report import backbones
    from ablate.report.leaderboard import build_leaderboard, render_console, render_markdown_for, table1_csv, write_outputs
    from ablate import store_audit
    from ablate.outputs import report_dir
    from ablate.results import ResultsStore

    store = ResultsStore(results)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide enough that the tables keep their columns
        console = Console(width=max(console.width, 200))
    err = Console(stderr=True)
    csv_parts: list[str] = []
    for grid in grids:
        found = store_audit.problems(store, grid)
        if found:
            raise store_audit.refusal(found, results, grid)
        frame = store.frame(grid)
        if frame.empty:
            raise AblateError(
                f"No result records for grid {grid!r} in {str(results / grid)!r}. Grids with results "
                f"there: {', '.join(store.grids()) or 'none'}. Make results with {run_command(grid, results)}."
            )
        axis = backbones.has_backbones(frame)  # rank (variant @ backbone) pairs, then within each backbone
        out_dir = report_dir(results / grid, out)
        lb = build_leaderboard(backbones.label_variants(frame) if axis else frame, grid, alignment=alignment,
                               fidelity=fidelity, replicates=replicates,
                               validity_dirs=(results / "validity", out_dir, Path("leaderboard")),
                               flags=store_audit.missing_settings(store, grid))
        if axis:
            lb.appendix = backbones.section(frame, grid, lb.alignment, lb.fidelity, out_dir)
        written = write_outputs(lb, out_dir)
        if fmt == "table":
            render_console(lb, console)
        elif fmt == "markdown":
            sys.stdout.write(render_markdown_for(lb, written) + "\n")
        else:
            text = table1_csv(lb)
            csv_parts.append(text if not csv_parts else text.split("\n", 1)[1])
        err.print(f"wrote {', '.join(str(p) for p in written)}", highlight=False, markup=False, style="dim")
    if csv_parts:
        sys.stdout.write("".join(csv_parts))
    return 0
