"""The results store: atomic writes, layout, injective variant slugs, DataFrame round trip."""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest

from ablate.errors import ResultsError
from ablate.config.grid import Cell
from ablate.results import ResultsStore, cell_dir, git_commit, new_record, provenance_stamp, variant_slug, write_json_atomic
from ablate.config.setting import Setting

SD3_VARIANTS = (
    ["eps/linear", "v/linear", "eps/cos", "v/cos", "rf", "rf/cosmap", "edm/rf", "edm/cos"]
    + [f"rf/mode({s:.2f})" for s in [*np.linspace(-1, 1.75, 7), 1.0, 0.0]]
    + [f"rf/lognorm({m:.2f}, {s:.2f})" for m in (-1, -0.5, 0, 0.5, 1) for s in (0.2, 0.6, 1.0, 1.4, 1.8, 2.2)]
    + [f"edm({pm:.2f}, {ps:.2f})" for pm in (-1.2, -0.6, 0, 0.6, 1.2) for ps in (0.6, 1.2, 1.8)]
)


def record(variant: str = "rf/lognorm(0.00, 1.00)", **overrides) -> dict:
    rec = {
        "grid": "smoke", "variant": variant, "dataset": "fashion-mnist", "seed": 0,
        "steps": 25, "cfg": 5.0, "time_grid": "own", "weights": "ema", "nfe": 50, "num_samples": 100,
        "metrics": {"fd_probe": 12.3, "align_probe": 0.81},
        "train": {"max_steps": 300, "best_step": 200, "val_loss": 0.41, "val_x0_mse": 0.12,
                  "val_x0_mse_by_t": [0.1] * 8, "wall_s": 10.2},
        "eval": {"wall_s": 3.1, "gpu_hours": 0.0},
        "formulation": {"path": "rf", "notes": ["our choice: x"]},
        "scorers": {"probe": {"model": "probe-cnn", "resolution": 28}},
        "config": {"train": {"max_steps": 300}},
        **provenance_stamp(device="cpu"),
    }
    rec.update(overrides)
    return rec


def test_slug_example_and_safe():
    assert variant_slug("rf/lognorm(0.00, 1.00)") == "rf__lognorm_0.00_1.00_"
    for v in SD3_VARIANTS:
        s = variant_slug(v)
        assert all(c.isalnum() or c in "._-" for c in s), s
        assert s not in (".", "..")


def _random_names(rng: random.Random, n: int) -> list[str]:
    """Canonical-looking names built from few tokens so that near-collisions are common."""
    idents, nums = ["a", "rf", "x", "e1", "mode"], ["0", "1", "-1", "0.5", "1e-05", "10"]
    names = []
    for _ in range(n):
        segs = []
        for _ in range(rng.randint(1, 3)):
            ident = rng.choice(idents)
            k = rng.randint(0, 2)
            segs.append(ident if k == 0 else f"{ident}({', '.join(rng.choice(nums) for _ in range(k))})")
        names.append("/".join(segs))
    return names


def test_slug_injective():
    assert len({variant_slug(v) for v in SD3_VARIANTS}) == len(set(SD3_VARIANTS)) == 62  # 61 + plain rf
    rng = random.Random(0)
    names = set(_random_names(rng, 3000))
    # non-canonical spellings and odd characters take the escaped form and must not collide either
    names |= {"rf/lognorm(0.00,1.00)", "rf/lognorm(0.00,  1.00)", "rf__lognorm_0.00_1.00_", "a b", "a_b",
              "a-b", "a/b", "a(b)", "a)b(", "x-2f-", "x/", "rf/", "../rf", "ü", "a,b"}
    names |= {"".join(rng.choice("a(,) /_-x1.") for _ in range(rng.randint(1, 6))) for _ in range(3000)}
    slugs = {}
    for name in names:
        slug = variant_slug(name)
        assert slug not in slugs, (name, slugs.get(slug))
        slugs[slug] = name
        assert all(c.isalnum() or c in "._-" for c in slug) and slug not in (".", "..")


def test_record_path_layout(tmp_path: Path):
    store = ResultsStore(tmp_path)
    p = store.record_path(Cell("smoke", "rf/mode(1.29)", "fashion-mnist", 3), Setting(5, 5, "own", "raw"))
    assert p == tmp_path / "smoke/fashion-mnist/rf__mode_1.29_/seed3/records/5steps-cfg5.0-own-raw.json"
    assert p.parent.parent == cell_dir(tmp_path, "smoke", "fashion-mnist", "rf/mode(1.29)", 3)
    with pytest.raises(ResultsError, match="grid name"):
        store.record_path(Cell("../evil", "rf", "fashion-mnist", 0), Setting(5, 5.0))


def test_setting_key_round_trip_and_checks():
    for setting in (Setting(50, 5), Setting(5, 1.0, "rf", "raw"), Setting(25, 2.5), Setting(10, 0.0, weights="raw")):
        assert Setting.from_key(setting.key) == setting
        assert Setting.from_fields(setting.fields()) == setting
    assert Setting(50, 5).key == "50steps-cfg5.0-own-ema" and Setting(50, 5).cfg == 5.0
    assert Setting.from_fields({"steps": 5, "cfg": 5.0, "time_grid": "own", "weights": "ema"}).solver == "euler"
    for bad in (dict(steps=0, cfg=1.0), dict(steps=5, cfg=-1.0), dict(steps=5, cfg=1.0, weights="best"),
                dict(steps=5, cfg=1.0, time_grid="karras"), dict(steps=5, cfg=1.0, solver="heun")):
        with pytest.raises(Exception, match="allowed"):
            Setting(**bad)
    with pytest.raises(Exception, match="not a setting key"):
        Setting.from_key("50steps-ema")


def test_new_record_spells_the_setting_once(tmp_path: Path):
    store = ResultsStore(tmp_path)
    cell, setting = Cell("g", "rf", "fashion-mnist", 2), Setting(25, 5.0, "rf", "raw")
    rec = new_record(cell, setting, {"fd_probe": 1.0}, nfe=50)
    assert {k: rec[k] for k in ("grid", "variant", "dataset", "seed")} == {
        "grid": "g", "variant": "rf", "dataset": "fashion-mnist", "seed": 2}
    assert Setting.from_fields(rec) == setting and rec["solver"] == "euler"
    assert store.write_record(rec) == store.record_path(cell, setting) and store.has_record(cell, setting)
    assert store.frame("g")["setting"].tolist() == [setting.key]


def test_old_records_stay_readable(tmp_path: Path):
    """A record written before the Setting (no ``solver``, the solver metadata under ``sampler``)."""
    old = record("rf")
    old["sampler"] = {"solver": "euler (rf-frame step)", "steps": 25}
    path = tmp_path / "smoke/fashion-mnist/rf/seed0/records/25steps-cfg5.0-own-ema.json"
    write_json_atomic(path, old)
    store = ResultsStore(tmp_path)
    (read,) = store.records("smoke")
    assert read["solver"] == "euler" and read["solver_details"]["steps"] == 25
    frame = store.frame("smoke")
    assert frame["setting"].tolist() == ["25steps-cfg5.0-own-ema"] and frame["solver"].tolist() == ["euler"]


def test_write_and_load_round_trip(tmp_path: Path):
    store = ResultsStore(tmp_path)
    variants = ["rf", "eps/linear", "rf/lognorm(0.00, 1.00)"]
    for v, seed, weights in itertools.product(variants, (0, 1), ("ema", "raw")):
        store.write_record(record(v, seed=seed, weights=weights,
                                  metrics={"fd_probe": np.float32(seed + 1.5), "align_probe": 0.5}))
    store.write_record(record("rf", grid="other", metrics={"fd_probe": float("nan"), "clip": 0.3}))
    df = store.frame("smoke")
    assert len(df) == 12 and set(df["variant"]) == set(variants)
    for col in ("grid", "variant", "dataset", "seed", "solver", "steps", "cfg", "time_grid", "weights", "setting", "nfe",
                "num_samples", "fd_probe", "align_probe", "train_val_loss", "train_val_x0_mse",
                "train_val_x0_mse_by_t", "eval_wall_s", "formulation", "scorers", "config", "record",
                "version", "git_commit", "device", "created"):
        assert col in df.columns, col
    assert "clip" not in df.columns  # only the other grid has it
    assert sorted(df["fd_probe"].unique()) == [1.5, 2.5]
    assert df["train_val_x0_mse_by_t"].iloc[0] == [0.1] * 8
    assert df["scorers"].iloc[0]["probe"]["model"] == "probe-cnn"
    assert df["record"].iloc[0]["formulation"]["notes"] == ["our choice: x"]
    both = store.frame()
    assert len(both) == 13 and math.isnan(both.loc[both["grid"] == "other", "fd_probe"].iloc[0])
    assert store.grids() == ["other", "smoke"]
    # rewriting a record replaces it: still one file per setting
    store.write_record(record("rf", metrics={"fd_probe": 9.0, "align_probe": 0.5}))
    assert len(store.frame("smoke")) == 12 and len(store.records("smoke")) == 12


def test_load_empty_and_corrupt(tmp_path: Path):
    assert ResultsStore(tmp_path / "missing").frame().empty
    store = ResultsStore(tmp_path)
    path = store.write_record(record())
    path.write_text('{"grid": "smoke", "vari')
    with pytest.raises(ResultsError, match=str(path)):
        store.frame()


def test_write_record_validates(tmp_path: Path):
    store = ResultsStore(tmp_path)
    bad = record()
    del bad["weights"]
    with pytest.raises(ResultsError, match="weights"):
        store.write_record(bad)
    with pytest.raises(ResultsError, match="clash"):
        store.write_record(record(metrics={"seed": 1.0}))
    with pytest.raises(ResultsError, match="weights='best'"):
        store.write_record(record(weights="best"))


def test_write_json_atomic_no_partial_file(tmp_path: Path):
    target = tmp_path / "a" / "b.json"
    write_json_atomic(target, {"x": 1})
    with pytest.raises(ResultsError, match="JSON"):
        write_json_atomic(target, {"x": object()})
    assert json.loads(target.read_text()) == {"x": 1}  # old content intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.json"]  # no temp file left


def test_write_json_atomic_uncreatable_dir(tmp_path: Path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(ResultsError, match="blocker"):
        write_json_atomic(blocker / "sub" / "r.json", {"x": 1})


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_write_json_atomic_unwritable_dir(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(ResultsError, match="locked"):
            write_json_atomic(locked / "r.json", {"x": 1})
    finally:
        locked.chmod(stat.S_IRWXU)


def test_provenance_stamp():
    stamp = provenance_stamp(device="cpu")
    assert set(stamp) == {"version", "git_commit", "device", "created"}
    assert stamp["created"].endswith("Z") and stamp["device"] == "cpu"
    commit = git_commit()
    assert commit is None or len(commit.split("+")[0]) == 40


def test_git_commit_named_by_the_sender(monkeypatch: pytest.MonkeyPatch):
    """A copied tree (the device's) carries another commit's .git: ABLATE_GIT_COMMIT names the code's commit."""
    from ablate.errors import ConfigError

    sent = "A3C3302B37DAA0A0A4DF533AE4D484BB608CE115"
    git_commit.cache_clear()
    monkeypatch.setenv("ABLATE_GIT_COMMIT", sent)
    try:
        assert git_commit() == sent.lower() and provenance_stamp("cpu")["git_commit"] == sent.lower()
        git_commit.cache_clear()
        monkeypatch.setenv("ABLATE_GIT_COMMIT", "a3c3302")  # abbreviated: refused, naming the variable
        with pytest.raises(ConfigError, match="ABLATE_GIT_COMMIT='a3c3302'.*40-hex-digit"):
            git_commit()
    finally:
        git_commit.cache_clear()


def test_written_file_is_readable_by_others(tmp_path: Path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"x": 1})
    assert target.stat().st_mode & 0o044  # not the 0600 of a raw temp file (umask permitting)
