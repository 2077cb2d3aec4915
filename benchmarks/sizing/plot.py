"""The EMA validation-loss curves of sizing points against training images, one panel per variant.

    python benchmarks/sizing/plot.py OUT.png /tmp/sizing-v2 leaderboard/results [--grid fashion-mnist ...]

Reads the records of every grid under each results directory (``--grid`` keeps only the named ones) through
:class:`ablate.results.ResultsStore`, and draws, for each variant of the first directory's grids, the EMA
validation loss of every seed against the images its cell had trained on (step x effective batch), one colour
per grid. The x axis is images, not steps, so points at different batch sizes compare at equal data. The loss
of a variant is comparable across grids only (each formulation weighs its loss its own way).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ablate.results import ResultsStore  # noqa: E402


def _label(train: dict, config: dict) -> str:
    schedule = ((config or {}).get("train") or {}).get("lr_schedule") or {"kind": "constant"}
    lr = ((config or {}).get("train") or {}).get("lr")
    return (f"lr {lr:g} {schedule.get('kind')}, batch {train.get('effective_batch_size')}, "
            f"{int(train.get('max_steps', 0)) // 1000}k steps")


def curves(roots: list[Path], grids: list[str] | None) -> dict[str, dict[str, list[list[tuple[float, float]]]]]:
    """{line label: {variant: [one (images, EMA val loss) curve per seed]}}."""
    out: dict[str, dict[str, list[list[tuple[float, float]]]]] = {}
    for root in roots:
        store = ResultsStore(root)
        for grid in store.grids():
            if grids and grid not in grids:
                continue
            frame = store.frame(grid).drop_duplicates(["variant", "seed"])
            for _, row in frame.iterrows():
                train = row["record"]["train"]
                batch = float(train.get("effective_batch_size") or train["batch_size"])
                points = sorted((p["step"] * batch, p["val/ema_loss"]) for p in train.get("val_curve") or []
                                if isinstance(p.get("val/ema_loss"), (int, float)))
                label = f"{grid}: {_label(train, row['config'])}"
                out.setdefault(label, {}).setdefault(row["variant"], []).append(points)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("roots", type=Path, nargs="+")
    ap.add_argument("--grid", action="append", help="keep only this grid (repeatable)")
    args = ap.parse_args()
    lines = curves(args.roots, args.grid)
    first = [label for label in lines if label.startswith(tuple(ResultsStore(args.roots[0]).grids()))]
    variants = sorted({v for label in first for v in lines[label]})
    cols = 4
    rows = -(-len(variants) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    colours = dict(zip(lines, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, variant in zip(axes.flat, variants):
        top = 0.0
        for label, per_variant in lines.items():
            for i, points in enumerate(per_variant.get(variant, [])):
                xs, ys = [x / 1e6 for x, _ in points], [y for _, y in points]
                ax.plot(xs, ys, marker=".", color=colours[label], alpha=0.9 if i == 0 else 0.35,
                        label=label if i == 0 else None)
                top = max([top] + ys[len(ys) // 4:])
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("training images (millions)", fontsize=8)
        ax.set_ylabel("EMA validation loss", fontsize=8)
        if top:
            ax.set_ylim(top=top * 1.05)  # the warm-up's loss would flatten the rest
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(variants):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
    fig.tight_layout(rect=(0, 0.05 + 0.02 * (len(labels) // 3), 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}: {len(variants)} variants, {len(lines)} lines")


if __name__ == "__main__":
    main()
