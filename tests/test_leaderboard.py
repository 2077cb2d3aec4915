"""Non-dominated ranks, Table 1 averages, rendered outputs and the ``leaderboard`` command."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.cli import main
from ablate.report.leaderboard import build_leaderboard, render_markdown, write_outputs
from ablate.report.ranking import non_dominated_ranks
from ablate.results import ResultsStore, provenance_stamp

SD3_SETTINGS = [(50, 1.0), (50, 2.5), (50, 5.0), (5, 5.0), (10, 5.0), (25, 5.0)]  # (steps, cfg)
VARIANTS = {"rf/lognorm(0.00, 1.00)": 3.0, "rf": 2.0, "eps/linear": 1.0, "edm(-1.20, 1.20)": 0.0}  # quality
DATASETS = ("fashion-mnist", "cc-tiny")


# ------------------------------------------------------------------------------ non-dominated ranks

def test_ranks_ties_and_identical_points():
    # identical points share a front; the dominated one comes next
    assert non_dominated_ranks(np.array([1.0, 1.0, 0.0]), np.array([1.0, 1.0, 2.0])).tolist() == [1, 1, 2]
    # equal in one objective: the strictly better one in the other dominates
    assert non_dominated_ranks(np.array([1.0, 1.0]), np.array([1.0, 2.0])).tolist() == [1, 2]
    assert non_dominated_ranks(np.array([1.0, 2.0]), np.array([1.0, 1.0])).tolist() == [2, 1]


def test_ranks_chain_incomparable_directions_nan():
    a, f = np.array([1.0, 2.0, 3.0, 4.0]), np.array([4.0, 3.0, 2.0, 1.0])
    assert non_dominated_ranks(a, f).tolist() == [4, 3, 2, 1]  # total order
    assert non_dominated_ranks(a, a).tolist() == [1, 1, 1, 1]  # every pair trades off
    assert non_dominated_ranks(a, f, alignment_higher=False, fidelity_lower=False).tolist() == [1, 2, 3, 4]
    ranks = non_dominated_ranks(np.array([1.0, np.nan, 0.0, 2.0]), np.array([1.0, 0.0, np.nan, 0.5]))
    assert ranks.tolist() == [2, 3, 3, 1]
    assert non_dominated_ranks(np.array([np.nan]), np.array([1.0])).tolist() == [1]
    assert non_dominated_ranks(np.array([]), np.array([])).tolist() == []


def _brute_force_ranks(points: list[tuple[float, float]]) -> list[int]:
    """Peel fronts by checking every pair among the remaining points (O(n^3)); lower is better in both."""
    ranks = [0] * len(points)
    remaining, rank = set(range(len(points))), 1
    while remaining:
        front = {
            q for q in remaining
            if not any(
                all(points[p][k] <= points[q][k] for k in (0, 1)) and any(points[p][k] < points[q][k] for k in (0, 1))
                for p in remaining
            )
        }
        for q in front:
            ranks[q] = rank
        remaining -= front
        rank += 1
    return ranks


def test_ranks_match_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 25))
        a, f = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
        higher, lower = bool(rng.integers(2)), bool(rng.integers(2))
        points = [(-x if higher else x, y if lower else -y) for x, y in zip(a, f)]
        assert non_dominated_ranks(a, f, higher, lower).tolist() == _brute_force_ranks(points)


# ------------------------------------------------------------------------------------- synthetic data

def _record(variant: str, dataset: str, seed: int, steps: int, cfg: float, weights: str,
            metrics: dict[str, float], grid: str = "smoke") -> dict:
    return {
        "grid": grid, "variant": variant, "dataset": dataset, "seed": seed, "steps": steps, "cfg": cfg,
        "time_grid": "own", "weights": weights, "nfe": steps * (1 if cfg == 1.0 else 2), "num_samples": 200,
        "metrics": metrics,
        "train": {"max_steps": 300, "best_step": 200, "val_loss": 0.4 - 0.01 * seed, "val_loss_raw": 0.41,
                  "val_x0_mse": 0.1 + 0.01 * len(variant), "val_x0_mse_by_t": [0.1] * 8,
                  "val_curve": [{"step": 100 * k, "val/ema_loss": 0.4 + (0.02 if variant == "rf" else 0.0) / k,
                                 "val/raw_loss": 0.41 + (0.05 if (variant, seed, k) == ("eps/linear", 1, 3) else 0)}
                                for k in (1, 2, 3)]},
        "eval": {"wall_s": 1.0, "gpu_hours": 0.0},
        "formulation": {"name": variant},
        "scorers": {"probe": {"model": "probe-cnn-v1", "pretrained": "trained-here", "feature_layer": "penultimate",
                              "reference_set": f"{dataset}/test", "resolution": 28}},
        "config": {},
        **provenance_stamp(device="cpu"),
    }


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """4 variants x 2 datasets x 2 seeds x the SD3 six settings x ema/raw = 192 records."""
    root = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(1)
    for (variant, q), dataset, seed, (steps, cfg), weights in itertools.product(
        VARIANTS.items(), DATASETS, (0, 1), SD3_SETTINGS, ("ema", "raw")
    ):
        noise = rng.normal(0, 0.1)
        metrics = {"fd_probe": 20.0 - 2 * q + 30.0 / steps + abs(cfg - 3) + noise,
                   "align_probe": 0.5 + 0.05 * q + 0.01 * cfg + 0.01 * noise}
        ResultsStore(root).write_record(_record(variant, dataset, seed, steps, cfg, weights, metrics))
    return root


# ------------------------------------------------------------------------------------------ tables

def test_table1_matches_hand_computation(tmp_path: Path):
    # (alignment, fidelity) per setting, as seed means; seeds are mean +- delta on fidelity
    values = {
        (5, "rf"): (0.9, 10.0), (5, "eps/linear"): (0.8, 20.0), (5, "edm/cos"): (0.9, 10.0),
        (50, "rf"): (0.5, 30.0), (50, "eps/linear"): (0.9, 5.0), (50, "edm/cos"): (0.6, 40.0),
        (25, "rf"): (0.3, 1.0), (25, "eps/linear"): (0.2, 2.0), (25, "edm/cos"): (0.1, 3.0),
    }
    for (steps, variant), (a, f) in values.items():
        for seed, delta in ((0, -5.0 if variant == "rf" else 0.0), (1, 5.0 if variant == "rf" else 0.0)):
            ResultsStore(tmp_path).write_record(_record(variant, "d", seed, steps, 5.0, "ema",
                                           {"align_probe": a, "fd_probe": f + delta}, grid="tiny"))
    lb = build_leaderboard(ResultsStore(tmp_path).frame("tiny"), "tiny")
    # ranks by setting: 5 steps rf 1, eps 2, edm 1 (rf ties edm only after seed averaging);
    # 50 steps eps 1, rf 2, edm 2; 25 steps rf 1, eps 2, edm 3
    expected = pd.DataFrame({
        "variant": ["rf", "eps/linear", "edm/cos"],
        "all": [4 / 3, 5 / 3, 2.0], "5 steps": [1.0, 2.0, 1.0], "50 steps": [2.0, 1.0, 2.0], "settings": [3, 3, 3],
    })
    pd.testing.assert_frame_equal(lb.table1, expected, check_dtype=False)
    assert lb.alignment == "align_probe" and lb.fidelity == "fd_probe"


def test_leaderboard_tables_and_header(results: Path):
    lb = build_leaderboard(ResultsStore(results).frame("smoke"), "smoke")
    assert lb.table1["variant"].tolist() == list(VARIANTS)  # quality order
    assert (lb.table1["settings"] == 24).all() and lb.table1["all"].is_monotonic_increasing
    assert set(lb.means["seeds"]) == {2}
    assert lb.table2.columns.tolist() == ["variant", "cc-tiny align_probe", "cc-tiny fd_probe",
                                          "fashion-mnist align_probe", "fashion-mnist fd_probe"]
    assert "fashion-mnist val_x0_mse" in lb.validation.columns and len(lb.validation) == 4
    header = "\n".join(lb.header)
    assert "24 control settings" in header and "seeds per (variant, setting): 2" in header
    assert "probe-cnn-v1" in header and "penultimate" in header and "samples per setting: 200" in header
    assert "MIXED" not in header


def test_outputs_written(results: Path, tmp_path: Path):
    lb = build_leaderboard(ResultsStore(results).frame("smoke"), "smoke")
    md, png, ranks = write_outputs(lb, tmp_path / "lb")
    assert md == tmp_path / "lb" / "smoke.md" and png == tmp_path / "lb" / "smoke-fidelity-vs-steps.png"
    for figure in (png, ranks):
        data = figure.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    text = md.read_text()
    assert text == render_markdown(lb, figure=png.name, rank_figure=ranks.name)  # no previews: no sample sheet
    assert "## Samples" not in text
    for needle in ("## Table 1", "## Who beats whom", "## Agreement with the paper", "## Sensitivity of the agreement",
                   "## Positions in the paper's pool", "## Table 2", "## Validation loss", "## Convergence and stability",
                   "## Deviations from the paper", "never across", "smoke-fidelity-vs-steps.png", "smoke-ranks.png",
                   "| per seed | 95% CI |", "beats next", " ± ", "Spearman rho", "p (one-sided)", "Figure 3's claim",
                   "last-quarter gain", "largest jump raw", "EMA vs raw val loss", "Student-t intervals over seeds",
                   *VARIANTS):
        assert needle in text, needle
    assert text.split("\n\n")[1].startswith("**SMOKE TEST of the machinery, not a result")  # first, for smoke grids
    assert "Convergence" in text.split("\n\n")[2]  # then the one convergence line, naming the variants missing
    warning = text.split("\n\n")[2]  # rf still gains 0.8% over the last quarter; eps/linear's raw loss jumps 12%
    assert "2 of 4 variants miss the criterion" in warning and "eps/linear, rf (see" in warning
    assert "| eps/linear | 4 | +0.00% [+0.00%, +0.00%] | +12.2% (300, seed 1) | none |" in text
    assert sorted(p.name for p in (tmp_path / "lb").iterdir()) == sorted([png.name, md.name, ranks.name])  # no temps


# ---------------------------------------------------------------------------------------------- CLI

def test_sample_sheet_shows_each_variant_first_seed_at_fewest_and_most_steps(results: Path, tmp_path: Path):
    import shutil

    import torch

    from ablate.engine.evaluate import save_preview
    from ablate.report.plots import sample_sheet
    from ablate.results import preview_path

    root = tmp_path / "results"
    shutil.copytree(results, root)
    frame = ResultsStore(root).frame("smoke")
    variants = list(VARIANTS)

    def value(i: int, seed: int, steps: int) -> float:  # in [-1, 1]: the preview's pixels
        return -0.9 + 0.3 * i + 0.1 * (steps == 50) + 0.05 * seed

    for (i, variant), seed, steps, dataset in itertools.product(enumerate(variants[:-1]), (0, 1), (5, 50), DATASETS):
        hit = frame[(frame["variant"] == variant) & (frame["seed"] == seed) & (frame["steps"] == steps) &
                    (frame["cfg"] == 5.0) & (frame["weights"] == "ema") & (frame["dataset"] == dataset)]
        save_preview(torch.full((64, 1, 8, 8), value(i, seed, steps)), preview_path(Path(hit["path"].iloc[0])))
    lb = build_leaderboard(ResultsStore(root).frame("smoke"), "smoke")
    assert lb.sample_columns == ["5 steps, cfg 5, EMA", "50 steps, cfg 5, EMA"]
    assert list(lb.previews) == lb.table1["variant"].tolist()
    assert lb.previews[variants[-1]] == [None, None]
    assert all(p is not None and p.parts[-5] == sorted(DATASETS)[0] and p.parts[-3] == "seed0"
               for v in variants[:-1] for p in lb.previews[v])
    sheet, (height, width) = sample_sheet(lb.previews)
    assert height == 10 and width == 8 * 9 + 1  # one row of 8 tiles of 8 px with 1-px padding
    for row, variant in enumerate(lb.previews):
        for col, steps in enumerate((5, 50)):
            tile = sheet[row * height + 1: row * height + 9, col * (width + 8) + 1: col * (width + 8) + 9]
            want = 1.0 if variant == variants[-1] else (value(variants.index(variant), 0, steps) + 1) / 2
            assert np.allclose(tile, want, atol=1 / 255), (variant, steps)
    md, _, _, samples = write_outputs(lb, tmp_path / "lb")
    assert samples.name == "smoke-samples.png" and samples.read_bytes().startswith(b"\x89PNG")
    assert "## Samples" in md.read_text() and "(smoke-samples.png)" in md.read_text()


def test_cli_table_markdown_csv(results: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "lb"
    assert main(["leaderboard", "--results", str(results), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for variant in VARIANTS:
        assert variant in printed
    assert "Table 1" in printed and (out / "smoke.md").exists() and (out / "smoke-fidelity-vs-steps.png").exists()

    assert main(["leaderboard", "--results", str(results), "--out", str(out), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert table.columns.tolist() == ["grid", "variant", "all", "5 steps", "50 steps", "settings"]
    assert table["variant"].tolist() == list(VARIANTS)

    assert main(["leaderboard", "--results", str(results), "--grid", "smoke", "--out", str(out),
                 "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("# Leaderboard: smoke")


def test_default_outputs_go_under_the_results_not_into_the_working_directory(results: Path, tmp_path: Path,
                                                                             monkeypatch, capsys):
    """Issue 10: a scratch --results once overwrote the published leaderboard/smoke.md of the repository."""
    work = tmp_path / "repo"
    (work / "leaderboard").mkdir(parents=True)
    published = work / "leaderboard" / "smoke.md"
    published.write_text("published table\n")
    monkeypatch.chdir(work)
    assert main(["leaderboard", "--results", str(results), "--format", "csv"]) == 0
    capsys.readouterr()
    assert published.read_text() == "published table\n"
    assert sorted(p.name for p in (work / "leaderboard").iterdir()) == ["smoke.md"]
    written = results / "smoke" / "leaderboard"
    assert sorted(p.name for p in written.iterdir()) == ["smoke-fidelity-vs-steps.png", "smoke-ranks.png", "smoke.md"]
    assert all(v in (written / "smoke.md").read_text() for v in VARIANTS)
    assert main(["leaderboard", "--results", str(results), "--out", "leaderboard", "--format", "csv"]) == 0
    assert published.read_text().startswith("# Leaderboard: smoke")  # only when asked for explicitly


def test_cli_errors(results: Path, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    missing = tmp_path / "nothing-here"
    assert main(["leaderboard", "--results", str(missing), "--out", str(tmp_path / "lb")]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "python -m ablate run grids/smoke.yaml" in err
    assert "\n\n" not in err.strip() and "Traceback" not in err
    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "lb"),
                 "--fidelity", "fid_inception"]) == 2
    err = capsys.readouterr().err
    assert "fid_inception" in err and "fd_probe" in err
    assert not (tmp_path / "lb").exists()


def test_mixed_provenance_within_a_dataset_is_flagged(tmp_path: Path):
    for variant, seed in itertools.product(("rf", "eps/linear"), (0, 1)):
        rec = _record(variant, "d", seed, 25, 5.0, "ema", {"align_probe": 0.5, "fd_probe": 1.0 + seed}, grid="g")
        rec["scorers"]["probe"]["reference_set"] = f"d/test-v{seed}"  # seed 1 scored against another set
        ResultsStore(tmp_path).write_record(rec)
    header = "\n".join(build_leaderboard(ResultsStore(tmp_path).frame("g"), "g").header)
    assert "MIXED provenance within d" in header and "d/test-v0" in header and "d/test-v1" in header


def test_provenance_names_the_scorer_of_each_metric():
    from ablate.report.provenance import scorers_of as _scorers_of

    scorers = {"clip": {"model": "ViT-L-14"}, "fid_clip": {"model": "ViT-L-14", "reference_set": "r"},
               "probe": {"model": "cnn"}}
    assert _scorers_of("fid_clip", scorers) == ["fid_clip"]
    assert _scorers_of("clip", scorers) == ["clip"]
    assert _scorers_of("fd_probe", scorers) == ["probe"]
    assert _scorers_of("x", {"s": {"metrics": ["x"]}, "t": {}}) == ["s"]


def test_records_only_leaderboard_loads_neither_torch_nor_lightning(results: Path, tmp_path: Path):
    """`python -m ablate leaderboard` on a records-only directory: ``-X importtime`` lists every module the
    process imported; torch and Lightning must not be among them (they cost seconds to import)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ablate", "leaderboard", "--results", str(results),
                           "--out", str(tmp_path / "lb"), "--format", "csv"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "ablate.report.leaderboard" in imported and "pandas" in imported  # the listing is real
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "lightning", "torchvision", "optuna"))
    assert not heavy, heavy[:10]
    assert "rf/lognorm(0.00, 1.00)" in proc.stdout
