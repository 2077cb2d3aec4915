"""Issue 24's re-score, old and new metrics side by side: for every variant of the re-score grid (seed 0, EMA),
the published record's probe metrics, the re-trained cell's probe metrics and its EfficientNet-Lite0 metrics
(KID with its block SE, fd_effnet with its half-sample SD, precision / recall, the intra-class ckid_effnet with its
SE over classes), and the background grain of both sample sheets: the mean pixel value (0 = black, 1 = white) of
the 2-px frame of every 32x32 tile, which is exactly 0 in every real Fashion-MNIST image (28 px padded to 32).

    python benchmarks/rescore_compare.py [--old leaderboard/archive/fashion-mnist-v1/results/fashion-mnist]
        [--new leaderboard/results/rescore-fashion-mnist] [--out FILE]   (prints a markdown table; the run notes hold it)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

TILE, PAD, FRAME = 32, 1, 2  # ablate/engine/evaluate.py's preview: make_grid(nrow=8, padding=1)
EFFNET = ("kid_effnet", "fd_effnet", "precision_effnet", "recall_effnet", "ckid_effnet")


def frame_grain(sheet: Path) -> float:
    """The mean value in [0, 1] of the FRAME-px border of every tile of a sample sheet (nan if absent)."""
    if not sheet.is_file():
        return math.nan
    image = np.asarray(Image.open(sheet).convert("L"), dtype=np.float64) / 255.0
    n = (image.shape[0] - PAD) // (TILE + PAD)
    mask = np.ones((TILE, TILE), bool)
    mask[FRAME:-FRAME, FRAME:-FRAME] = False
    values = [image[PAD + r * (TILE + PAD):PAD + r * (TILE + PAD) + TILE,
                    PAD + c * (TILE + PAD):PAD + c * (TILE + PAD) + TILE][mask] for r in range(n) for c in range(n)]
    return float(np.mean(values))


def record(cell: Path, setting: str) -> dict:
    path = cell / "records" / f"{setting}-own-ema.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def spread(values: list[float] | None, se: bool) -> float:
    if not values or len(values) < 2:
        return math.nan
    sd = float(np.std(values, ddof=1))
    return sd / math.sqrt(len(values)) if se else sd


def rows(old: Path, new: Path) -> list[str]:
    settings = ["50steps-cfg5.0", "50steps-cfg2.5", "50steps-cfg1.0", "25steps-cfg5.0", "10steps-cfg5.0", "5steps-cfg5.0"]
    out = []
    grid_dir = next(d for d in new.iterdir() if d.is_dir() and d.name != "cache")
    for cell in sorted(grid_dir.glob("*/seed0")):
        old_cell = old / grid_dir.name / cell.parent.name / "seed0"
        for setting in settings:
            a, b = record(old_cell, setting), record(cell, setting)
            if not b:
                continue
            m = dict.fromkeys(EFFNET, math.nan) | b["metrics"]  # a record scored without effnet shows nan
            r, reps = b.get("metric_resamples", {}), b.get("metric_replicates", {})
            grain = [frame_grain(c / "samples" / f"{setting}-own-ema.png") for c in (old_cell, cell)]
            out.append("| " + " | ".join([
                b["variant"], setting.replace("steps-cfg", " steps, cfg "),
                f"{a.get('metrics', {}).get('fd_probe', math.nan):.1f}", f"{m.get('fd_probe', math.nan):.1f}",
                f"{a.get('metrics', {}).get('align_probe', math.nan):.4f}", f"{m.get('align_probe', math.nan):.4f}",
                f"{m['kid_effnet']:.4f} ± {spread(r.get('kid_effnet'), True):.4f}",
                f"{m['fd_effnet']:.2f} (SD {spread(reps.get('fd_effnet'), False):.2f})",
                f"{m['precision_effnet']:.3f} / {m['recall_effnet']:.3f}",
                f"{m['ckid_effnet']:.4f} ± {spread(r.get('ckid_effnet'), True):.4f}",
                f"{grain[0]:.4f} / {grain[1]:.4f}" if not math.isnan(grain[1]) else "-"]) + " |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", type=Path, default=Path("leaderboard/archive/fashion-mnist-v1/results/fashion-mnist"))
    ap.add_argument("--new", type=Path, default=Path("leaderboard/results/rescore-fashion-mnist"))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    header = ["variant", "setting", "fd_probe published", "fd_probe re-trained", "align_probe published",
              "align_probe re-trained", "kid_effnet ± SE (blocks)", "fd_effnet (SD over halves)",
              "precision / recall (effnet)", "ckid_effnet ± SE (classes)", "frame grain published / re-trained"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows(args.old, args.new)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
