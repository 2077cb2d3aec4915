"""Bad input, everywhere (issue 10): one table of command lines that must each end in one clear paragraph.

Every row is (id, argv, files to create, fragments the message must contain). Each case runs
``ablate.cli.main`` in this process, in a fresh working directory, and must: exit 2; print no
traceback; print a message that begins ``error:`` and contains every fragment (the file, key or value
at fault and what is allowed); and leave no file behind that was not there before (nothing
half-written, in the results directory or anywhere else under the working directory).

In argv and file names, ``{tmp}`` is the case's working directory and ``{smoke}`` the shipped smoke
grid. A file's content is text, bytes, or ``DIR`` (an empty directory); ``env`` sets environment variables.
The first rows are the rich markup crashes of the QA pass: before the fix each of them ended in
``rich.errors.MarkupError``. The rows whose id starts ``27:`` are issue 27's hostile inputs (bounded YAML,
values that every cell used to fail on after training, ``ABLATE_*`` variables, output options); a message
must also stay under 2,000 characters (a user's long value is shortened). The tests after the table run the
worst YAML under a memory limit, simulate a full disk, and check that correct values are accepted.
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
    env: dict[str, str] = field(default_factory=dict)  # environment variables set for the case


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


def billion_laughs(head: str = "name: t\nvariants: [rf]\n") -> str:
    """The classic: nine levels of nine aliases, 9^9 strings once expanded, in a few hundred bytes."""
    text, previous = head + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n', "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ", ".join(["*" + previous] * 9) + "]\n"
        previous = name
    return text


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


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

# ---- issue 27: hostile files, values only later code could refuse, environment variables, output options
SCALING = REPO / "grids" / "scaling-smoke.yaml"
SEARCH = REPO / "grids" / "search-smoke.yaml"
BIG = "x" * 200_000
CASES += [
    # the grid file, parsed bounded (tests/test_bad_input.py::test_hostile_yaml_is_refused_in_bounded_memory runs
    # the worst ones under a memory limit)
    Case("27: billion laughs", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "more than 100,000 values", "aliases"), grid_file(billion_laughs()), records=True),
    Case("27: recursive alias", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "line 3", "would contain itself"), grid_file(TINY + "description: &a [*a]\n")),
    Case("27: recursive alias in a mapping", ("status", "{tmp}/grid.yaml"),
         ("grid.yaml", "would contain itself"), grid_file(TINY + "eval: &e {settings: *e}\n")),
    Case("27: a 5,000-deep list", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "line 3", "more than 32 levels"), grid_file(TINY + f"description: {nested(5000)}\n")),
    Case("27: a 5,000-deep mapping", ("status", "{tmp}/grid.yaml"), ("grid.yaml", "more than 32 levels"),
         grid_file(TINY + "description: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")),
    Case("27: a 10 MB string", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "10,000,0", "bytes; allowed: at most 262,144 bytes"),
         grid_file(TINY + 'description: "' + "x" * 10_000_000 + '"\n')),
    Case("27: a 200 kB dataset name is shortened", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("`datasets[0]`", "(200,000 characters)", "'fashion-mnist'"), grid_file(TINY + f"datasets: [{BIG}]\n")),
    Case("27: a 200 kB variant name is shortened", ("status", "{tmp}/grid.yaml"),
         ("`variants[0]`", "(200,003 characters)", "longer than 1000 characters"),
         grid_file(f"name: t\nvariants: [rf/{BIG}]\n")),
    Case("27: a 900-character unknown key is shortened", ("status", "{tmp}/grid.yaml"),
         ("unknown key", "(900 characters)", "Allowed keys at the top level"), grid_file(TINY + "k" * 900 + ": 1\n")),
    Case("27: a 200 kB --variant is shortened", ("run", "{smoke}", "--variant", "rf/" + BIG, "--results", RESULTS),
         ("--variant", "(200,003 characters)", "at most 1000 characters")),
    Case("27: a 200 kB --seeds is shortened", ("status", "{smoke}", "--seeds", BIG), ("--seeds", "(200,000 characters)")),
    Case("27: a python tag", ("run", "{tmp}/grid.yaml", "--results", RESULTS), ("grid.yaml", "not valid YAML"),
         grid_file(TINY + "description: !!python/object:os.system {}\n")),
    Case("27: not UTF-8", ("status", "{tmp}/grid.yaml"), ("grid.yaml", "UTF-8"), {"grid.yaml": b"name: \xff\xfe\n"}),
    Case("27: a list, not a mapping", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "the grid is", "a mapping with keys name"), grid_file("- name: t\n- variants: [rf]\n")),
    Case("27: a duplicate key", ("status", "{tmp}/grid.yaml"), ("grid.yaml", "line 3", "`name` appears twice"),
         grid_file(TINY + "name: u\n")),
    Case("27: comments only", ("status", "{tmp}/grid.yaml"), ("grid.yaml", "is empty"), grid_file("# nothing\n")),
    Case("27: no variants", ("status", "{tmp}/grid.yaml"), ("grid.yaml", "`variants`", "non-empty"),
         grid_file("name: t\nvariants: []\n")),
    Case("27: scaling file billion laughs", ("scale", "{tmp}/grid.yaml", "--results", RESULTS, "--plan"),
         ("grid.yaml", "more than 100,000 values"), grid_file(billion_laughs(SCALING.read_text()))),
    Case("27: search file recursive alias", ("search", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "would contain itself"), grid_file(SEARCH.read_text() + "description: &d [*d]\n")),
    Case("27: score --option alias bomb", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--option",
                                           "model=" + billion_laughs("").replace("\n", ", ").join("{}")),
         ("--option", "more than 100,000 values")),
    Case("27: score --option nested", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--option",
                                       "model=" + nested(5000)), ("--option", "more than 32 levels")),
    Case("27: score --option invalid YAML", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--option", "model=[a"),
         ("--option 'model=[a'", "not valid YAML")),
    # values that every cell failed on after training, or that were silently recorded
    Case("27: lr_by_variant value not a number", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "`train.lr_by_variant.rf` is 'fast'", "a number > 0"),
         grid_file(TINY + "train: {lr_by_variant: {rf: fast}}\n"), records=True),
    Case("27: lr_by_variant value a mapping", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("`train.lr_by_variant.rf` is {'a': 1}", "a number > 0"), grid_file(TINY + "train: {lr_by_variant: {rf: {a: 1}}}\n")),
    Case("27: lr_by_variant value negative", ("status", "{tmp}/grid.yaml"),
         ("`train.lr_by_variant.rf` is -0.001", "out of range"), grid_file(TINY + "train: {lr_by_variant: {rf: -1e-3}}\n")),
    Case("27: lr_by_variant value a boolean", ("status", "{tmp}/grid.yaml"),
         ("`train.lr_by_variant.rf` is True", "a number > 0"), grid_file(TINY + "train: {lr_by_variant: {rf: true}}\n")),
    Case("27: lr_by_variant key not a variant", ("status", "{tmp}/grid.yaml"),
         ("the key 'edm(a)' of `train.lr_by_variant`", NAME_HELP), grid_file(TINY + "train: {lr_by_variant: {edm(a): 0.1}}\n")),
    Case("27: lr_by_variant names a variant twice", ("status", "{tmp}/grid.yaml"),
         ("`train.lr_by_variant` names 'rf' twice", "'rf/uniform'"),
         grid_file(TINY + "train: {lr_by_variant: {rf: 0.1, rf/uniform: 0.2}}\n")),
    Case("27: lr_by_variant a list", ("status", "{tmp}/grid.yaml"), ("`train.lr_by_variant` is [0.1]", "a mapping"),
         grid_file(TINY + "train: {lr_by_variant: [0.1]}\n")),
    Case("27: a seed of 2^32", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("`seeds[0]` is 4294967296", "< 4294967296"), grid_file(TINY + "seeds: [4294967296]\n"), records=True),
    Case("27: --seeds 2^40", ("run", "{smoke}", "--seeds", "0,1099511627776", "--results", RESULTS),
         ("--seeds", "`seeds[1]` is 1099511627776", "< 4294967296")),
    Case("27: num_samples 1 with a scorer that needs 2", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("grid.yaml", "`eval.num_samples` is 1", "(probe) need at least 2"), grid_file(TINY + "eval: {num_samples: 1}\n")),
    Case("27: --num-samples 1", ("run", "{smoke}", "--num-samples", "1", "--results", RESULTS),
         ("--num-samples", "`eval.num_samples` is 1", "at least 4", "effnet 4, probe 2")),
    Case("27: bench --num-samples 1", ("bench", "smoke", "--num-samples", "1"), ("--num-samples", "at least 4")),
    Case("27: scaling file num_samples 1", ("scale", "{tmp}/grid.yaml", "--results", RESULTS, "--plan"),
         ("`eval.num_samples` is 1", "at least 2"),
         grid_file(SCALING.read_text().replace("num_samples: 100 ", "num_samples: 1   "))),
    Case("27: unknown probe option", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("`eval.scorer_options.probe`", "no option 'temperature'", "allowed options of 'probe': none"),
         grid_file(TINY + "eval: {scorer_options: {probe: {temperature: 2}}}\n")),
    Case("27: unknown fid_clip option", ("status", "{tmp}/grid.yaml"),
         ("no option 'referense'", "reference (a folder of images", "clip_weights"),
         grid_file(TINY + "eval: {scorers: [fid_clip], scorer_options: {fid_clip: {referense: x}}}\n")),
    Case("27: fid_clip batch_size not a number", ("status", "{tmp}/grid.yaml"),
         ("option 'batch_size' of scorer 'fid_clip' is 'many'", "a positive integer"),
         grid_file(TINY + "eval: {scorers: [fid_clip], scorer_options: {fid_clip: {batch_size: many}}}\n")),
    Case("27: fid_inception reference_count 0", ("status", "{tmp}/grid.yaml"),
         ("option 'reference_count' of scorer 'fid_inception' is 0", "a positive integer"),
         grid_file(TINY + "eval: {scorers: [fid_inception], scorer_options: {fid_inception: {reference_count: 0}}}\n")),
    Case("27: search file unknown scorer option", ("search", "{tmp}/grid.yaml", "--results", RESULTS),
         ("no option 'nope'",), grid_file(SEARCH.read_text().replace("num_samples: 64 ", "scorer_options: {probe: {nope: 1}}\n  num_samples: 64 "))),
    Case("27: score --option no chosen scorer reads", ("score", "{tmp}/batch.pt", "--scorer", "probe", "--option",
                                                       "reference_count=10"), ("--option reference_count=10", "no option")),
    Case("27: val_size above the test split", ("run", "{tmp}/grid.yaml", "--results", RESULTS),
         ("`data.val_size` is 100000000", "10,000 items", "from 1 to 10,000"),
         grid_file(TINY + "data: {val_size: 100000000}\n"), records=True),
    Case("27: lr search reversed", ("status", "{tmp}/grid.yaml"), ("`train.lr` is 'search(1e-3, 1e-4, log)'", "low < high"),
         grid_file(TINY + "train: {lr: 'search(1e-3, 1e-4, log)'}\n")),
    # environment variables: one paragraph naming the variable and what is allowed, before anything is written
    Case("27: ABLATE_CHECKPOINT_EVERY_S negative", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_CHECKPOINT_EVERY_S='-5'", "a number >= 0"), env={"ABLATE_CHECKPOINT_EVERY_S": "-5"}, records=True),
    Case("27: ABLATE_CHECKPOINT_EVERY_S nan", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_CHECKPOINT_EVERY_S='nan'", "a number >= 0"), env={"ABLATE_CHECKPOINT_EVERY_S": "nan"}),
    Case("27: ABLATE_CHECKPOINT_EVERY_S empty", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_CHECKPOINT_EVERY_S=''", "unset ABLATE_CHECKPOINT_EVERY_S"), env={"ABLATE_CHECKPOINT_EVERY_S": ""}),
    Case("27: ABLATE_CACHE_DIR empty", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_CACHE_DIR=''", "a directory path"), env={"ABLATE_CACHE_DIR": ""}),
    Case("27: ABLATE_CACHE_DIR blank, bench", ("bench", "smoke"), ("ABLATE_CACHE_DIR=' '", "a directory path"),
         env={"ABLATE_CACHE_DIR": " "}),
    Case("27: ABLATE_CACHE_DIR under a file", ("run", "{smoke}", "--results", RESULTS),
         ("blocker", "is not a directory", "--cache-dir"), {"blocker": "x"}, env={"ABLATE_CACHE_DIR": "{tmp}/blocker/c"}),
    Case("27: ABLATE_CACHE empty", ("run", "{smoke}", "--results", RESULTS), ("ABLATE_CACHE=''", "downloaded"),
         env={"ABLATE_CACHE": ""}),
    Case("27: ABLATE_DATA empty", ("run", "{smoke}", "--dataset", "imagenet", "--results", RESULTS),
         ("ABLATE_DATA=''", "prepared datasets"), env={"ABLATE_DATA": ""}),
    Case("27: ABLATE_TEST_PAUSE_AT unknown point", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_TEST_PAUSE_AT='nowhere'", "claim, write"), env={"ABLATE_TEST_PAUSE_AT": "nowhere"}),
    Case("27: ABLATE_TEST_PAUSE_AT without its file", ("run", "{smoke}", "--results", RESULTS),
         ("ABLATE_TEST_PAUSE_FILE=''", "required while ABLATE_TEST_PAUSE_AT is set"),
         env={"ABLATE_TEST_PAUSE_AT": "write"}),
    # where outputs go
    Case("27: run --cache-dir empty", ("run", "{smoke}", "--results", RESULTS, "--cache-dir", ""),
         ("--cache-dir is empty",)),
    Case("27: run --cache-dir under a file", ("run", "{smoke}", "--results", RESULTS, "--cache-dir", "{tmp}/blocker/c"),
         ("blocker", "is not a directory"), {"blocker": "x"}),
    Case("27: leaderboard --out empty", ("leaderboard", "--results", RESULTS, "--out", ""), ("--out is empty",),
         records=True),
    Case("27: search --out empty", ("search", str(SEARCH), "--results", RESULTS, "--out", ""), ("--out is empty",)),
    Case("27: search --results empty", ("search", str(SEARCH), "--results", " "), ("--results is empty",)),
    Case("27: scale --results empty", ("scale", str(SCALING), "--results", ""), ("--results is empty",)),
    Case("27: search --trials 0", ("search", str(SEARCH), "--trials", "0"), ("--trials", "'0' is not a positive integer")),
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
    assert len(CASES) >= 40 + 60 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv[0] for c in CASES}
    assert commands == {"run", "leaderboard", "status", "score", "prepare", "bench", "scale", "search"}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_paragraph(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")  # no wrapping: one paragraph is one line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU-only torch of the QA pass
    for name in ("ABLATE_CACHE_DIR", "ABLATE_TEST_PAUSE_AT", "ABLATE_TEST_PAUSE_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
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
    assert len(message) < 2000, message[:3000]  # a user's long value is shortened, never echoed whole
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
# ---- issue 27: hostile YAML under a memory and CPU limit, and a full disk

HOSTILE = {  # name: file text; each must end in its one-paragraph error, in little memory and time
    "billion laughs": billion_laughs(),
    "recursive alias": TINY + "description: &a [*a]\n",
    "5,000-deep list": TINY + f"description: {nested(5000)}\n",
    "5,000-deep mapping": TINY + "description: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "10 MB string": TINY + 'description: "' + "x" * 10_000_000 + '"\n',
}
CHILD = """\
import resource, sys
from ablate.config.grid import load_grid
from ablate.errors import ConfigError
vm = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
limit = vm + (256 << 20)  # 256 MiB above what the interpreter and its imports hold
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
resource.setrlimit(resource.RLIMIT_CPU, (30, 30))
try:
    load_grid(sys.argv[1])
except ConfigError as err:
    print(err)
    sys.exit(0)
sys.exit(3)
"""


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_yaml_is_refused_in_bounded_memory(name: str, tmp_path: Path) -> None:
    """Before issue 27 the 530-byte billion laughs was killed at 24 GB after 256 s, and the recursive alias and
    the deep list ended in a RecursionError traceback: here each must end in its error with 256 MiB and 30 s of
    CPU at most (the limits kill the child otherwise)."""
    import subprocess
    import sys

    file = tmp_path / "grid.yaml"
    file.write_text(HOSTILE[name])
    proc = subprocess.run([sys.executable, "-c", CHILD, str(file)], capture_output=True, text=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    message = proc.stdout.strip()
    assert "grid.yaml" in message and "\n" not in message and len(message) < 1000, message[:2000]
    assert any(f in message for f in ("100,000 values", "contain itself", "32 levels", "bytes; allowed")), message


def test_a_full_disk_under_torch_save_reads_disk_full_at_the_path(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.save on a full disk raises "RuntimeError: [enforce fail at inline_container.cc] . unexpected pos";
    the atomic write turns it into "disk full at PATH" and leaves the old file whole and no temp file."""
    from ablate.errors import ResultsError
    from ablate.io import atomic_file

    target = tmp_path / "checkpoints" / "last.ckpt"
    target.parent.mkdir()
    target.write_bytes(b"the previous checkpoint")
    monkeypatch.setenv("ABLATE_TEST_DISK_FULL", "*/checkpoints/*.ckpt")
    with pytest.raises(ResultsError, match=f"^disk full at {target} ") as caught:
        with atomic_file(target) as fh:
            torch.save({"weights": torch.zeros(1000)}, fh)
    chain, err = [], caught.value.__cause__
    while err is not None:
        chain.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    assert any(link.startswith("RuntimeError: [enforce fail at inline_container") for link in chain), chain
    assert target.read_bytes() == b"the previous checkpoint" and sorted(target.parent.iterdir()) == [target]


def test_a_full_disk_fails_the_run_with_a_sentence_and_the_traceback_in_the_cells_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27: a full disk read as "RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos" and
    the run exited 0. Now the cell's failure reason and the console say "disk full at PATH", the traceback stays in
    the cell's logs/output.log, and the run exits 2 (it could not write), with no leaderboard."""
    import optuna

    from ablate.results import cell_dir

    grid = tmp_path / "tiny.yaml"
    grid.write_text("name: tiny\nvariants: [rf]\ndata: {val_size: 16}\n"
                    "model: {patch_size: 8, hidden_size: 16, depth: 1, num_heads: 2}\n"
                    "train: {max_steps: 2, batch_size: 8, warmup_steps: 1, val_every: 8, ema: {every: 1}}\n"
                    "eval: {num_samples: 4, batch_size: 4, settings: [{steps: 1, cfg: 1.0}], weights: [ema]}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("ABLATE_TEST_DISK_FULL", "*/checkpoints/*.ckpt")
    code = main(["run", str(grid), "--results", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    console = out + err
    directory = cell_dir(tmp_path / "results", "tiny", "fashion-mnist", "rf", 0)
    assert code == 2, console[-3000:]
    assert f"disk full at {directory / 'checkpoints'}" in console, console[-3000:]
    assert "could not be written" in err and "--retry-failed" in err
    for noise in ("Traceback", "inline_container", "unexpected pos"):
        assert noise not in console, console[-3000:]
    log = (directory / "logs" / "output.log").read_text()
    assert "Traceback" in log and "unexpected pos" in log
    storage = f"sqlite:///{tmp_path / 'results' / 'tiny' / 'optuna.sqlite3'}"
    trial, = optuna.load_study(study_name="tiny", storage=storage).get_trials()
    assert trial.user_attrs["fail_reason"].startswith("ResultsError: disk full at ")
    assert not (directory / "checkpoints").exists() or not list((directory / "checkpoints").glob("*.ckpt"))
    assert not (tmp_path / "results" / "tiny" / "leaderboard").exists() and not (directory / "records").exists()


# ---- issue 27: correct values are accepted, and the end of a run names only files that exist

def test_a_correct_lr_by_variant_is_accepted_under_its_canonical_name(tmp_path: Path) -> None:
    """``train.lr_by_variant: {rf: 0.001}`` was refused ("a mapping from names to mappings") before issue 27."""
    from ablate.config.grid import load_grid

    file = tmp_path / "grid.yaml"
    file.write_text("name: t\nvariants: [rf, 'rf/lognorm(0.00, 1.00)']\n"
                    "train: {lr: 1.0e-4, lr_by_variant: {rf/uniform: 0.001, 'rf/lognorm(0, 1)': 3e-4}}\n")
    grid = load_grid(file)
    assert grid.train.lr_by_variant == {"rf": 0.001, "rf/lognorm(0.00, 1.00)": 3e-4}
    assert grid.train.for_variant("rf").lr == 0.001 and grid.train.for_variant("rf/lognorm(0.00, 1.00)").lr == 3e-4
    (tmp_path / "again.yaml").write_text(__import__("yaml").safe_dump(grid.to_dict()))
    assert load_grid(tmp_path / "again.yaml").train == grid.train  # written back, it loads to the same values


def test_conditioning_modes_are_asked_of_the_data() -> None:
    """A dataset serves the modes it declares that its data can give: stored caption embeddings serve 'caption'
    where 'caption' is declared (Fashion-MNIST declares it and makes its captions; the run's pre-flight
    refuses a mode a dataset does not serve); a split without them serves 'class' only, a dataset without
    classes not 'class', and an undeclared mode is not served."""
    from ablate.data.base import DatasetInfo, LatentSplit
    from ablate.data.conditioning import conditioning_modes

    def info(classes: int, modes: tuple[str, ...] = ("class", "caption")) -> DatasetInfo:
        return DatasetInfo("d", 1, 4, classes, [], "identity", lambda i, g=None: "", conditionings=modes)

    plain = LatentSplit(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.int64))
    captioned = LatentSplit(torch.zeros(3, 1, 4, 4), torch.zeros(3, dtype=torch.int64), text_emb=torch.zeros(3, 8))
    assert conditioning_modes(info(10), plain) == ("class",)
    assert conditioning_modes(info(10), captioned) == ("class", "caption")
    assert conditioning_modes(info(0), captioned) == ("caption",)
    assert conditioning_modes(info(10, ("class",)), captioned) == ("class",)


def test_a_grid_without_a_file_is_never_named_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The leaderboard of a grid that has no shipped file (a tuning or study grid) and a run whose every cell
    failed used to end with "run grids/<name>.yaml", a file that does not exist."""
    import ablate.runs.queue as queue

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "5000")
    _write_record(tmp_path)
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--grid", "tiny.lr1.0e-03"]) == 2
    message = " ".join(capsys.readouterr().err.split())
    assert "grids/tiny.lr1.0e-03.yaml" not in message and "GRID_FILE --results" in message, message

    def crash(*args: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(queue, "run_cell", crash)
    (tmp_path / "tiny.yaml").write_text(TINY)
    code = main(["run", str(tmp_path / "tiny.yaml"), "--results", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    message = " ".join(err.split())
    assert code == 2 and "RuntimeError: boom" in out, out + err
    assert "No cell of grid tiny has a result record" in message and "--retry-failed" in message, message
    assert "grids/tiny.yaml" not in out + err


def test_an_overlong_message_is_bounded_on_the_console(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The safety net behind the shortened values: no error paragraph floods the console."""
    import ablate.commands.leaderboard as leaderboard
    from ablate.errors import AblateError

    def flood(args: object) -> int:
        raise AblateError("start " + "x" * 10_000_000 + " end")

    monkeypatch.setenv("COLUMNS", "5000")
    monkeypatch.setattr(leaderboard, "run", flood)
    assert main(["leaderboard"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: start") and err.rstrip().endswith("end") and len(err) < 5000
    assert "characters left out" in err
