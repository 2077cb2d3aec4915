"""The README's quick start on a fresh machine (issue 10): no network, no Debian dataset package, no
download cache. ``python -m ablate run grids/smoke.yaml`` must find the Fashion-MNIST copy shipped in
the package, train, sample, score with the probe and print and write a leaderboard.

The grid is the quick start's own (grids/smoke.yaml), cut down by its command-line overrides to two
variants, 30 steps and 20 samples per setting. The probe scorer's cache is the repository's ``cache/``
(shared with the Ctrl-C test and the nox smoke session): in a fresh clone the first of them trains it
once (a few minutes on one CPU thread); after that this test takes well under a minute.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.data import fashion_mnist
from ablate.results import ResultsStore

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("rf/lognorm(0.00, 1.00)", "eps/linear")


def test_quick_start_uses_the_shipped_dataset_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the quick start must not download anything")

    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian-package")
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "no-download-cache"))
    monkeypatch.setattr(fashion_mnist.urllib.request, "urlopen", no_network)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)  # a working directory without the repository's leaderboard/ or cache/
    results = tmp_path / "results"
    argv = ["run", str(REPO / "grids" / "smoke.yaml"), "--results", str(results), "--max-steps", "30",
            "--num-samples", "20", "--cache-dir", str(REPO / "cache"), "--device", "cpu",
            "--workers", "1"]  # in this process, where the patches above hold (a plain CPU run starts one worker per CPU)
    for variant in VARIANTS:
        argv += ["--variant", variant]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Table 1" in printed and all(v in printed for v in VARIANTS)

    frame = ResultsStore(results).frame("smoke")
    assert sorted(frame["variant"].unique()) == sorted(VARIANTS)
    assert len(frame) == len(VARIANTS) * 6 and set(frame["weights"]) == {"ema"}  # the six paper settings, EMA weights
    assert all(math.isfinite(v) for v in (*frame["fd_probe"], *frame["align_probe"]))
    assert set(frame["train_max_steps"]) == {30} and all(math.isfinite(v) for v in frame["train_val_loss"])
    for record in frame["record"]:
        assert record["dataset_provenance"]["origin"] == "embedded"
        assert record["dataset_provenance"]["source"] == str(fashion_mnist.EMBEDDED_DIR.resolve())
        assert len(record["scorers"]["probe"]["weights_sha256"]) == 64
    board = results / "smoke" / "leaderboard" / "smoke.md"
    assert all(v in board.read_text() for v in VARIANTS)
    assert not (tmp_path / "leaderboard").exists()
