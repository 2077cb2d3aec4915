"""The smoke grid alone and next to one CPU-bound process: how much a busy machine costs a run.

Times ``python -m ablate run grids/smoke.yaml`` (every cell: train, sample, score; fresh results each
time, a shared warm scorer cache) once on an otherwise idle machine and once with a competing busy
loop (one process spinning on one core), and prints both wall-clock times and their ratio for each
thread configuration asked for. On 2 cores a fair share is 2x (the busy loop takes one of them).

Configurations (``--config``, repeatable): ``policy`` (ablate's own, see ablate/threads.py),
``one-thread`` (OMP_NUM_THREADS=1), ``spin`` (OpenMP's default: idle threads spin ~3 ms before they
sleep, GOMP_SPINCOUNT=300000), ``active`` (OMP_WAIT_POLICY=ACTIVE: idle threads spin). ``--variants``,
``--max-steps`` and ``--num-samples`` shrink the grid for a quick check; ``--workers`` passes through;
``--repeat N`` keeps the fastest of N runs (on a machine that other people use too).

    python benchmarks/contention.py                                 # the full smoke grid, ablate's policy
    python benchmarks/contention.py --variants 2 --max-steps 200 --config policy --config spin
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "grids" / "smoke.yaml"
CONFIGS = {"policy": {}, "one-thread": {"OMP_NUM_THREADS": "1"}, "spin": {"GOMP_SPINCOUNT": "300000"},
           "active": {"OMP_WAIT_POLICY": "ACTIVE"}}
BUSY = "while True: pass"


def smoke_variants() -> list[str]:
    import yaml

    return list(yaml.safe_load(SMOKE.read_text())["variants"])


def run_grid(results: Path, args: argparse.Namespace, env: dict[str, str], variants: list[str]) -> float:
    """Wall-clock seconds of one ``ablate run`` into a fresh results directory."""
    command = [sys.executable, "-m", "ablate", "run", str(SMOKE), "--results", str(results), "--no-leaderboard",
               "--cache-dir", str(args.cache_dir), *[f"--variant={v}" for v in variants]]
    for flag in ("max_steps", "num_samples", "workers"):
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or " failed" in proc.stdout:
        print(f"ablate run failed (exit {proc.returncode}), not counted:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}",
              file=sys.stderr)
        return float("nan")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS), help="thread configuration(s)")
    parser.add_argument("--variants", type=int, help="only the first N variants of the smoke grid")
    parser.add_argument("--max-steps", type=int, help="training steps per cell (default: the grid's)")
    parser.add_argument("--num-samples", type=int, help="samples per setting (default: the grid's)")
    parser.add_argument("--workers", type=int, help="worker processes (default: a plain run)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, the fastest counts (noise)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "cache", help="scorer cache, kept warm")
    args = parser.parse_args()
    variants = smoke_variants()[: args.variants] if args.variants else []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    base.update(HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="contention-") as tmp:
        warm = argparse.Namespace(**{**vars(args), "max_steps": 2, "num_samples": 8, "workers": None})
        run_grid(Path(tmp) / "warm-up", warm, base, smoke_variants()[:1])  # scorer cache, file cache: untimed
        rows = []
        for name in args.config or ["policy"]:
            env = {**base, **CONFIGS[name]}
            alone, contended = float("inf"), float("inf")
            for i in range(args.repeat):  # alternate, so that slow drifts in background load hit both
                alone = min(alone, run_grid(Path(tmp) / f"{name}-alone-{i}", args, env, variants))
                busy = subprocess.Popen([sys.executable, "-c", BUSY])
                try:
                    contended = min(contended, run_grid(Path(tmp) / f"{name}-busy-{i}", args, env, variants))
                finally:
                    busy.kill()
                    busy.wait()
            rows.append((name, alone, contended))  # min() skips a failed run (NaN); all failed: inf
    cells = len(variants) or len(smoke_variants())
    table = Table(title=f"smoke grid, {cells} cells, max_steps {args.max_steps or 'grid'}, num_samples "
                        f"{args.num_samples or 'grid'}, {f'{args.workers} workers' if args.workers else 'plain run'}, "
                        f"{len(os.sched_getaffinity(0))} CPUs, fastest of {args.repeat}")
    for column in ("threads", "alone (s)", "with 1 busy process (s)", "ratio"):
        table.add_column(column, justify="left" if column == "threads" else "right")
    for name, alone, contended in rows:
        ok = math.isfinite(alone) and math.isfinite(contended)
        table.add_row(name, f"{alone:.1f}", f"{contended:.1f}", f"{contended / alone:.2f}x" if ok else "failed")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
