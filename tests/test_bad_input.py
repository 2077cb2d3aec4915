"""Bad input, everywhere (issue 10): one table of command lines that must each end in one clear paragraph.

Every row is (id, argv, files to create, fragments the message must contain). Each case runs
``ablate.cli.main`` in this process, in a fresh working directory, and must: exit 2; print no
traceback; print a message that begins ``error:`` and contains every fragment (the file, key or value
at fault and what is allowed); and leave no file behind that was not there before (nothing
half-written, in the results directory or anywhere else under the working directory).

In argv and file names, ``{tmp}`` is the case's working directory and ``{smoke}`` the shipped smoke
grid. A file's content is text, bytes, or ``DIR`` (an empty directory). The first rows are the rich
markup crashes of the QA pass: before the fix each of them ended in ``rich.errors.MarkupError``.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from ablate.cli import main
from ablate.data import fashion_mnist
from ablate.results import ResultsStore, provenance_stamp

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "grids" / "smoke.yaml"
SHIPPED = fashion_mnist.EMBEDDED_DIR
DIR = object()  # a file-table value: make an empty directory
RESULTS = "{tmp}/results"
TRAJECTORIES = "Valid trajectories: rf, eps/linear"  # the variant help, with its "[/<sampler>]"
NAME_HELP = "<trajectory>[/<sampler>][/shift(alpha)]"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    files: dict[str, object] = field(default_factory=dict)
    records: bool = False  # write one valid result record of grid "smoke" under {tmp}/results first


def run_variant(variant: str, *fragments: str) -> Case:
    return Case(f"run --variant {variant}", ("run", "{smoke}", "--variant", variant, "--results", RESULTS),
                (f"--variant {variant!r}", *fragments))


def grid_file(text: str) -> dict[str, object]:
    return {"grid.yaml": text}


def fmnist_dir(broken: str | None = None, payload: bytes = b"") -> dict[str, object]:
    """A --data-dir with the four Fashion-MNIST files, ``broken`` replaced by ``payload``."""
    files: dict[str, object] = {f"fm/{name}": (SHIPPED / name).read_bytes() for name in fashion_mnist.FILES
                                if name != broken}
    if broken:
        files[f"fm/{broken}"] = payload
    return files


def truncated(name: str) -> bytes:
    return (SHIPPED / name).read_bytes()[:4000]


TINY = "name: tiny\nvariants: [rf]\n"
CASES: list[Case] = [
    # ---- the ten rich-markup crashes of the QA pass (each printed a MarkupError traceback before)
    run_variant("edm(a)", "'a' in 'edm(a)'", "is not a number", NAME_HELP),
    run_variant("rf/lognorm(0.00, 1.00", "Cannot read 'lognorm(0.00, 1.00'", NAME_HELP),
    Case("grid: unquoted variants list", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "line 2", "variants[0]", "'rf/lognorm(0.00'", "not a valid variant", NAME_HELP),
         grid_file("name: t\nvariants: [rf/lognorm(0.00, 1.00), rf]\n")),
    run_variant("x0/linear", "Cannot read 'x0' in variant 'x0/linear'", TRAJECTORIES, NAME_HELP),
    run_variant("rf/mode(a)", "'a' in 'mode(a)'", "is not a number", NAME_HELP),
    run_variant("eps/lin", "Unknown trajectory 'eps'", TRAJECTORIES),
    run_variant("v/cosine", "Unknown trajectory 'v'", TRAJECTORIES),
    run_variant("EDM", "Cannot read 'EDM'", NAME_HELP),
    run_variant("rf/lognorm(0, 1)/mode(1)", "Unexpected 'mode'", NAME_HELP),
    Case("grid: variant edm(a) in the file", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "line 4", "variants[1]", "'edm(a)'", NAME_HELP),
         grid_file("name: t\nvariants:\n  - rf\n  - edm(a)\n")),
    # ---- run: the grid file and its overrides
    Case("run: missing grid file", ("run", "{tmp}/nope.yaml"), ("nope.yaml", "does not exist", "smoke")),
    Case("run: grid path is a directory", ("run", "{tmp}/adir"), ("adir", "is a directory", "smoke"),
         {"adir": DIR}),
    Case("run: empty grid file", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "is empty", "`name` and `variants`"),
         grid_file("")),
    Case("run: malformed YAML", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "line", "not valid YAML"),
         grid_file("name: bad\nvariants: [rf\ntrain: {max_steps: 3}\n")),
    Case("run: key typo", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "trian", "train"),
         grid_file(TINY + "trian: {max_steps: 3}\n")),
    Case("run: bad grid name", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "name", "'a/b'", "letters, digits"),
         grid_file("name: a/b\nvariants: [rf]\n")),
    Case("run: duplicate variant spellings", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "variants", "rf/uniform"),
         grid_file("name: t\nvariants: [rf, rf/uniform]\n")),
    Case("run: zero sampling steps", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "eval.settings[0].steps", "0"),
         grid_file(TINY + "eval: {settings: [{steps: 0, cfg: 1.0}]}\n")),
    Case("run: heads do not divide width", ("run", "{tmp}/grid.yaml"),
         ("grid.yaml", "model.num_heads", "does not divide"), grid_file(TINY + "model: {hidden_size: 64, num_heads: 5}\n")),
    Case("run: unknown scorer", ("run", "{tmp}/grid.yaml"), ("grid.yaml", "eval.scorers", "'nope'", "probe"),
         grid_file(TINY + "eval: {scorers: [nope]}\n")),
    Case("run: unknown dataset", ("run", "{smoke}", "--dataset", "mnist", "--results", RESULTS),
         ("--dataset", "'mnist'", "fashion-mnist")),
    Case("run: bad --seeds", ("run", "{smoke}", "--seeds", "0..2", "--results", RESULTS),
         ("--seeds '0..2'", "non-negative integers")),
    Case("run: --max-steps 0", ("run", "{smoke}", "--max-steps", "0", "--results", RESULTS),
         ("--max-steps", "train.max_steps", "0")),
    Case("run: --num-samples -5", ("run", "{smoke}", "--num-samples", "-5", "--results", RESULTS),
         ("--num-samples", "eval.num_samples", "-5")),
    Case("run: --variant pattern matching nothing", ("run", "{smoke}", "--variant", "zz*", "--results", RESULTS),
         ("--variant 'zz*'", "matches none", "rf/lognorm(0.00, 1.00)")),
    Case("run: --variant out of range", ("run", "{smoke}", "--variant", "rf/lognorm(0, -1)", "--results", RESULTS),
         ("--variant 'rf/lognorm(0, -1)'", "must be > 0")),
    Case("run: results root is a file", ("run", "{smoke}", "--results", "{tmp}/blocker/results"),
         ("blocker", "--results"), {"blocker": "not a directory"}),
    Case("run: empty --results", ("run", "{smoke}", "--results", ""), ("--results is empty", "directory path")),
    Case("run: empty --data-dir", ("run", "{smoke}", "--data-dir", " ", "--results", RESULTS),
         ("--data-dir", "`data.data_dir` is ' '", "a directory path")),
    Case("run: blank data.data_dir in the file", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "line 3", "`data.data_dir` is ''"), grid_file(TINY + "data: {data_dir: ''}\n")),
    # ---- command lines argparse refuses (same format: one paragraph, error: first)
    Case("run: --max-steps abc", ("run", "{smoke}", "--max-steps", "abc"),
         ("python -m ablate run: argument --max-steps: invalid int value: 'abc'", "--help")),
    Case("run: --workers 0", ("run", "{smoke}", "--workers", "0"), ("argument --workers", "'0' is not a positive integer")),
    Case("run: no grid", ("run",), ("python -m ablate run", "required: grid")),
    Case("leaderboard: --format xml", ("leaderboard", "--format", "xml"), ("--format", "'xml'", "'table', 'markdown', 'csv'")),
    Case("prepare: no dataset", ("prepare",), ("python -m ablate prepare", "required: DATASET")),
    Case("prepare: unknown dataset", ("prepare", "laion"), ("'laion'", "'imagenet', 'cc12m'")),
    Case("bench: --device tpu", ("bench", "--device", "tpu"), ("--device", "'tpu'", "'auto', 'cpu', 'cuda'")),
    # ---- run: devices, storage
    Case("run: --device cuda without a GPU", ("run", "{smoke}", "--device", "cuda", "--results", RESULTS),
         ("--device 'cuda'", "no CUDA GPU", "cpu")),
    Case("run: --storage sqlite:/// without a file", ("run", "{smoke}", "--storage", "sqlite:///", "--results", RESULTS),
         ("--storage 'sqlite:///'", "names no database file", "sqlite:///PATH")),
    Case("run: --storage of an unknown kind", ("run", "{smoke}", "--storage", "journal.log", "--results", RESULTS),
         ("--storage 'journal.log'", "sqlite:///PATH", "postgresql://")),
    # ---- run: the Fashion-MNIST --data-dir
    Case("run: --data-dir missing", ("run", "{smoke}", "--data-dir", "{tmp}/nowhere", "--results", RESULTS),
         ("nowhere", "does not exist", "train-images-idx3-ubyte.gz", "copy shipped with ablate")),
    Case("run: --data-dir empty", ("run", "{smoke}", "--data-dir", "{tmp}/empty", "--results", RESULTS),
         ("empty", "lacks train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz", "fashion-mnist/ sub-folder"),
         {"empty": DIR}),
    Case("run: --data-dir is a file", ("run", "{smoke}", "--data-dir", "{tmp}/afile", "--results", RESULTS),
         ("afile", "is a file, not a directory"), {"afile": "x"}),
    Case("run: --data-dir with a truncated gzip", ("run", "{smoke}", "--data-dir", "{tmp}/fm", "--results", RESULTS),
         ("t10k-images-idx3-ubyte.gz", "truncated or corrupt", "EOFError"),
         fmnist_dir("t10k-images-idx3-ubyte.gz", truncated("t10k-images-idx3-ubyte.gz"))),
    Case("run: --data-dir with a wrong file", ("run", "{smoke}", "--data-dir", "{tmp}/fm", "--results", RESULTS),
         ("t10k-labels-idx1-ubyte.gz", "not the canonical Fashion-MNIST file", "SHA-256"),
         fmnist_dir("t10k-labels-idx1-ubyte.gz", gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100))),
    Case("run: imagenet not prepared", ("run", "{smoke}", "--dataset", "imagenet", "--data-dir", "{tmp}/nowhere",
                                        "--results", RESULTS), ("imagenet", "nowhere", "ablate prepare imagenet")),
    # ---- leaderboard
    Case("leaderboard: no results", ("leaderboard", "--results", "{tmp}/nothing"),
         ("nothing", "No results found", "python -m ablate run grids/smoke.yaml")),
    Case("leaderboard: no records of that grid", ("leaderboard", "--results", RESULTS, "--grid", "other"),
         ("'other'", "Grids with results there: smoke"), records=True),
    Case("leaderboard: bad grid name", ("leaderboard", "--results", RESULTS, "--grid", "../x"), ("'../x'",),
         records=True),
    Case("leaderboard: unknown fidelity metric", ("leaderboard", "--results", RESULTS, "--fidelity", "fid_inception"),
         ("fid_inception", "fd_probe"), records=True),
    Case("leaderboard: a corrupt record", ("leaderboard", "--results", RESULTS),
         ("bad.json", "cannot be read", "delete it"),
         {"results/smoke/fashion-mnist/rf/seed0/records/bad.json": "{not json"}),
    Case("leaderboard: --storage (records are not in a storage)", ("leaderboard", "--storage", "sqlite:///{tmp}/s.db"),
         ("--storage", "read from the results directory", "--results DIR")),
    Case("leaderboard: --storage with --grid", ("leaderboard", "--storage", "sqlite:///", "--grid", "smoke"),
         ("--storage 'sqlite:///'", "holds no records")),
    Case("leaderboard: --out is a file", ("leaderboard", "--results", RESULTS, "--out", "{tmp}/blocker"),
         ("blocker", "Cannot write"), {"blocker": "x"}, records=True),
    # ---- status
    Case("status: --storage sqlite:///", ("status", "{smoke}", "--storage", "sqlite:///"),
         ("--storage 'sqlite:///'", "names no database file", "sqlite:///PATH")),
    Case("status: --storage sqlite:// (two slashes)", ("status", "{smoke}", "--storage", "sqlite://x.db"),
         ("--storage 'sqlite://x.db'", "sqlite:///PATH")),
    Case("status: --storage unknown", ("status", "{smoke}", "--storage", "redis://h"),
         ("--storage 'redis://h'", "postgresql://")),
    Case("status: missing grid", ("status", "{tmp}/nope.yaml"), ("nope.yaml", "does not exist")),
    Case("status: edm(a) override", ("status", "{smoke}", "--variant", "edm(a)"), ("'edm(a)'", NAME_HELP)),
    # ---- score
    Case("score: missing path", ("score", "{tmp}/none.pt"), ("none.pt", "neither a folder of images nor a .pt")),
    Case("score: not a tensor file", ("score", "{tmp}/junk.pt", "--scorer", "probe"),
         ("junk.pt", "cannot be read as a tensor dict", "torch.save"),
         {"junk.pt": b"not a pickle"}),
    Case("score: bad --option", ("score", "{tmp}/batch.pt", "--option", "model"), ("--option 'model'", "KEY=VALUE")),
    Case("score: unknown scorer", ("score", "{tmp}/batch.pt", "--scorer", "nope"), ("'nope'", "probe")),
    Case("score: --device cuda without a GPU", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--device", "cuda"),
         ("--device 'cuda'", "no CUDA GPU")),
    Case("score: --device nonsense", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--device", "gpu0"),
         ("--device 'gpu0'", "cpu", "cuda")),
    Case("score: captions of the wrong length", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--captions",
                                                 "{tmp}/caps.txt"), ("caps.txt", "1 lines", "4 samples"),
         {"caps.txt": "one\n"}),
    Case("score: --data-dir empty", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--dataset", "fashion-mnist",
                                     "--data-dir", "{tmp}/empty"), ("empty", "lacks"), {"empty": DIR}),
    # ---- prepare
    Case("prepare: imagenet root missing", ("prepare", "imagenet", "--root", "{tmp}/nope", "--out", "{tmp}/out",
                                            "--gpus", "cpu"), ("nope", "not a directory")),
    Case("prepare: imagenet root without images", ("prepare", "imagenet", "--root", "{tmp}/root", "--out",
                                                   "{tmp}/out", "--gpus", "cpu"), ("root", "No images were found"),
         {"root": DIR}),
    Case("prepare: cc12m shards missing", ("prepare", "cc12m", "--shards", "{tmp}/{0..1}.tar", "--out", "{tmp}/out",
                                           "--gpus", "cpu"), ("0.tar", "do not exist")),
    Case("prepare: bad --gpus", ("prepare", "imagenet", "--root", "{tmp}/root", "--out", "{tmp}/out", "--gpus",
                                 "many"), ("--gpus", "'many'"), {"root": DIR}),
    # ---- bench
    Case("bench: unknown grid", ("bench", "nope"), ("'nope'", "does not exist", "smoke")),
    Case("bench: unknown DiT preset", ("bench", "smoke", "--model", "Z/9"), ("--model 'Z/9'", "S/2, S/4")),
    Case("bench: --steps 0", ("bench", "smoke", "--steps", "0"), ("--steps is 0", "positive integer")),
    Case("bench: --device cuda without a GPU", ("bench", "smoke", "--device", "cuda"), ("--device 'cuda'", "no CUDA GPU")),
]


def _write_files(root: Path, files: dict[str, object]) -> None:
    for name, content in files.items():
        path = root / name
        if content is DIR:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))


def _write_batch(root: Path) -> None:
    """A valid 4-sample Fashion-MNIST-shaped batch, as the evaluator saves it."""
    torch.save({"samples": torch.zeros(4, 1, 32, 32), "labels": torch.arange(4), "captions": ["a"] * 4},
               root / "batch.pt")


def _write_record(root: Path) -> None:
    ResultsStore(root / "results").write_record({
        "grid": "smoke", "variant": "rf", "dataset": "fashion-mnist", "seed": 0, "steps": 5, "cfg": 5.0,
        "time_grid": "own", "weights": "ema", "nfe": 10, "num_samples": 4,
        "metrics": {"fd_probe": 1.0, "align_probe": 0.5}, "train": {}, "eval": {},
        "formulation": {"name": "rf"}, "scorers": {"probe": {"model": "probe"}}, "config": {},
        **provenance_stamp(device="cpu"),
    })


def _files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert commands == {"run", "leaderboard", "status", "score", "prepare", "bench"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_paragraph(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")  # no wrapping: one paragraph is one line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU-only torch of the QA pass
    _write_files(tmp_path, case.files)
    if "{tmp}/batch.pt" in case.argv:
        _write_batch(tmp_path)
    if case.records:
        _write_record(tmp_path)
    before = _files_under(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{smoke}", str(SMOKE)) for a in case.argv]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's errors exit from inside the parser
        code = stop.code
    out, err = capsys.readouterr()
    message = " ".join(err.split())
    assert "Traceback" not in out + err, err
    assert code == 2, (code, out, err)
    assert message.startswith("error:"), err
    assert "\n" not in err.strip(), err
    for fragment in case.fragments:
        fragment = fragment.replace("{tmp}", str(tmp_path))
        assert " ".join(fragment.split()) in message, (fragment, message)
    assert _files_under(tmp_path) == before  # nothing half-written, nothing changed


def test_a_bad_checkpoint_interval_stops_the_run_before_anything_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")
    monkeypatch.setenv("ABLATE_CHECKPOINT_EVERY_S", "ten minutes")
    code = main(["run", str(SMOKE), "--results", str(tmp_path / "results")])
    message = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message.startswith("error:") and "Traceback" not in message
    assert "ABLATE_CHECKPOINT_EVERY_S='ten minutes'" in message and "a number >= 0" in message
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------------------------
# Issue 27, store and queue side (harden-store): damaged or stray record files make `leaderboard` refuse, naming
# them; a damaged queue file is named with the command that rebuilds it; bad heartbeat settings are refused.

RECORD_DIR = "results/smoke/fashion-mnist/rf/seed0/records"
VALID = {"grid": "smoke", "variant": "rf", "dataset": "fashion-mnist", "seed": 0, "steps": 5, "cfg": 5.0,
         "time_grid": "own", "weights": "ema", "metrics": {"fd_probe": 1.0, "align_probe": 0.5}}
RERUN = "python -m ablate run GRID_FILE --results"


def store_case(name: str, files: dict[str, object], *fragments: str) -> Case:
    return Case(f"leaderboard: {name}", ("leaderboard", "--results", RESULTS), ("no leaderboard is drawn", *fragments),
                files, records=True)


STORE_CASES: list[Case] = [
    store_case("a truncated record", {f"{RECORD_DIR}/50steps-cfg5.0-own-ema.json": '{"grid": "smoke", "vari'},
               "50steps-cfg5.0-own-ema.json (cannot be read (JSONDecodeError", RERUN),
    store_case("a binary record", {f"{RECORD_DIR}/50steps-cfg5.0-own-ema.json": bytes(range(256)) * 4},
               "50steps-cfg5.0-own-ema.json (cannot be read (UnicodeDecodeError", RERUN),
    store_case("a record that is a JSON list", {f"{RECORD_DIR}/50steps-cfg5.0-own-ema.json": "[1, 2]"},
               "50steps-cfg5.0-own-ema.json (a JSON list, not an object)", RERUN),
    store_case("record metrics that are strings", {f"{RECORD_DIR}/50steps-cfg5.0-own-ema.json": json.dumps(
        {**VALID, "steps": 50, "metrics": {"fd_probe": "1.0", "align_probe": 0.5}})},
               "50steps-cfg5.0-own-ema.json (metrics that are not numbers ({'fd_probe': '1.0'}))", RERUN),
    store_case("a stray copy of a record", {f"{RECORD_DIR}/5steps-cfg5.0-own-ema (copy).json": json.dumps(VALID)},
               "5steps-cfg5.0-own-ema (copy).json (holds the record of 'rf', seed 0, setting '5steps-cfg5.0-own-ema': "
               "a copy or a moved file)", "move a copy"),
    store_case("a record in another seed's folder", {
        "results/smoke/fashion-mnist/rf/seed1/records/5steps-cfg5.0-own-ema.json": json.dumps(VALID)},
               "seed1/records/5steps-cfg5.0-own-ema.json (holds the record of 'rf', seed 0", "a copy or a moved file"),
    store_case("a record of another variant", {
        "results/smoke/fashion-mnist/eps__linear/seed0/records/5steps-cfg5.0-own-ema.json": json.dumps(VALID)},
               "eps__linear/seed0/records/5steps-cfg5.0-own-ema.json (holds the record of 'rf'"),
    store_case("a file that is no record", {f"{RECORD_DIR}/notes.txt": "mine"}, "notes.txt (not a record file (*.json))"),
    Case("status: a queue file of random bytes", ("status", "{smoke}", "--results", RESULTS),
         ("results/smoke/optuna.sqlite3 is damaged (file is not a database)", "the grid's queue only",
          "records, checkpoints, training summaries) live in the results directory and are safe",
          "--results {tmp}/results --rebuild-queue"),
         {"results/smoke/optuna.sqlite3": bytes(range(256)) * 16}),
]


@pytest.mark.parametrize("case", STORE_CASES, ids=[c.id for c in STORE_CASES])
def test_a_damaged_store_is_one_clear_paragraph(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    test_bad_input_is_one_clear_paragraph(case, tmp_path, monkeypatch, capsys)


def test_a_variant_ranked_on_fewer_settings_is_flagged_with_the_missing_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_record(tmp_path)
    for variant, steps in (("rf", 50), ("eps/linear", 5), ("eps/linear", 50)):
        ResultsStore(tmp_path / "results").write_record({**VALID, "variant": variant, "steps": steps})
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "markdown", "--replicates", "5"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "MISSING RECORDS" not in out  # every cell whole
    (tmp_path / RECORD_DIR / "50steps-cfg5.0-own-ema.json").unlink()
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--format", "markdown", "--replicates", "5"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("MISSING RECORDS: rf lacks 1 record that other cells of its dataset have, so it is ranked on fewer settings: "
            f"{tmp_path}/results/smoke/fashion-mnist/rf/seed0/records/50steps-cfg5.0-own-ema.json") in out, out
    assert "eps/linear lacks" not in out


@pytest.mark.parametrize("variable", ["ABLATE_HEARTBEAT_INTERVAL", "ABLATE_GRACE_PERIOD"])
@pytest.mark.parametrize("value", ["abc", "1.5", "", "0", "-5"])
def test_a_bad_heartbeat_setting_stops_the_run_before_anything_is_written(
        variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")
    monkeypatch.setenv(variable, value)
    code = main(["run", str(SMOKE), "--results", str(tmp_path / "results")])
    message = " ".join(capsys.readouterr().err.split())
    assert code == 2 and message.startswith("error:") and "Traceback" not in message, message
    assert f"Environment variable {variable}={value!r} is not allowed" in message and "a whole number" in message
    assert "psycopg" not in message and not (tmp_path / "results").exists()


def test_a_grace_period_of_under_three_heartbeats_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")
    monkeypatch.setenv("ABLATE_HEARTBEAT_INTERVAL", "20")
    monkeypatch.setenv("ABLATE_GRACE_PERIOD", "30")
    code = main(["run", str(SMOKE), "--results", str(tmp_path / "results")])
    message = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "\n" not in message and not (tmp_path / "results").exists()
    assert ("ABLATE_GRACE_PERIOD=30 is too short for ABLATE_HEARTBEAT_INTERVAL=20: the grace period must be at least "
            "3 heartbeat intervals (60 s here)") in message, message
