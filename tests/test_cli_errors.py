"""Bad input to `python -m ablate run` gets one clear paragraph and no traceback (issue 3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = Path(__file__).resolve().parent.parent / "grids" / "smoke.yaml"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ablate", *args], capture_output=True, text=True, cwd=cwd,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(SMOKE.parent.parent)},
                          timeout=120)


def assert_one_paragraph(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    err = proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stdout, err)
    assert "Traceback" not in err and "Traceback" not in proc.stdout
    message = " ".join(err.split())
    assert message.startswith("error:"), err
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_variant(tmp_path):
    proc = run_cli("run", str(SMOKE), "--variant", "rf/lognorm(0, -1)", "--results", str(tmp_path), cwd=tmp_path)
    assert_one_paragraph(proc, "lognorm", "must be > 0")


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nvariants: [rf\ntrain: {max_steps: 3}\n")
    proc = run_cli("run", str(bad), cwd=tmp_path)
    assert_one_paragraph(proc, "bad.yaml", "line")


def test_key_typo(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text(SMOKE.read_text().replace("train:", "trian:", 1))
    proc = run_cli("run", str(bad), cwd=tmp_path)
    assert_one_paragraph(proc, "typo.yaml", "trian", "train")


def test_missing_dataset(tmp_path):
    proc = run_cli("run", str(SMOKE), "--dataset", "imagenet", "--data-dir", str(tmp_path / "nowhere"),
                   "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert_one_paragraph(proc, "imagenet")
    assert not any((tmp_path / "r").rglob("*.json"))  # nothing half-written


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = run_cli("run", str(SMOKE), "--results", str(blocker / "results"), cwd=tmp_path)
    assert_one_paragraph(proc, str(blocker), "--results")


def test_help_lists_commands(tmp_path):
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("run", "leaderboard", "prepare", "score", "bench"):
        assert command in proc.stdout
