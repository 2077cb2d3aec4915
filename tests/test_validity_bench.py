"""The effnet scorer with its real weights, and a small validity bench (64 images x 2 seeds) asserted on.

Cost on one CPU thread: ~35-60 s in all (the 640-image reference and ~4k images through EfficientNet-Lite0
at 64 px, ~150 img/s; the probe is cheap). The full bench (`python -m ablate metrics check`, 250 images x 3
seeds) made leaderboard/validity-fashion-mnist.md.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.data import fashion_mnist
from ablate.errors import ScorerUnavailableError
from ablate.report import validity
from ablate.scorers import effnet
from ablate.scorers.base import ScoreContext, get_scorer
from ablate.validity.bench import held_out_pool, result_document, run_bench
from ablate.validity.corruptions import CORRUPTIONS, corruption

OPTIONS = {"effnet": {"reference_count": 640}}


@pytest.fixture(scope="module")
def data():
    return fashion_mnist.load(32, None)


@pytest.fixture(scope="module")
def ctx(data, tmp_path_factory):
    return ScoreContext(dataset=data[0], cache_dir=tmp_path_factory.mktemp("cache"), options=OPTIONS)


def test_effnet_metrics_move_the_right_way_and_say_what_they_are(ctx, data):
    scorer = get_scorer("effnet", ctx)
    scorer.check_available()
    train = data[1]["train"]
    x, y = train.latents[:96], train.labels[:96]
    clean = scorer.score(x, y, [""] * 96)
    noisy = scorer.score((x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1),
                         y, [""] * 96)
    shuffled = scorer.score(x, (y + 1) % 10, [""] * 96)
    assert noisy["kid_effnet"] > clean["kid_effnet"] + 0.5 and noisy["fd_effnet"] > clean["fd_effnet"]
    assert noisy["precision_effnet"] < clean["precision_effnet"]
    assert shuffled["ckid_effnet"] > clean["ckid_effnet"] + 0.5 and shuffled["kid_effnet"] == clean["kid_effnet"]
    blocks = scorer.resamples()["kid_effnet"]
    assert len(blocks) == 6 and np.mean(blocks) == pytest.approx(shuffled["kid_effnet"])
    halves = scorer.replicates()["fd_effnet"]                      # on 10 random halves: above the plug-in, near it
    assert len(halves) == 10 and np.std(halves) > 0 and 1 < np.mean(halves) / shuffled["fd_effnet"] < 1.5
    prov = scorer.provenance()
    assert prov["weights_sha256"] == effnet.WEIGHTS_SHA256 and "64x64" in prov["preprocess"]
    assert "not Inception" in prov["not"] and not any("fid" in m.name for m in scorer.metrics)


def test_effnet_weights_by_path_and_a_wrong_file_refused(ctx, tmp_path):
    installed = effnet.weights_request(None).find_in_cache()
    assert installed is not None and hashlib.sha256(installed.read_bytes()).hexdigest() == effnet.WEIGHTS_SHA256
    shutil.copy(installed, tmp_path / effnet.WEIGHTS_FILE)
    given = ScoreContext(dataset=ctx.dataset, cache_dir=ctx.cache_dir, weights_dir=tmp_path, options=OPTIONS)
    scorer = get_scorer("effnet", given)
    assert scorer.weights_path() == tmp_path / effnet.WEIGHTS_FILE
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / effnet.WEIGHTS_FILE).write_bytes(b"not weights")
    bad = ScoreContext(dataset=ctx.dataset, cache_dir=ctx.cache_dir, weights_dir=tmp_path / "bad", options=OPTIONS)
    with pytest.raises(ScorerUnavailableError, match="SHA-256"):
        get_scorer("effnet", bad).check_available()


@pytest.fixture(scope="module")
def bench(ctx, data):
    info, splits = data
    pool, name = held_out_pool(info, splits)
    scorers = [get_scorer("probe", ctx), get_scorer("effnet", ctx)]
    scored = run_bench(scorers, info, pool, 64, [0, 1])
    return result_document(info.name, name, 64, [0, 1], scored, {"clip": "not available"}, {"git_commit": "t"})


def _means(doc, metric: str, name: str) -> np.ndarray:
    return np.array(validity.metrics_of(doc)[metric][1]["values"][name]).mean(1)


@pytest.mark.parametrize("name", [c.name for c in CORRUPTIONS if c.kind != "labels"])
def test_every_corruption_at_full_strength_makes_kid_effnet_worse(bench, name):
    for metric in ("kid_effnet", "fd_effnet"):
        m = _means(bench, metric, name)
        assert m[-1] > m[0], (metric, name, m)


def test_noise_never_makes_a_blurred_set_look_better_to_kid_effnet(bench):
    m = _means(bench, "kid_effnet", "blur+noise")
    assert (np.diff(m) > 0).all(), m
    assert corruption("blur+noise").strengths[0] == 0.0


def test_shuffled_labels_make_the_alignment_metrics_worse_at_every_step(bench):
    assert (np.diff(_means(bench, "ckid_effnet", "shuffle labels")) > 0).all()
    assert (np.diff(_means(bench, "align_probe", "shuffle labels")) < 0).all()
    assert np.ptp(_means(bench, "kid_effnet", "shuffle labels")) == 0.0   # labels do not touch the images


def test_recall_sees_mode_collapse_and_precision_does_not_punish_it(bench):
    recall = _means(bench, "recall_effnet", "drop classes")
    assert recall[-1] < 0.5 * recall[0]
    for v in validity.verdicts(bench, "precision_effnet"):
        if v.corruption in ("drop classes", "memorise"):
            assert v.status == "not judged"


def test_the_bench_result_renders_with_its_verdicts(bench):
    text = validity.render_markdown(bench, "x.png")
    assert "| kid_effnet |" in text and "clip: not available" in text
    assert validity.plot(bench)[:8] == b"\x89PNG\r\n\x1a\n"
    merged = validity.merge(bench, {**bench, "scorers": {"probe": bench["scorers"]["probe"]}, "skipped": {}})
    assert set(merged["scorers"]) == {"probe", "effnet"}
