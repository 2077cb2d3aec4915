"""Grid files: shipped grids, validation errors, overrides, cell expansion, serialisation."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

import ablate  # noqa: F401  (torchvision fix first)
import ablate.config.grid as grid_module
from ablate.errors import ConfigError
from ablate.config.grid import (
    GRIDS_DIR,
    Cell,
    GridOverrides,
    add_override_arguments,
    available_grids,
    load_grid,
    overrides_from_args,
)
from ablate.config.setting import Setting

SD3_VARIANTS = [
    # Table 1 of the paper
    "rf/lognorm(0.00, 1.00)", "rf/lognorm(1.00, 0.60)", "rf/lognorm(0.50, 0.60)", "rf/mode(1.29)",
    "rf/lognorm(0.50, 1.00)", "eps/linear", "rf/mode(1.75)", "rf/cosmap", "edm(0.00, 0.60)", "rf",
    "v/linear", "edm(0.60, 1.20)", "v/cos", "edm/cos", "edm/rf", "edm(-1.20, 1.20)",
    # added
    "eps/cos", "rf/lognorm(-0.50, 1.00)", "rf/mode(-0.54)", "rf/mode(1.00)", "rf/lognorm(0.00, 2.20)",
    "edm(-0.60, 1.20)",
    # crossings, not among the paper's 61
    "eps/linear/lognorm(0.00, 1.00)", "v/cos/lognorm(0.00, 1.00)",
]
CROSSINGS = {"eps/linear/lognorm(0.00, 1.00)", "v/cos/lognorm(0.00, 1.00)"}
SCORERS = ("probe", "clip", "fid_clip", "effnet")


@pytest.fixture
def scorers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation unit tests must not depend on which scorers are implemented yet."""
    monkeypatch.setattr(grid_module, "_scorer_names", lambda: SCORERS)


def write(tmp_path: Path, text: str, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


MINIMAL = "name: t\nvariants: [rf, 'rf/lognorm(0.00, 1.00)', rf/mode(1.29)]\n"


# ---- shipped grids ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["smoke", "sd3", "sd3-full", "fashion-mnist"])
def test_shipped_grid_loads_with_registered_scorers(name: str) -> None:
    grid = load_grid(GRIDS_DIR / f"{name}.yaml")
    assert grid.name == name and grid.source == GRIDS_DIR / f"{name}.yaml"
    assert set(available_grids()) >= {"smoke", "sd3", "sd3-full", "fashion-mnist"}


def test_sd3_has_the_requested_24_variants(scorers: None) -> None:
    grid = load_grid("sd3")
    assert len(grid.variants) == 24
    for name in SD3_VARIANTS:
        assert name in grid.variants, name
    assert grid.datasets == ("imagenet", "cc12m")
    assert grid.eval.settings == tuple(Setting(s, c) for s, c in grid_module.PAPER_SETTINGS)
    every = grid.eval.all_settings()  # weights-major, with the grid's time grid
    assert len(every) == 12 and every[0] == Setting(50, 1.0, grid.eval.time_grid, "ema")
    assert [s.weights for s in every] == ["ema"] * 6 + ["raw"] * 6 and len({s.key for s in every}) == 12
    assert grid.eval.weights == ("ema", "raw") and grid.eval.num_samples == 1000
    assert (grid.train.batch_size, grid.train.lr, grid.train.warmup_steps) == (1024, 1e-4, 1000)
    assert (grid.train.ema.every, grid.train.ema.decay) == (100, 0.99)


def test_sd3_full_has_the_papers_61(scorers: None) -> None:
    full = load_grid("sd3-full").variants
    assert len(full) == len(set(full)) == 61
    assert sum(v.startswith("rf/lognorm(") for v in full) == 30
    assert sum(v.startswith("edm(") for v in full) == 15
    assert sum(v.startswith("rf/mode(") for v in full) == 8 and "rf" in full
    assert [v for v in SD3_VARIANTS if v not in full] == sorted(CROSSINGS)


@pytest.mark.parametrize("name", ["smoke", "fashion-mnist"])
def test_small_grids_share_sd3_variants(name: str, scorers: None) -> None:
    grid = load_grid(name)
    assert grid.variants == load_grid("sd3").variants
    assert grid.datasets == ("fashion-mnist",) and grid.eval.scorers == ("effnet", "probe")  # ranked on effnet (validated), the probe beside it


def test_grid_by_name_and_missing_file_lists_grids(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "smoke" in str(err.value) and "sd3-full" in str(err.value)


# ---- validation errors -----------------------------------------------------------------------

BAD = [
    # (extra YAML after MINIMAL, substrings the message must contain)
    ("trian: {max_steps: 3}\n", ["`trian`", "Did you mean `train`?", "line 3"]),
    ("train: {ema: {dacay: 0.5}}\n", ["train.ema.dacay", "`train.ema.decay`", "every, decay"]),
    ("train: {ema: {decay: 1.5}}\n", ["train.ema.decay", "1.5", "> 0 and < 1"]),
    ("train: {ema: {decay: 0}}\n", ["train.ema.decay", "> 0 and < 1"]),
    ("train: {max_steps: many}\n", ["train.max_steps", "'many'", "an integer >= 1"]),
    ("train: {max_steps: 2.5}\n", ["train.max_steps", "2.5", "an integer"]),
    ("train: {compile: 1}\n", ["train.compile", "one of 'auto', true, false"]),
    ("train: {compile: yes-please}\n", ["train.compile", "'yes-please'", "one of 'auto', true, false"]),
    ("train: {precision: bf16}\n", ["train.precision", "'bf16'", "'auto', '32-true', 'bf16-mixed', '16-mixed'"]),
    ("train: {betas: [0.9]}\n", ["train.betas", "a list of 2 items"]),
    ("train: {grad_clip: -1}\n", ["train.grad_clip", "a number > 0 or null"]),
    ("eval: {settings: [{steps: 5, cfg: 1.0}, {steps: 0, cfg: 1.0}]}\n", ["eval.settings[1].steps", ">= 1"]),
    ("eval: {settings: [{steps: 5, cfg: -1.0}]}\n", ["eval.settings[0].cfg", "a number >= 0"]),
    ("eval: {settings: [{steps: 5}]}\n", ["eval.settings[0].cfg", "missing"]),
    ("eval: {settings: [{steps: 5, cfg: 1}, {steps: 5, cfg: 1.0}]}\n", ["eval.settings[1]", "repeats"]),
    ("eval: {time_grid: linear}\n", ["eval.time_grid", "'linear'", "'own', 'rf'"]),
    ("eval: {weights: [ema, best]}\n", ["eval.weights[1]", "'best'", "'ema', 'raw'"]),
    ("eval: {weights: []}\n", ["eval.weights", "non-empty"]),
    ("eval: {scorers: [prob]}\n", ["eval.scorers[0]", "'prob'", "did you mean 'probe'", "'fid_clip'"]),
    ("eval: {scorers: [probe], scorer_options: {clip: {model: x}}}\n", ["eval.scorer_options.clip", "probe"]),
    ("datasets: [mnist]\n", ["datasets[0]", "'mnist'", "'fashion-mnist', 'imagenet', 'cc12m'"]),
    ("datasets: fashion-mnist\n", ["`datasets`", "list"]),
    ("seeds: [0, -1]\n", ["seeds[1]", "-1", ">= 0"]),
    ("seeds: [1, 1]\n", ["seeds[1]", "repeats `seeds[0]`"]),
    ("data: {conditioning: text}\n", ["data.conditioning", "'class', 'caption'"]),
    ("model: {hidden_size: 64, num_heads: 5}\n", ["model.num_heads", "64", "divisor"]),
    ("model: {patch_size: 3}\n", ["model.patch_size", "data.resolution", "divisor"]),
    ("model: 4\n", ["`model`", "a mapping with keys patch_size"]),
    ("description: x\ndescription: y\n", ["`description` appears twice", "line 4"]),
    ("train:\n  max_steps: [1\n", ["line 5", "not valid YAML"]),
]


@pytest.mark.parametrize("extra,expected", BAD, ids=[b[0].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_input_names_file_key_and_allowed(tmp_path: Path, scorers: None, extra: str, expected: list[str]) -> None:
    path = write(tmp_path, MINIMAL + extra)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    message = str(err.value)
    assert str(path) in message
    assert "\n" not in message  # one paragraph
    for piece in expected:
        assert piece in message, (piece, message)


@pytest.mark.parametrize("text,expected", [
    ("name: t\n", ["`variants`", "is missing", "variant name"]),
    ("variants: [rf]\n", ["`name`", "is missing"]),
    ("name: a/b\nvariants: [rf]\n", ["`name`", "'a/b'", "letters, digits"]),
    ("name: t\nvariants: []\n", ["`variants`", "non-empty"]),
    ("- rf\n", ["the grid", "a mapping with keys name"]),
])
def test_bad_top_level(tmp_path: Path, scorers: None, text: str, expected: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    assert str(path) in str(err.value)
    for piece in expected:
        assert piece in str(err.value), (piece, str(err.value))


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="g.yaml is empty"):
        load_grid(write(tmp_path, "# nothing\n"))


def test_unknown_variant_wraps_parser_message(tmp_path: Path, scorers: None) -> None:
    path = write(tmp_path, "name: t\nvariants:\n  - rf\n  - rf/cosmap\n  - eps/linear\n  - 'rf/lognrm(0, 1)'\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    message = str(err.value)
    assert "g.yaml, line 6" in message and "`variants[3]`" in message and "lognrm" in message
    assert "lognorm(m, s)" in message  # the parser's list of valid samplers


def test_out_of_range_variant_parameter(tmp_path: Path, scorers: None) -> None:
    with pytest.raises(ConfigError, match=r"variants\[1\].*mode\(s\) with -1 <= s"):
        load_grid(write(tmp_path, "name: t\nvariants: [rf, rf/mode(3.0)]\n"))


def test_duplicate_after_canonicalisation(tmp_path: Path, scorers: None) -> None:
    path = write(tmp_path, "name: t\nvariants: ['rf/lognorm(0.5, 0.6)', rf/uniform, rf, 'rf/lognorm(0.50, 0.60)']\n")
    with pytest.raises(ConfigError) as err:
        load_grid(path)
    message = str(err.value)
    assert "`variants[2]` = 'rf' repeats `variants[1]` = 'rf/uniform'" in message
    assert "canonical" in message and "g.yaml" in message


def test_variants_stored_canonical_and_yaml12_floats(tmp_path: Path, scorers: None) -> None:
    grid = load_grid(write(tmp_path, "name: t\nvariants: [rf/uniform, 'rf/lognorm(0.5,0.6)', 'edm(-1.2, 1.2)']\n"
                                     "train: {lr: 1e-3, max_steps: 4e2}\ndata:\n"))
    assert grid.variants == ("rf", "rf/lognorm(0.50, 0.60)", "edm(-1.20, 1.20)")
    assert grid.train.lr == 1e-3 and isinstance(grid.train.lr, float)
    assert grid.train.max_steps == 400 and isinstance(grid.train.max_steps, int)
    assert grid.data == grid_module.DataConfig()  # an empty section means defaults


# ---- overrides -------------------------------------------------------------------------------

def parse(argv: list[str]) -> GridOverrides:
    parser = argparse.ArgumentParser()
    add_override_arguments(parser)
    return overrides_from_args(parser.parse_args(argv))


def test_overrides_apply(tmp_path: Path, scorers: None) -> None:
    path = write(tmp_path, MINIMAL + "datasets: [fashion-mnist]\n")
    overrides = parse(["--dataset", "imagenet", "--dataset", "cc12m", "--variant", "rf/lognorm*",
                       "--variant", "v/cos", "--variant", "rf", "--seeds", "0,2,5", "--max-steps", "7",
                       "--num-samples", "9", "--results", str(tmp_path / "out"), "--data-dir", "/data"])
    grid = load_grid(path, overrides)
    assert grid.datasets == ("imagenet", "cc12m")
    assert grid.variants == ("rf", "rf/lognorm(0.00, 1.00)", "v/cos")  # file order, then new ones
    assert grid.seeds == (0, 2, 5)
    assert (grid.train.max_steps, grid.eval.num_samples, grid.data.data_dir) == (7, 9, "/data")
    assert grid.results_dir == tmp_path / "out" / "t"
    assert load_grid(path).results_dir == Path("results") / "t"


def test_exact_variant_override_is_canonicalised(tmp_path: Path, scorers: None) -> None:
    grid = load_grid(write(tmp_path, MINIMAL), parse(["--variant", "rf/lognorm(0, 1)", "--variant", "edm(0,0.6)"]))
    assert grid.variants == ("rf/lognorm(0.00, 1.00)", "edm(0.00, 0.60)")


def test_glob_matching_nothing_lists_variants(tmp_path: Path, scorers: None) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(write(tmp_path, MINIMAL), parse(["--variant", "edm*"]))
    message = str(err.value)
    assert "'edm*'" in message and "g.yaml" in message and "rf/mode(1.29)" in message


@pytest.mark.parametrize("argv,expected", [
    (["--max-steps", "0"], ["--max-steps", "g.yaml", "`train.max_steps`", ">= 1"]),
    (["--dataset", "mnist"], ["--dataset", "g.yaml", "`datasets[0]`", "'fashion-mnist'"]),
    (["--seeds", "1,1"], ["--seeds", "`seeds[1]`", "repeats"]),
    (["--variant", "rf/bogus"], ["--variant", "'rf/bogus'", "g.yaml", "lognorm(m, s)"]),
])
def test_bad_overrides(tmp_path: Path, scorers: None, argv: list[str], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_grid(write(tmp_path, MINIMAL + "train: {max_steps: 5}\n"), parse(argv))
    for piece in expected:
        assert piece in str(err.value), (piece, str(err.value))


@pytest.mark.parametrize("text", ["0-2", "a", "1,,2", ""])
def test_bad_seed_list(text: str) -> None:
    with pytest.raises(ConfigError, match="--seeds.*0,1,2"):
        parse(["--seeds", text])


# ---- cells and serialisation -----------------------------------------------------------------

def test_cells_count_order_and_ids(tmp_path: Path, scorers: None) -> None:
    grid = load_grid(write(tmp_path, MINIMAL + "datasets: [fashion-mnist, imagenet]\nseeds: [3, 1]\n"))
    cells = grid.cells()
    assert len(cells) == 3 * 2 * 2
    assert cells[0] == Cell("t", "rf", "fashion-mnist", 3)
    assert [c.variant for c in cells[:3]] == list(grid.variants)  # variants innermost, file order
    assert [(c.dataset, c.seed) for c in cells[::3]] == [
        ("fashion-mnist", 3), ("imagenet", 3), ("fashion-mnist", 1), ("imagenet", 1)]
    assert cells[1].id == "fashion-mnist--rf+lognorm_0.00_1.00--seed3"
    assert len({c.id for c in cells}) == len(cells)


def test_cell_ids_unique_over_the_papers_61(scorers: None) -> None:
    cells = load_grid("sd3-full").cells()
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert all(ch.isalnum() or ch in "+-_." for i in ids for ch in i)


def test_to_dict_is_json_and_round_trips(tmp_path: Path, scorers: None) -> None:
    grid = load_grid("smoke", GridOverrides(max_steps=11))
    data = grid.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["train"]["max_steps"] == 11 and data["eval"]["settings"][0] == {"steps": 50, "cfg": 1.0}
    assert "source" not in data and "results_root" not in data
    again = load_grid(write(tmp_path, yaml.safe_dump(data)))
    assert again.to_dict() == data
