"""The report's use of fd_effnet's replicates (no torch): Figure 3's bootstrap resamples them beside the seeds, paired
across variants, unchanged without them; the leaderboard's sample-vs-seed table; read_record refuses malformed lists."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ablate.report import rank_stats, sample_noise, statistics
from ablate.report.leaderboard import build_leaderboard, render_markdown
from ablate.results import RecordError, ResultsStore, read_record

ROLES = {"ckid_effnet": {"role": "alignment", "higher_is_better": False},
         "fd_effnet": {"role": "fidelity", "higher_is_better": False}}


def _frame(fd: dict[str, float], seed_sd: float = 0.0, sample_sd: float | None = None, seeds=(0, 1, 2),
           replicates: int = 10) -> pd.DataFrame:
    """Records of fd_effnet: per variant a base value (x 0.5 at 50 steps), a seed effect of SD ``seed_sd``, and
    ``replicates`` values of exactly SD ``sample_sd`` around the record's value plus a bias (None: no replicates)."""
    rng, spread = np.random.default_rng(0), np.random.default_rng(1)   # the seed effects the same with or without
    rows = []
    for (variant, base), s, steps in itertools.product(fd.items(), seeds, (5, 50)):
        value = base * (1.0 if steps == 5 else 0.5) + seed_sd * rng.standard_normal()
        record: dict = {"variant": variant}
        if sample_sd is not None:
            z = spread.standard_normal(replicates)
            record["metric_replicates"] = {"fd_effnet": list(value + 3.0 + sample_sd * (z - z.mean()) / z.std(ddof=1))}
        rows.append({"grid": "g", "variant": variant, "dataset": "d", "seed": s, "solver": "euler", "steps": steps,
                     "cfg": 5.0, "time_grid": "own", "weights": "ema", "setting": f"{steps}steps-cfg5.0-own-ema",
                     "ckid_effnet": 0.5, "fd_effnet": value, "record": record, "config": {},
                     "scorers": {"effnet": {"model": "m", "metrics": ROLES}}, "num_samples": 1000,
                     "version": "v", "git_commit": "c", "device": "cpu", "created": "t",
                     "path": f"/nowhere/records/{steps}.json"})
    return pd.DataFrame(rows)


FD = {"rf": 20.0, "eps/linear": 21.0, "v/cos": 22.0}


def _width(frame: pd.DataFrame) -> float:
    f3 = rank_stats.rank_stats(frame, "ckid_effnet", "fd_effnet", replicates=300).figure3
    return f3["high"] - f3["low"]


def test_replicates_widen_figure3s_interval_and_without_them_nothing_changes():
    data = statistics.seed_array(_frame(FD), "ckid_effnet", "fd_effnet")
    assert data.fidelity_replicates is None
    assert statistics.within_setting(data, 50, np.random.default_rng(0)) is data.fidelity   # seeds only, as before
    widths = {sd: _width(_frame(FD, seed_sd=0.2, sample_sd=sd)) for sd in (None, 0.0, 0.2, 1.0)}
    assert widths[0.0] == pytest.approx(widths[None], rel=1e-9) and widths[None] > 0  # no spread: the seeds-only CI
    assert widths[0.0] < widths[0.2] < widths[1.0], widths


def test_the_drawn_replicate_is_paired_across_variants_and_centred_on_the_record():
    frame = _frame(FD, sample_sd=1.0)
    data = statistics.seed_array(frame, "ckid_effnet", "fd_effnet")
    assert data.fidelity_replicates.shape[-1] == 10
    same = data.fidelity_replicates - data.fidelity[..., None]
    data.fidelity_replicates[1] = data.fidelity_replicates[0] - data.fidelity[0, ..., None] + data.fidelity[1, ..., None]
    moved = statistics.within_setting(data, 400, np.random.default_rng(1)) - data.fidelity
    np.testing.assert_allclose(moved[:, 0], moved[:, 1])              # same replicates: the same draw
    assert not np.allclose(moved[:, 0], moved[:, 2])
    assert np.abs(moved.mean(0)).max() < 0.2 and moved.std(0).mean() == pytest.approx(1.0 * 0.95, abs=0.1)
    assert (same.mean(-1) > 2.9).all()                                 # the replicates' bias is not added


def test_the_table_splits_seed_spread_from_sample_spread():
    frame = _frame(FD, seed_sd=1.5, sample_sd=0.5, seeds=range(12))
    data = statistics.seed_array(frame, "ckid_effnet", "fd_effnet")
    table = sample_noise.split_table(data)
    assert table["variant"].tolist() == [*sorted(FD), "all"] and table["records"].iloc[-1] == "72/72"
    np.testing.assert_allclose(table["sample SD"], 0.5, rtol=1e-9)
    all_row = table.iloc[-1]
    assert 1.1 < all_row["seed SD"] < 1.9 and all_row["seed / sample"] == pytest.approx(all_row["seed SD"] / 0.5)
    assert all_row["training SD"] == pytest.approx(np.sqrt(all_row["seed SD"] ** 2 - 0.25))
    assert "3.2x" in sample_noise.note(table, "fd_effnet", 12)
    assert f"seed SD / sample SD = {all_row['seed / sample']:.2f}" in sample_noise.note(table, "fd_effnet", 12)
    assert sample_noise.split_table(statistics.seed_array(_frame(FD), "ckid_effnet", "fd_effnet")).empty


def test_the_leaderboard_shows_the_split_and_which_records_were_resampled():
    half = _frame(FD, seed_sd=1.0, sample_sd=0.3)
    half.loc[half["steps"] == 5, "record"] = [{"variant": v} for v in half.loc[half["steps"] == 5, "variant"]]
    text = render_markdown(build_leaderboard(half, "g", replicates=50))
    assert "## Seeds or samples: where the uncertainty of fd_effnet comes from" in text
    assert "| variant | records | sample SD | seed SD | training SD | seed / sample |" in text
    assert "what the records keep of fd_effnet: its replicates in 9 of 18 records; the others over training" in text
    none = render_markdown(build_leaderboard(_frame(FD, seed_sd=1.0), "g", replicates=50))
    assert "## Seeds or samples" not in none and "resamples training seeds only" in none


def _record(**parts) -> dict:
    return {"grid": "g", "variant": "rf", "dataset": "d", "seed": 0, "steps": 5, "cfg": 5.0, "time_grid": "own",
            "weights": "ema", "metrics": {"fd_effnet": 1.0}, **parts}


@pytest.mark.parametrize("kept, named", [
    ({"metric_replicates": {"fd_effnet": [1.0, "2"]}}, "'metric_replicates' ('fd_effnet': values that are not numbers"),
    ({"metric_replicates": {"fd_effnet": 3.0}}, "'metric_replicates' ('fd_effnet': a float)"),
    ({"metric_replicates": [1.0, 2.0]}, "'metric_replicates' (a list)"),
    ({"metric_resamples": {"kid_effnet": [True, 1.0]}}, "'metric_resamples' ('kid_effnet': values that are not"),
])
def test_read_record_refuses_malformed_replicates_naming_the_file_and_key(tmp_path: Path, kept, named):
    store = ResultsStore(tmp_path)
    path = store.write_record(_record(**kept))
    with pytest.raises(RecordError) as err:
        read_record(path, tmp_path)
    text = str(err.value)
    assert str(path) in text and named in text and "list of numbers" in text and "\n" not in text


def test_read_record_takes_replicates_and_records_without_them(tmp_path: Path):
    store = ResultsStore(tmp_path)
    path = store.write_record(_record(metric_replicates={"fd_effnet": [1.0, float("nan"), 2]}))
    assert read_record(path, tmp_path)["metric_replicates"]["fd_effnet"][2] == 2
    assert "metric_replicates" not in read_record(store.write_record(_record()), tmp_path)
    json.loads(path.read_text())  # NaN is JSON's common extension
