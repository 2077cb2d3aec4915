"""Bad input to `python -m ablate scale` gets one clear paragraph (file, key, value, what is allowed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import ablate  # noqa: F401  (before lightning)
from ablate.cli import main

SMOKE = Path(__file__).resolve().parent.parent / "grids" / "scaling-smoke.yaml"


def scale(capsys, tmp_path: Path, text: str, *extra: str) -> SimpleNamespace:
    file = tmp_path / "study.yaml"
    file.write_text(text)
    code = main(["scale", str(file), "--plan", "--results", str(tmp_path / "results"), *extra])
    out, err = capsys.readouterr()
    return SimpleNamespace(code=code, out=out, message=" ".join(err.split()))


def expect_error(result: SimpleNamespace, *fragments: str) -> None:
    assert result.code == 2, (result.out, result.message)
    assert result.message.startswith("error:") and "Traceback" not in result.message
    for fragment in fragments:
        assert fragment in result.message, result.message


BAD = [
    ("no scaling section", lambda t: t.split("\nscaling:")[0], ["study.yaml", "`scaling` is missing", "sizes"]),
    ("family key in model", lambda t: t.replace("  mlp_ratio: 4.0", "  mlp_ratio: 4.0\n  depth: 4"),
     ["study.yaml, line", "`model.depth`", "scaling family", "mlp_ratio"]),
    ("max_steps given", lambda t: t.replace("  batch_size: 16", "  batch_size: 16\n  max_steps: 100"),
     ["`train.max_steps`", "derived from each budget"]),
    ("unknown size", lambda t: t.replace("sizes: [d1, d2, d3]", "sizes: [d1, d2, huge]"),
     ["`scaling.sizes[2]`", "'huge'", "not a valid model size", "d<depth>"]),
    ("sizes as numbers", lambda t: t.replace("sizes: [d1, d2, d3]", "sizes: [1, 2, 3]"),
     ["`scaling.sizes[0]`", "(an integer)", "'d4'"]),
    ("too few sizes", lambda t: t.replace("sizes: [d1, d2, d3]", "sizes: [d1, d2]"),
     ["`scaling.sizes`", "at least 3 sizes"]),
    ("negative budget", lambda t: t.replace("budgets: [6.0e10, 1.8e11]", "budgets: [-6.0e10, 1.8e11]"),
     ["`scaling.budgets[0]`", "-6", "> 0"]),
    ("extrapolation not larger", lambda t: t.replace("extrapolation: 5.4e11", "extrapolation: 1.0e11"),
     ["`scaling.extrapolation`", "100000000000.0", "larger than every one of `scaling.budgets`"]),
    ("patch does not divide", lambda t: t.replace("patch_size: 8 ", "patch_size: 5 "),
     ["`scaling.patch_size`", "5", "dividing `data.resolution` = 32"]),
    ("typo in scaling", lambda t: t.replace("  bootstrap: 1000", "  bootstrapp: 1000"),
     ["`scaling.bootstrapp`", "Did you mean `scaling.bootstrap`"]),
    ("budget too small", lambda t: t.replace("budgets: [6.0e10, 1.8e11]", "budgets: [1.0e9, 1.8e11]"),
     ["study.yaml", "`scaling.budgets[0]` for d1-p8", "within 2%", "at least"]),
    ("warm-up too long", lambda t: t.replace("warmup_steps: 10", "warmup_steps: 20"),
     ["`train.warmup_steps` is 20", "d3-p8", "28 steps", "at most half"]),
    ("two datasets", lambda t: t.replace("datasets: [fashion-mnist]", "datasets: [fashion-mnist, imagenet]"),
     ["`datasets`", "exactly one dataset"]),
]


@pytest.mark.parametrize("case,edit,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_scaling_file(capsys, tmp_path, case, edit, fragments) -> None:
    text = SMOKE.read_text()
    changed = edit(text)
    assert changed != text, f"the edit for {case!r} no longer matches grids/scaling-smoke.yaml"
    expect_error(scale(capsys, tmp_path, changed), *fragments)


def test_missing_file_and_empty_options(capsys, tmp_path) -> None:
    code = main(["scale", str(tmp_path / "nope.yaml"), "--plan"])
    message = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "nope.yaml" in message and "does not exist" in message
    expect_error(scale(capsys, tmp_path, SMOKE.read_text(), "--out", " "), "--out is empty")


def test_plan_of_the_smoke_file(capsys, tmp_path) -> None:
    result = scale(capsys, tmp_path, SMOKE.read_text())
    assert result.code == 0, result.message
    assert "study.d3-p8-c6e10" not in result.out  # named after the study's `name`, not the file
    assert "scaling-smoke.d3-p8-c6e10" in result.out and "scaling-smoke.d1-p16-s40" in result.out
    assert not (tmp_path / "results").exists()  # --plan trains nothing


def test_shards_partition_the_cells_and_share_the_flops(capsys, tmp_path) -> None:
    import re

    def planned(*extra: str) -> dict[str, float]:
        result = scale(capsys, tmp_path, SMOKE.read_text(), *extra)
        assert result.code == 0, result.message
        return {m[0]: float(m[1]) for m in re.findall(r"^  (\S+): N=\S+ steps=\d+ FLOPs=(\S+)", result.out, re.M)}

    whole = planned()
    shares = [planned("--shard", f"{k}/3") for k in (1, 2, 3)]
    assert sorted(name for s in shares for name in s) == sorted(whole)  # each grid in exactly one share
    costs = [sum(s.values()) for s in shares]
    assert max(costs) - min(costs) <= max(whole.values())  # round robin by cost: within one grid of each other
    for bad in ("0/3", "4/3", "1", "a/b"):
        expect_error(scale(capsys, tmp_path, SMOKE.read_text(), "--shard", bad), f"--shard {bad!r}", "K/N")


def test_shards_deal_the_extrapolation_cells_of_the_formulations_whose_isoflop_cells_are_done(monkeypatch,
                                                                                             tmp_path) -> None:
    """After its isoFLOP share, `--shard K/N` fits the formulations whose isoFLOP cells all have records (other
    shards' included) and trains its share of their extrapolation cells, dealt from the last shard (the first
    shards hold the largest isoFLOP grids); the N shares partition those cells."""
    import pandas as pd

    import ablate.scaling.analysis as analysis
    import ablate.scaling.collect as collect
    import ablate.scaling.extrapolate as extrapolate
    from ablate.commands.scale import _extrapolation_share, shard
    from ablate.scaling.family import DataShape, model_size
    from ablate.scaling.plan import isoflop_points, make_point
    from ablate.scaling.spec import load_study

    study = load_study(SMOKE, tmp_path / "results")
    data = DataShape(32, 1, 10)
    iso = isoflop_points(study, data)
    every = pd.DataFrame([{"label": p.label, "variant": v, "seed": seed}
                          for p in iso for v in p.grid.variants for seed in p.grid.seeds])
    extra = [make_point(study, data, "extrapolation", model_size(s), 8, budget=5.4e11, variants=("rf/lognorm(0.00, 1.00)",))
             for s in ("d2", "d3")]
    state: dict = {"rows": every.iloc[1:]}  # one cell of the first formulation still running elsewhere
    fitted: list[list[str]] = []
    monkeypatch.setattr(collect, "collect", lambda points: (state["rows"], None, None))
    monkeypatch.setattr(analysis, "fit_study", lambda rows, scaling: fitted.append(sorted(set(rows["variant"]))) or {})
    monkeypatch.setattr(extrapolate, "extrapolation_points", lambda study, data, fits: list(extra))
    first, second = study.base.variants
    assert every["variant"].iloc[0] == first
    _extrapolation_share(study, data, iso, "1/2")
    assert fitted == [[second]]  # only the formulation whose isoFLOP cells are all recorded is fitted
    state["rows"] = every[every["variant"] == "none"]
    assert _extrapolation_share(study, data, iso, "1/2") == [] and len(fitted) == 1  # nothing ready: no fit
    state["rows"] = every
    shares = [_extrapolation_share(study, data, iso, f"{k}/2") for k in (1, 2)]
    assert sorted(p.grid.name for s in shares for p in s) == sorted(p.grid.name for p in extra)
    assert [p.grid.name for p in shares[1]] == [p.grid.name for p in shard(extra, "1/2")]  # the last shard first
