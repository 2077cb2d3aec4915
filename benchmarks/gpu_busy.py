"""Run a command while sampling how busy each GPU is; print a table of the averages.

    python benchmarks/gpu_busy.py [--interval-ms 200] [--mark REGEX] [--json FILE] -- python -m ablate run ...

Busy is nvidia-smi's ``utilization.gpu``: the percent of each sample period in which at least one
kernel ran (it says nothing of how full the kernels kept the chip: MFU does that). The first
average is over the whole command, start-up included. With ``--mark REGEX`` a second average
starts at the first line of the command's output that matches (e.g. ``'^\\[1/'``, the end of a
grid's first cell): the steady state, after the once-per-process costs (imports, data, scorer
set-up, compiling). Exits with the command's exit code.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time


def sample(interval_ms: int, out: list[tuple[float, list[float]]], stop: threading.Event) -> None:
    proc = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                             f"-lms={interval_ms}"], stdout=subprocess.PIPE, text=True)
    rows: list[float] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        util = float(line.split(",")[0])
        rows.append(util)
        if len(rows) == gpu_count():
            out.append((time.time(), rows))
            rows = []
        if stop.is_set():
            break
    proc.terminate()


_COUNT: list[int] = []


def gpu_count() -> int:
    if not _COUNT:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        _COUNT.append(max(1, sum(1 for line in listing.splitlines() if line.startswith("GPU "))))
    return _COUNT[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval-ms", type=int, default=200)
    parser.add_argument("--json", default=None)
    parser.add_argument("--mark", default=None, help="regex: also average from the first output line matching it")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    samples: list[tuple[float, list[float]]] = []
    stop = threading.Event()
    thread = threading.Thread(target=sample, args=(args.interval_ms, samples, stop), daemon=True)
    thread.start()
    start = time.time()
    mark_at = None
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(line)
        if args.mark and mark_at is None and re.search(args.mark, line):
            mark_at = time.time()
    code = child.wait()
    wall = time.time() - start
    stop.set()
    thread.join(timeout=2)
    n = gpu_count()
    def mean(rows: list[tuple[float, list[float]]]) -> list[float]:
        return [sum(r[1][g] for r in rows) / max(len(rows), 1) for g in range(n)]

    means = mean(samples)
    steady = mean([r for r in samples if mark_at is not None and r[0] >= mark_at])
    print(f"\nGPU busy over {wall:.0f} s of `{' '.join(command)[:80]}` ({len(samples)} samples, every "
          f"{args.interval_ms} ms, nvidia-smi utilization.gpu):")
    after = f" | busy % after the mark ({wall - (mark_at - start):.0f} s) |" if mark_at else " |"
    print("| GPU | busy % (whole run)" + after + "\n|---|---|" + ("---|" if mark_at else ""))
    for g in range(n):
        print(f"| {g} | {means[g]:.1f} |" + (f" {steady[g]:.1f} |" if mark_at else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": command, "wall_s": wall, "busy_percent": means, "samples": len(samples),
                       "mark": args.mark, "mark_s": None if mark_at is None else mark_at - start,
                       "busy_percent_after_mark": steady if mark_at else None,
                       "exit_code": code}, fh, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main())
