"""Ranking on metrics whose direction the records declare, sample resampling, validity verdicts (no torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ablate.report import rank_stats, ranking, statistics, validity
from ablate.report.leaderboard import build_leaderboard, render_markdown

ROLES = {"ckid_effnet": {"role": "alignment", "higher_is_better": False},
         "kid_effnet": {"role": "fidelity", "higher_is_better": False}}


def _frame(quality: dict[str, float], seeds=(0, 1, 2), blocks: dict[str, float] | None = None, declare=True) -> pd.DataFrame:
    """Records where better quality = lower ckid_effnet (an alignment metric, lower is better) and lower kid_effnet;
    ``blocks``: per variant, the spread of the 10 KID blocks kept in each record."""
    rng = np.random.default_rng(0)
    rows = []
    for (variant, q), s, steps in itertools.product(quality.items(), seeds, (5, 50)):
        spread = (blocks or {}).get(variant, 0.0)
        z = rng.standard_normal(10)
        parts = list(1.0 - q + spread * (z - z.mean()))  # their mean, the record's KID, is the same in every seed
        record = {"variant": variant, "metric_resamples": {"kid_effnet": parts}}
        scorers = {"effnet": {"model": "m", "metrics": ROLES}} if declare else {}
        rows.append({"grid": "g", "variant": variant, "dataset": "d", "seed": s, "solver": "euler", "steps": steps,
                     "cfg": 5.0, "time_grid": "own", "weights": "ema", "setting": f"{steps}steps-cfg5.0-own-ema",
                     "ckid_effnet": 1.0 - q + 0.001 * rng.standard_normal(), "kid_effnet": float(np.mean(parts)),
                     "record": record, "config": {}, "scorers": scorers, "num_samples": 1000,
                     "version": "v", "git_commit": "c", "device": "cpu", "created": "t",
                     "path": f"/nowhere/records/{steps}.json"})
    return pd.DataFrame(rows)


def test_an_alignment_metric_where_lower_is_better_ranks_the_lowest_first():
    frame = _frame({"good": 0.9, "mid": 0.5, "bad": 0.1})
    assert ranking.directions(frame, "ckid_effnet", "kid_effnet") == (False, True)
    lb = build_leaderboard(frame, "g", replicates=50)
    assert (lb.alignment, lb.fidelity) == ("ckid_effnet", "kid_effnet")
    assert lb.table1["variant"].tolist() == ["good", "mid", "bad"]
    assert lb.stats.table["variant"].tolist() == ["good", "mid", "bad"]   # the bootstrap orients it too
    assert "ckid_effnet (lower is better)" in render_markdown(lb)


def test_records_without_a_declaration_keep_the_role_defaults():
    frame = _frame({"a": 0.9, "b": 0.1}, declare=False)
    assert ranking.directions(frame, "ckid_effnet", "kid_effnet") == (True, True)


def test_sample_blocks_are_resampled_within_a_setting():
    """Identical seeds: the seeds alone give Figure 3's D a zero-width interval; the KID blocks kept in the records
    widen it in proportion to their spread (the samples within a setting are resampled beside the seeds)."""
    frame = _frame({"rf": 0.51, "eps/linear": 0.49}, blocks={"rf": 0.001, "eps/linear": 0.001}).assign(ckid_effnet=0.5)
    data = statistics.seed_array(frame, "ckid_effnet", "kid_effnet")
    assert data.fidelity_parts is not None and data.fidelity_parts.shape[-1] == 10
    reps = statistics.part_means(data.fidelity_parts, data.fidelity, 400, np.random.default_rng(0))
    assert reps.shape == (400, *data.fidelity.shape)
    np.testing.assert_allclose(reps.mean(0), data.fidelity, atol=0.002)
    widths = {}
    for spread in (0.0, 0.001, 0.05):
        f3 = rank_stats.rank_stats(_frame({"rf": 0.51, "eps/linear": 0.49}, blocks={"rf": spread, "eps/linear": spread})
                                   .assign(ckid_effnet=0.5), "ckid_effnet", "kid_effnet", replicates=300).figure3
        widths[spread] = f3["high"] - f3["low"]
    assert widths[0.0] == 0.0 and 0 < widths[0.001] < widths[0.05], widths


def _doc(values: dict[str, list[list[float]]], role="fidelity", higher=False) -> dict:
    corruptions = [{"name": n, "strengths": list(range(len(v))), "unit": "u", "kind": "quality"} for n, v in values.items()]
    return {"dataset": "d", "num_samples": 10, "seeds": [0, 1, 2], "pool": "p", "corruptions": corruptions,
            "scorers": {"s": {"metrics": {"m": {"role": role, "higher_is_better": higher, "values": values}}}}}


def test_validity_verdicts():
    monotone = [[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [3.0, 3.2, 2.9]]
    noise_helps = [[1.0, 1.1, 0.9], [5.0, 5.1, 4.9], [3.0, 3.1, 2.9]]      # the fd_probe blur+noise case
    wobbly = [[1.0, 1.1, 0.9], [2.0, 2.5, 1.5], [1.9, 1.0, 2.8], [4.0, 4.1, 3.9]]
    flat = [[1.0, 1.1, 0.9], [1.0, 1.1, 0.9]]
    doc = _doc({"a": monotone, "b": noise_helps, "c": wobbly, "d": flat})
    status = {v.corruption: v.status for v in validity.verdicts(doc, "m")}
    assert status == {"a": "pass", "b": "FAIL", "c": "pass (within noise)", "d": "FAIL"}
    assert validity.mark(doc, "m") == " (FAILS validity: b, d)"
    assert "FAILS the validity bench in 2 of 4" in validity.summary(doc, "m")
    # higher is better: the same numbers now improve with strength
    flipped = _doc({"a": monotone}, higher=True)
    assert validity.verdicts(flipped, "m")[0].failed
    # an alignment metric is judged on labels only
    assert validity.verdicts(_doc({"a": noise_helps}, role="alignment"), "m")[0].status == "not judged"


def test_leaderboard_marks_a_failing_metric_in_its_header_and_tables(tmp_path):
    import json

    doc = _doc({"a": [[1.0, 1.1, 0.9], [0.5, 0.6, 0.4]]})
    doc["scorers"]["s"]["metrics"] = {"kid_effnet": doc["scorers"]["s"]["metrics"]["m"]}
    (tmp_path / "validity-d.json").write_text(json.dumps(doc))
    frame = _frame({"x": 0.9, "y": 0.1})
    frame.loc[frame["steps"] == 5, "steps"] = 25
    frame["setting"] = frame["setting"].str.replace("5steps", "25steps", regex=False)
    lb = build_leaderboard(frame, "g", replicates=20, validity_dirs=(tmp_path,))
    text = render_markdown(lb)
    assert "kid_effnet: FAILS the validity bench in 1 of 1 corruptions: a (better at 0 -> 1 u" in text
    assert "kid_effnet (FAILS validity: a)" in " ".join(lb.table2.columns)
    assert "Validity of ckid_effnet on d: not measured" not in text   # measured-file present, metric absent:
    assert "ckid_effnet: not in the validity bench" in text


def test_a_search_maximises_a_lower_is_better_alignment_metric_negated():
    from ablate.search.points import objectives

    frame = _frame({"good": 0.9, "bad": 0.1})
    settings = tuple(frame["setting"].unique())
    good, bad = objectives(frame, "good", [0, 1, 2], settings), objectives(frame, "bad", [0, 1, 2], settings)
    assert good[0] == pytest.approx(-0.1, abs=0.01) and good[0] > bad[0] and good[1] < bad[1]


def test_the_leaderboard_warns_when_most_samples_are_off_the_real_manifold():
    """Precision and recall both 0 in most records: the distances rank kinds of failure (the CPU smoke grid's eps
    variants, visibly broken, ranked 2nd and 4th on them); one record off the manifold, or no such columns: no line."""
    off = pd.DataFrame({"precision_effnet": [0.0, 0.0, 0.0, 0.4], "recall_effnet": [0.0, 0.0, 0.0, 0.3],
                        "fd_effnet": [3500.0, 3600.0, 3800.0, 300.0]})
    line = validity.off_manifold_line(off)
    assert line is not None and "3 of 4 records" in line and "precision_effnet and recall_effnet" in line
    assert "2 of 4 records" in validity.off_manifold_line(off.assign(recall_effnet=[0.1, 0.0, 0.0, 0.3]))  # half
    assert validity.off_manifold_line(off.assign(recall_effnet=[0.1, 0.2, 0.0, 0.3])) is None  # 1 of 4
    assert validity.off_manifold_line(off.assign(precision_effnet=[0.0, 0.1, 0.2, 0.4])) is None  # recall 0, precision not
    assert validity.off_manifold_line(off.drop(columns=["recall_effnet"])) is None
    assert validity.off_manifold_line(pd.DataFrame({"fd_probe": [1.0]})) is None
