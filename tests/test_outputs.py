"""Outputs go where the user said (issue 27): every command, run in a working directory that holds a published
``leaderboard/`` and with ``--results`` elsewhere, writes nothing in that directory nor in ``$HOME``; reports,
caches and queues land under ``--results`` (or an explicit ``--out`` / ``--cache-dir``). ``prepare`` (whose only
output is its required ``--out``) is checked in ``tests/test_prepare.py`` with that module's tiny models.

One tiny cell is trained (about 20 s); every other command reads its results or fails nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ablate.cli import main
from ablate.outputs import cache_dir, report_dir

REPO = Path(__file__).resolve().parent.parent
TINY = """\
name: tiny
variants: [rf]
data: {val_size: 32}
model: {patch_size: 8, hidden_size: 32, depth: 1, num_heads: 2}
train: {max_steps: 3, batch_size: 16, lr: 1.0e-3, warmup_steps: 2, val_every: 8, ema: {every: 1, decay: 0.9}}
eval: {num_samples: 8, batch_size: 8, settings: [{steps: 2, cfg: 1.0}], weights: [ema]}
"""
PUBLISHED = ("leaderboard/tiny.md", "leaderboard/scaling-smoke.md", "leaderboard/scaling-smoke-isoflop.png",
             "leaderboard/search-smoke.md", "cache/keep.txt")

THIRD_PARTY_CACHES = (".cache/matplotlib", ".config/matplotlib", ".cache/torch", ".cache/huggingface", ".triton")


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("outputs")
    grid = root / "grids" / "tiny.yaml"
    grid.parent.mkdir()
    grid.write_text(TINY)
    torch.save({"samples": torch.zeros(4, 1, 32, 32), "labels": torch.arange(4), "captions": ["a"] * 4},
               root / "batch.pt")
    return {"root": root, "grid": grid, "results": root / "results"}


def _run_in_clean_place(place: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        argv: list[str]) -> dict[str, bytes]:
    """Run ``argv`` in a working directory with a published leaderboard and an empty home; assert neither changed
    and the command succeeded; returns the files it added or changed under the results directory."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    for name in PUBLISHED:
        (cwd / name).parent.mkdir(parents=True, exist_ok=True)
        (cwd / name).write_text("published")
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("ABLATE_CACHE_DIR", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    results = place["results"]
    before_cwd, before_results = _files(cwd), _files(results) if results.exists() else {}
    code = main([a.replace("{results}", str(results)).replace("{grid}", str(place["grid"]))
                 .replace("{root}", str(place["root"])) for a in argv])
    assert code == 0
    assert _files(cwd) == before_cwd  # the published leaderboard/ and ./cache/ untouched, nothing new
    assert [f for f in _files(home) if not f.startswith(THIRD_PARTY_CACHES)] == []
    after = _files(results)
    return {k: v for k, v in after.items() if before_results.get(k) != v}


COMMANDS = [
    ("run", ["run", "{grid}", "--results", "{results}"], "tiny/leaderboard/tiny.md"),
    ("leaderboard", ["leaderboard", "--results", "{results}"], "tiny/leaderboard/tiny.md"),
    ("status", ["status", "{grid}", "--results", "{results}"], None),
    ("score", ["score", "{root}/batch.pt", "--scorer", "probe", "--dataset", "fashion-mnist"], None),
    ("bench", ["bench", "{grid}", "--steps", "1", "--warmup", "1", "--json", "{results}/bench.json"], "bench.json"),
    ("scale", ["scale", str(REPO / "grids" / "scaling-smoke.yaml"), "--results", "{results}", "--report-only"],
     "scaling-smoke/leaderboard/scaling-smoke.md"),
    ("search", ["search", str(REPO / "grids" / "search-smoke.yaml"), "--results", "{results}", "--report-only"],
     "search-smoke/leaderboard/search-smoke.md"),
]


@pytest.mark.parametrize("argv, written", [c[1:] for c in COMMANDS], ids=[c[0] for c in COMMANDS])
def test_every_command_writes_only_under_its_results(place: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                     written: str | None) -> None:
    if argv[0] != "run" and not (place["results"] / "tiny").exists():
        _run_in_clean_place(place, tmp_path / "first", monkeypatch, COMMANDS[0][1])  # alone (-k): its cell first
    if written is not None:
        (place["results"] / written).unlink(missing_ok=True)  # so that it must be written again, there
    changed = _run_in_clean_place(place, tmp_path, monkeypatch, argv)
    if written is not None:
        assert written in changed, sorted(changed)


def test_the_published_leaderboard_is_written_when_named(place: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", str(REPO / "grids" / "search-smoke.yaml"), "--results", str(place["results"]),
                 "--report-only", "--out", "leaderboard"]) == 0
    assert (tmp_path / "leaderboard" / "search-smoke.md").is_file()


def test_one_rule_for_reports_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABLATE_CACHE_DIR", raising=False)
    assert report_dir(tmp_path / "g", None) == tmp_path / "g" / "leaderboard"
    assert report_dir(tmp_path / "g", "leaderboard") == Path("leaderboard")
    assert cache_dir(tmp_path, None) == tmp_path / "cache"
    assert cache_dir(None, None) == Path("results") / "cache"
    assert cache_dir(tmp_path, "elsewhere") == Path("elsewhere")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "shared"))
    assert cache_dir(tmp_path / "r", None) == tmp_path / "shared"


def test_run_gives_its_cells_the_cache_under_its_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scorers' cache (probe weights, reference statistics) of a run is ``<results>/cache``, not ``./cache``."""
    import ablate.runs.workers as workers

    seen = {}

    def fake_run_grid(grid, ctx, options):  # type: ignore[no-untyped-def]
        seen["cache"] = ctx.cache_dir
        raise KeyboardInterrupt

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ABLATE_CACHE_DIR", raising=False)
    monkeypatch.setattr(workers, "run_grid", fake_run_grid)
    main(["run", str(REPO / "grids" / "smoke.yaml"), "--results", str(tmp_path / "r"), "--device", "cpu"])
    assert seen["cache"] == tmp_path / "r" / "cache"
