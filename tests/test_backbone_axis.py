"""The backbone axis of a grid (cells, sizes per backbone, errors), Fashion-MNIST's caption mode, caption
conditioning through training (dropout to the null caption), and the leaderboard's verdict on rankings."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import ablate  # noqa: F401  (torchvision fix first)
from ablate.config.grid import GridOverrides, load_grid
from ablate.data import load_dataset
from ablate.data.class_captions import CONTEXT_LENGTH, TEMPLATES, caption_table
from ablate.data.conditioning import conditioning_of, null_conditioning
from ablate.data.fashion_mnist import CLASSES, SYNONYMS
from ablate.errors import ConfigError
from ablate.report.backbones import paper_comparison, ranking_verdict, within_ranks
from ablate.results import cell_dir


def write(tmp_path: Path, **keys) -> Path:
    grid = {"name": "axis", "variants": ["rf", "eps/linear"], "backbones": ["dit", "mmdit"],
            "data": {"conditioning": "caption"}, **keys}
    path = tmp_path / "axis.yaml"
    path.write_text(json.dumps(grid))
    return path


def test_backbones_cross_variants_and_name_each_cell(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, seeds=[0, 1]), GridOverrides(results=tmp_path))
    cells = grid.cells()
    assert [(c.backbone, c.variant) for c in cells[:4]] == [("dit", "rf"), ("dit", "eps/linear"),
                                                            ("mmdit", "rf"), ("mmdit", "eps/linear")]
    assert len({c.id for c in cells}) == 8 and cells[0].id == "fashion-mnist--rf--seed0"
    assert cells[2].id == "fashion-mnist--rf--seed0--mmdit"
    assert cell_dir(tmp_path, "axis", "fashion-mnist", "rf", 0, "mmdit").parent.name == "rf@mmdit"
    assert load_grid("smoke").backbones == ("dit",)  # the default


def test_sizes_per_backbone(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, model={"depth": 6, "by_backbone": {"mmdit": {"depth": 3, "num_heads": 2}}}))
    assert grid.model.for_backbone("dit").depth == 6
    mm = grid.model.for_backbone("mmdit")
    assert (mm.depth, mm.num_heads, mm.hidden_size, mm.by_backbone) == (3, 2, 64, {})


@pytest.mark.parametrize("keys, message", [
    ({"backbones": ["dit", "mmdti"]}, r"`backbones\[1\]` is 'mmdti'.*did you mean 'mmdit'"),
    ({"data": {"conditioning": "class"}}, r"attend to caption tokens.*data.conditioning: caption"),
    ({"model": {"by_backbone": {"uvit": {"depth": 2}}}}, r"not in `backbones`"),
    ({"model": {"by_backbone": {"mmdit": {"depht": 2}}}}, r"unknown key `model.by_backbone.mmdit.depht`"),
    ({"model": {"by_backbone": {"mmdit": {"num_heads": 3}}}}, r"model.by_backbone.mmdit.num_heads` is 3"),
])
def test_bad_backbone_keys_are_one_paragraph_errors(tmp_path: Path, keys: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_grid(write(tmp_path, **keys))
    assert "axis.yaml" in str(err.value) and "\n" not in str(err.value)


def test_fashion_mnist_captions_are_deterministic_offline_token_ids() -> None:
    info, splits = load_dataset("fashion-mnist", 16, conditioning="caption")
    assert "caption" in info.conditionings and info.caption_length == CONTEXT_LENGTH
    test = splits["test"]
    ids = test.text_tokens
    assert ids.shape == (len(test), CONTEXT_LENGTH) and ids.dtype == torch.long
    assert int(ids.max()) < info.caption_vocab and (ids[:, -1] == 0).all()  # short captions, padded
    table = caption_table(tuple(SYNONYMS[c] for c in CLASSES))
    assert len(table.captions) == sum(len(SYNONYMS[c]) for c in CLASSES) * len(TEMPLATES)
    for i in (0, 1, 2, 500):  # each item's caption names its own class, and its ids are that caption's
        caption = test.captions[i]
        assert any(name in caption for name in SYNONYMS[CLASSES[int(test.labels[i])]])
        assert torch.equal(ids[i], table.ids[table.captions.index(caption)])
    assert len({test.captions[i] for i in range(200)}) > 30  # templates and synonyms vary per item
    again = load_dataset("fashion-mnist", 16, conditioning="caption")[1]["test"]
    assert [again.captions[i] for i in range(50)] == [test.captions[i] for i in range(50)]
    plain = load_dataset("fashion-mnist", 16)[1]["test"]
    assert plain.text_tokens is None and plain.captions is None  # class mode is untouched
    cond = conditioning_of(test, torch.arange(4), "caption")
    assert torch.equal(cond, ids[:4]) and torch.equal(null_conditioning(cond, 10), torch.zeros_like(cond))


def test_caption_dropout_trains_on_the_null_caption(tmp_path: Path) -> None:
    """A training step replaces the dropped captions with the null caption (all padding)."""
    from ablate.engine.runner import cell_module

    grid = load_grid(write(tmp_path, model={"hidden_size": 32, "depth": 1, "num_heads": 2},
                           train={"cond_dropout": 0.5}))
    info, splits = load_dataset("fashion-mnist", 32, conditioning="caption")
    module = cell_module(grid, "rf", info, backbone="mmdit")
    seen = []
    module.net.encoder.register_forward_hook(lambda m, args, out: seen.append(args[0].clone()))
    ids = conditioning_of(splits["train"], torch.arange(64), "caption")
    module.training_step((splits["train"].latents[:64], ids), 0)
    dropped = (seen[0] == 0).all(1)
    assert 10 < int(dropped.sum()) < 54 and torch.equal(seen[0][~dropped], ids[~dropped])


def test_ranking_verdict_counts_swaps_not_ties() -> None:
    same = pd.DataFrame({"dit": [1.0, 2.0, 2.0], "mmdit": [1.0, 1.5, 3.0]}, index=["a", "b", "c"])
    assert "does not change" in ranking_verdict(same)
    swapped = pd.DataFrame({"dit": [1.0, 2.0], "uvit": [2.0, 1.0]}, index=["a", "b"])
    assert "changes" in ranking_verdict(swapped) and "a vs b" in ranking_verdict(swapped)


def test_within_backbone_ranks_follow_the_metrics_directions() -> None:
    """ckid (lower is better) and fd (lower is better): a variant better on both in every setting ranks first in its
    backbone. Ranked as if alignment were higher-is-better (the bug this guards), both would tie on the front."""
    rows = []
    for backbone in ("dit", "mmdit"):
        for steps in (5, 50):
            for variant, ckid, fd in (("rf", 2.0, 300.0), ("eps/linear", 4.0, 370.0)):
                for seed in (0, 1):
                    rows.append({"variant": variant, "backbone": backbone, "dataset": "fashion-mnist", "steps": steps,
                                 "cfg": 5.0, "time_grid": "own", "weights": "ema", "solver": "euler",
                                 "setting": f"euler-{steps}-cfg5-own-ema", "seed": seed,
                                 "ckid_effnet": ckid + 0.1 * seed, "fd_effnet": fd + seed,
                                 "scorers": {"effnet": {"metrics": {"ckid_effnet": {"higher_is_better": False},
                                                                    "fd_effnet": {"higher_is_better": False}}}}})
    ranks = within_ranks(pd.DataFrame(rows), "ckid_effnet", "fd_effnet")
    assert ranks.loc["rf"].tolist() == [1.0, 1.0] and ranks.loc["eps/linear"].tolist() == [2.0, 2.0]


def test_the_paper_comparison_places_mmdit_by_each_metrics_direction() -> None:
    """MM-DiT lowest in x0-MSE (first), highest in fd (last: lower is better), lowest in ckid (first: lower is
    better): first in 2 of 3 pairs, its place and Welch p against the best other backbone shown."""
    lower = {"higher_is_better": False}
    rows = [{"variant": "rf", "backbone": b, "seed": seed, "train_num_params": 1, "train_gflops_per_image": 1.0,
             "train_val_x0_mse": x0 + 0.001 * seed, "train_val_loss": 0.1, "fd_effnet": fd + seed, "ckid_effnet": ckid,
             "scorers": {"effnet": {"metrics": {"fd_effnet": lower, "ckid_effnet": lower}}}}
            for b, x0, fd, ckid in (("dit", 0.05, 300.0, 3.0), ("mmdit", 0.04, 400.0, 2.0), ("uvit", 0.06, 350.0, 4.0))
            for seed in (0, 1, 2)]
    table, verdict = paper_comparison(pd.DataFrame(rows), "ckid_effnet", "fd_effnet")
    assert table["MM-DiT's place"].tolist() == ["1 of 3", "3 of 3", "1 of 3"]
    assert table["backbones, best first (seed mean)"][1].startswith("dit 301")
    assert float(table["Welch p"][0]) < 0.01 and "first in 2 of 3" in verdict


def test_scale_fits_a_backbone_on_its_own_family(tmp_path: Path) -> None:
    """A scaling file with `backbones: [mmdit]` plans MM-DiT on SD3's size rule (d: width 64 d, d heads,
    depth d), with the caption encoder, its parameters and its measured FLOPs; two backbones are refused."""
    from ablate.cli import main
    from ablate.data.class_captions import CONTEXT_LENGTH
    from ablate.models.network import build_network
    from ablate.scaling.family import DataShape
    from ablate.scaling.plan import isoflop_points
    from ablate.scaling.spec import load_study

    smoke = (Path(__file__).resolve().parent.parent / "grids" / "scaling-smoke.yaml").read_text()
    text = smoke.replace("datasets: [fashion-mnist]", "datasets: [fashion-mnist]\nbackbones: [mmdit]").replace(
        "  conditioning: class", "  conditioning: caption").replace(
        "budgets: [6.0e10, 1.8e11]", "budgets: [4.0e11, 1.2e12]").replace("extrapolation: 5.4e11", "extrapolation: 4.0e12")
    file = tmp_path / "study.yaml"
    file.write_text(text)
    study = load_study(file, tmp_path)
    info, _ = load_dataset("fashion-mnist", 32, conditioning="caption")
    data = DataShape(32, 1, 0, 0, "mmdit", info, "caption")
    points = isoflop_points(study, data)
    by_size = {p.size.label: p for p in points}
    for d in (1, 2, 3):
        p = by_size[f"d{d}"]
        m = p.grid.model.for_backbone("mmdit")
        assert (m.hidden_size, m.num_heads, m.depth) == (64 * d, d, d) and p.grid.backbones == ("mmdit",)
    net = build_network(__import__("ablate.engine.train", fromlist=["x"]).network_config(
        by_size["d2"].grid.model, info, "caption", "mmdit"))
    assert by_size["d2"].num_params == sum(q.numel() for q in net.parameters())
    assert net.backbone.config.context_length == CONTEXT_LENGTH
    assert by_size["d3"].train_flops_per_image > by_size["d2"].train_flops_per_image > 0
    assert main(["scale", str(file), "--plan", "--results", str(tmp_path / "r")]) == 0
    file.write_text(text.replace("backbones: [mmdit]", "backbones: [mmdit, uvit]"))
    with pytest.raises(ConfigError, match="exactly one backbone"):
        load_study(file, tmp_path)
