"""benchmarks/gpu-runs/chunk.sh, the device calls' driver, run here with stand-ins for nvidia-smi (four
GPUs, and a `dmon` that never ends, as the real one) and python3 (prints its arguments): the jobs of a
step joined by "+" start together, one step follows another, the scaling shards are dealt over the GPUs,
a second round of shards (the extrapolation cells) and then the report run once every shard is done, and the call ends although the dmon is still running."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

NVIDIA_SMI = """#!/bin/bash
case "$1" in -L) for i in 0 1 2 3; do echo "GPU $i: NVIDIA H200 (UUID: GPU-$i)"; done ;; dmon) exec sleep 600 ;; *) echo stub ;; esac
"""
PYTHON3 = """#!/bin/bash
[ "$1" = -c ] && { echo torch stub; exit 0; }
case "$*" in *"pip install"*) exit 0 ;; esac
echo "$(date +%s.%N) CVD=${CUDA_VISIBLE_DEVICES:-all} $*"; sleep 2
case "$*" in *" run "*) mkdir -p "$CHUNK_TMP/results/ran"; echo done > "$CHUNK_TMP/results/ran/done.json"
  touch "$CHUNK_TMP/results/cache/reference.npz" ;; esac  # a run writes into the cache too
case "$*" in *--shard*) echo "shard: 1 grids done" ;; esac
"""


def test_steps_jobs_shards_and_the_end_of_a_call(tmp_path: Path) -> None:
    bin_dir, out, scratch = tmp_path / "bin", tmp_path / "out", tmp_path / "scratch"
    for d in (bin_dir, out, scratch):
        d.mkdir()
    for grid in ("cache", "untouched"):  # a warm machine's results: published grids the call leaves alone
        (scratch / "results" / grid).mkdir(parents=True)
        (scratch / "results" / grid / "done.json").write_text("{}")
    for name, text in (("nvidia-smi", NVIDIA_SMI), ("python3", PYTHON3)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "CHUNK_TMP": str(scratch),
           "DEADLINE": "300", "PER_GPU": "3", "SCALE_WORKERS": "2"}
    start = time.monotonic()
    done = subprocess.run(["bash", "benchmarks/gpu-runs/chunk.sh", "grid+scaling+search", "search"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - start < 60  # not waiting on the dmon (600 s)

    def started(log: str) -> list[tuple[float, str]]:
        return [(float(line.split()[1]), line) for line in (out / log).read_text().splitlines() if " CVD=" in line]

    log = (out / "chunk.log").read_text()
    assert log.splitlines()[0] == "4 GPUs" and "grid+scaling+search ended" in log and "search ended" in log
    (grid,) = started("run.log")
    assert "--workers 12 --workers-per-gpu 3" in grid[1]
    shards = [started(f"shard{k}.log")[0] for k in range(1, 17)]
    assert [line.split()[2] for _, line in shards] == [f"CVD={(k - 1) % 4}" for k in range(1, 17)]
    assert all(f"--shard {k}/16 --workers-per-gpu 2" in line for k, (_, line) in enumerate(shards, 1))
    second = [started(f"shard{k}b.log")[0] for k in range(1, 17)]
    assert all(f"--shard {k}/16" in line for k, (_, line) in enumerate(second, 1))
    assert min(t for t, _ in second) > max(t for t, _ in shards)  # the second round waits for the whole first
    report = started("report.log")
    assert len(report) == 1 and "--shard" not in report[0][1] and report[0][0] > max(t for t, _ in second)
    assert "--workers-per-gpu 2" in report[0][1]
    (search,) = started("search.log")  # each step rewrites the log: the second step's run
    assert "--workers 16" in search[1] and search[0] > report[0][0]  # the second step starts after the first
    assert abs(grid[0] - shards[0][0]) < 1.5  # the first step's jobs start together (one after another: >= 2 s)
    with tarfile.open(out / "results.tgz") as tgz:  # only the grids the call changed (a file comes back <= 16 MiB)
        assert "results/ran/done.json" in tgz.getnames()
        assert not any(name.startswith(("results/untouched", "results/cache")) for name in tgz.getnames())
    with tarfile.open(out / "logs.tgz") as tgz:  # every log, though a call returns only 8 files
        assert {f"shard{k}{r}.log" for k in range(1, 17) for r in ("", "b")} <= set(tgz.getnames())


def test_unfinished_selects_the_cells_run_would_train_again(tmp_path: Path) -> None:
    """benchmarks/gpu-runs/unfinished.py (a call's cells when the finished ones cannot travel): of two cells copied
    from the archived v1 records, the finished one is left out, the one without done.json and the one with a
    damaged record are named, and so is every cell not there at all."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("unfinished", REPO / "benchmarks" / "gpu-runs" / "unfinished.py")
    unfinished = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unfinished)
    v1 = REPO / "leaderboard" / "archive" / "fashion-mnist-v1"
    source, target = v1 / "results" / "fashion-mnist" / "fashion-mnist", tmp_path / "fashion-mnist" / "fashion-mnist"
    for slug in ("rf", "eps__linear", "v__cos"):
        shutil.copytree(source / slug / "seed0", target / slug / "seed0")
    (target / "eps__linear" / "seed0" / "done.json").unlink()
    next((target / "v__cos" / "seed0" / "records").glob("*.json")).write_text("{")
    names = unfinished.unfinished_variants(str(v1 / "fashion-mnist.yaml"), tmp_path, (0,))
    assert "rf" not in names and {"eps/linear", "v/cos"} <= set(names) and len(names) == 23
    out = subprocess.run([sys.executable, "benchmarks/gpu-runs/unfinished.py", str(v1 / "fashion-mnist.yaml"), str(tmp_path),
                          "--seeds", "0"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.startswith("--seeds 0 --variant ") and "--variant 'rf/lognorm(0.00, 1.00)'" in out
    assert "--variant rf " not in out and "--variant eps/linear" in out
