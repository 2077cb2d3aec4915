"""The EMA validation-loss curves of the sizing runs, from the tarballs the device calls brought back.

    python benchmarks/sizing/curves.py benchmarks/gpu-runs/2026-11-30b-h200/call*/sizing.tgz

Prints one row per (run, variant): the EMA validation loss at every validation, and the relative
improvement over the last quarter of the steps (the leaderboard's 'still improving' test: > 1%).
"""

from __future__ import annotations

import csv
import io
import sys
import tarfile


def curves(path: str) -> dict[tuple[str, str], list[tuple[int, float]]]:
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            if not member.name.endswith("logs/metrics.csv"):
                continue
            parts = member.name.split("/")  # sizing/<grid>/<dataset>/<variant slug>/seed0/logs/metrics.csv
            rows = csv.DictReader(io.TextIOWrapper(tar.extractfile(member), encoding="utf-8"))
            points = [(int(r["step"]) + 1, float(r["val/ema_loss"])) for r in rows if r.get("val/ema_loss")]
            out[(parts[1], parts[3])] = sorted(points)
    return out


def tail_improvement(points: list[tuple[int, float]]) -> float | None:
    last_step, last = points[-1]
    earlier = [v for s, v in points if s <= 0.75 * last_step]
    return None if not earlier else 1 - last / earlier[-1]


def main() -> None:
    print("| run | variant | EMA val loss by step | last-quarter improvement |")
    print("|---|---|---|---:|")
    for path in sys.argv[1:]:
        for (run, variant), points in sorted(curves(path).items()):
            gain = tail_improvement(points)
            text = " ".join(f"{s // 1000}k:{v:.4f}" for s, v in points)
            print(f"| {run} | {variant} | {text} | {'-' if gain is None else f'{100 * gain:.1f}%'} |")


if __name__ == "__main__":
    main()
