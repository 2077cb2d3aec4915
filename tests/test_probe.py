"""The probe scorer: accuracy, separation of real images from noise, the content-hashed cache.

Scoring is tested with the shipped probe (what runs use when the hash matches), its accuracy checked
on the test split. Training and the cache are tested with a cheap recipe (one epoch, the shipped probe
hidden, ~25 s on one thread): a different hash, trained into a temporary cache once per module. The
full recipe (~2.5 min on one thread of a slow CPU) trains once in the ``slow`` test, which checks that
it reaches the shipped probe's accuracy; ``nox -s studies`` runs it (CI's 20 minutes do not hold it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ablate  # noqa: F401  (fixes torchvision first)
from ablate.data import fashion_mnist, load_dataset
from ablate.data.base import DatasetInfo, LatentSplit
from ablate.errors import ScorerUnavailableError
from ablate.scorers import probe as probe_module
from ablate.scorers.base import ScoreContext, get_scorer, metric_info
from ablate.scorers.probe import Probe, get_probe, probe_hash, weights_sha256

if not all((fashion_mnist.EMBEDDED_DIR / f).is_file() for f in fashion_mnist.FILES):
    pytest.skip(f"the shipped Fashion-MNIST copy is missing from {fashion_mnist.EMBEDDED_DIR}", allow_module_level=True)

RESOLUTION = 32


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ablate-cache")


CHEAP_EPOCHS, CHEAP_MIN_ACCURACY = 1, 0.80


@pytest.fixture(scope="module")
def probe(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Probe:
    """Trained here with the cheap recipe (its own hash), the shipped probe hidden."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(probe_module, "SHIPPED", tmp_path_factory.mktemp("no-shipped-probe"))
        mp.setitem(probe_module.HYPERPARAMETERS, "epochs", CHEAP_EPOCHS)
        mp.setattr(probe_module, "MIN_TEST_ACCURACY", CHEAP_MIN_ACCURACY)
        return get_probe(RESOLUTION, None, cache_dir, "cpu")


@pytest.fixture
def cheap_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cheap recipe, for tests that read the probe fixture's cache back."""
    monkeypatch.setitem(probe_module.HYPERPARAMETERS, "epochs", CHEAP_EPOCHS)
    monkeypatch.setattr(probe_module, "MIN_TEST_ACCURACY", CHEAP_MIN_ACCURACY)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory):
    """The scorer with the shipped probe (an empty cache: found by its hash, not trained)."""
    info, _ = load_dataset("fashion-mnist", RESOLUTION)
    return get_scorer("probe", ScoreContext(dataset=info, cache_dir=tmp_path_factory.mktemp("empty-cache")))


def _accuracy(probe: Probe) -> float:
    _, splits = load_dataset("fashion-mnist", RESOLUTION)
    _, probs = probe.embed(splits["test"].latents)
    return float((probs.argmax(1) == splits["test"].labels).float().mean())


def test_the_shipped_probe_is_found_by_its_hash_and_is_as_accurate_as_recorded(tmp_path: Path) -> None:
    shipped = get_probe(RESOLUTION, None, tmp_path / "empty-cache", "cpu")
    assert not shipped.trained_now and shipped.hash == probe_hash(RESOLUTION)  # found by its hash, not trained
    assert not (tmp_path / "empty-cache").exists()  # and nothing written
    assert shipped.weights_sha256 == weights_sha256(shipped.model) == shipped.record["weights_sha256"]
    assert _accuracy(shipped) == pytest.approx(shipped.record["test_accuracy"], abs=1e-4)
    assert shipped.record["test_accuracy"] >= probe_module.MIN_TEST_ACCURACY
    assert shipped.reference.n == 10000


@pytest.mark.slow
def test_the_full_recipe_trained_here_matches_the_shipped_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "SHIPPED", tmp_path / "no-shipped-probe")
    fresh = get_probe(RESOLUTION, None, tmp_path / "cache", "cpu")
    monkeypatch.undo()
    shipped = get_probe(RESOLUTION, None, tmp_path / "empty-cache", "cpu")
    assert fresh.trained_now and not shipped.trained_now and fresh.hash == shipped.hash
    assert _accuracy(fresh) >= probe_module.MIN_TEST_ACCURACY
    assert abs(shipped.record["test_accuracy"] - fresh.record["test_accuracy"]) < 0.01
    assert shipped.reference.n == fresh.reference.n == 10000


def test_probe_trained_here_and_recorded(probe: Probe, cache_dir: Path) -> None:
    assert probe.trained_now and probe.resolution == RESOLUTION
    assert probe.hash != probe_hash(RESOLUTION)  # the cheap recipe has its own hash
    accuracy = _accuracy(probe)
    assert accuracy >= CHEAP_MIN_ACCURACY
    assert accuracy == pytest.approx(probe.record["test_accuracy"], abs=1e-4)
    record = json.loads((cache_dir / "probe" / f"{probe.hash}.json").read_text())
    assert record["hash"] == probe.hash and record["test_accuracy"] == probe.record["test_accuracy"]
    assert record["train_seconds"] > 0
    assert probe.reference.n == 10000 and probe.reference.dim == 128


def test_real_images_score_well_noise_and_wrong_labels_badly(scorer) -> None:
    _, splits = load_dataset("fashion-mnist", RESOLUTION)
    test, train = splits["test"], splits["train"]
    g = torch.Generator().manual_seed(0)
    n = 2000
    idx = torch.randperm(len(train), generator=g)[:n]
    real, labels = train.latents[idx], train.labels[idx]
    noise = torch.rand(n, 1, RESOLUTION, RESOLUTION, generator=g) * 2 - 1
    blank = torch.full((n, 1, RESOLUTION, RESOLUTION), -1.0) + 0.01 * torch.randn(n, 1, RESOLUTION, RESOLUTION, generator=g)

    same = scorer.score(test.latents, test.labels, [])
    scale = float(np.trace(scorer.probe.reference.cov))  # ~500; some feature units are dead (singular cov)
    assert abs(same["fd_probe"]) < 1e-6 * scale  # the reference set itself
    good = scorer.score(real, labels, [])
    wrong = scorer.score(real, (labels + 1) % 10, [])
    bad = scorer.score(noise, labels, [])
    empty = scorer.score(blank, labels, [])
    assert good["fd_probe"] > 0
    assert bad["fd_probe"] > 50 * good["fd_probe"] and empty["fd_probe"] > 50 * good["fd_probe"]
    assert wrong["fd_probe"] == pytest.approx(good["fd_probe"])  # fidelity ignores the prompt
    assert good["align_probe"] > 0.85 and same["align_probe"] > 0.85
    assert wrong["align_probe"] < 0.1 and bad["align_probe"] < 0.3 and empty["align_probe"] < 0.3
    assert scorer.score(real[torch.randperm(n, generator=g)], labels, [])["align_probe"] < 0.3  # shuffled prompts


def test_second_call_hits_the_cache(probe: Probe, cache_dir: Path, cheap_recipe: None) -> None:
    weights = cache_dir / "probe" / f"{probe.hash}.pt"
    stats = cache_dir / "probe" / f"{probe.hash}.test-stats.npz"
    mtimes = (weights.stat().st_mtime_ns, stats.stat().st_mtime_ns)
    again = get_probe(RESOLUTION, None, cache_dir, "cpu")
    assert not again.trained_now and again.hash == probe.hash
    assert (weights.stat().st_mtime_ns, stats.stat().st_mtime_ns) == mtimes
    assert again.record == probe.record
    np.testing.assert_array_equal(again.reference.mean, probe.reference.mean)
    x = torch.rand(8, 1, RESOLUTION, RESOLUTION) * 2 - 1
    torch.testing.assert_close(again.embed(x), probe.embed(x))


def test_hash_covers_resolution_and_hyperparameters(probe: Probe, cheap_recipe: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert probe_hash(RESOLUTION) == probe.hash
    assert probe_hash(16) != probe.hash
    monkeypatch.setitem(probe_module.HYPERPARAMETERS, "epochs", 99)
    assert probe_hash(RESOLUTION) != probe.hash


def test_scorer_metadata_and_provenance(scorer) -> None:
    scorer.check_available()
    assert not scorer.probe.trained_now  # the shipped probe
    fd, align = metric_info("fd_probe"), metric_info("align_probe")
    assert (fd.role, fd.higher_is_better) == ("fidelity", False)
    assert (align.role, align.higher_is_better) == ("alignment", True)
    prov = scorer.provenance()
    assert prov["model"] == "ablate probe CNN" and prov["hash"] == probe_hash(RESOLUTION)
    assert prov["weights_sha256"] == weights_sha256(scorer.probe.model) == scorer.probe.record["weights_sha256"]
    assert prov["test_accuracy"] >= 0.90 and prov["resolution"] == RESOLUTION
    assert prov["reference_set"] == "fashion-mnist test, 10000 images" and "128" in prov["feature_layer"]


def test_bad_samples_are_refused(scorer) -> None:
    with pytest.raises(ValueError, match="shape"):
        scorer.score(torch.zeros(4, 1, 16, 16), torch.zeros(4, dtype=torch.long), [])
    with pytest.raises(ValueError, match="class index"):
        scorer.score(torch.zeros(4, 1, RESOLUTION, RESOLUTION), torch.full((4,), 10), [])


def test_only_fashion_mnist_is_supported(tmp_path: Path) -> None:
    info = DatasetInfo("imagenet", 4, 32, 1000, ["x"] * 1000, "vae", lambda i, g: "a photo of a x")
    scorer = get_scorer("probe", ScoreContext(dataset=info, cache_dir=tmp_path))
    with pytest.raises(ScorerUnavailableError, match="fashion-mnist"):
        scorer.check_available()


def test_an_inaccurate_probe_is_refused_and_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(probe_module, "_train", lambda model, splits, device: {"test_accuracy": 0.5})
    with pytest.raises(ScorerUnavailableError, match="50.00%"):
        get_probe(RESOLUTION, None, tmp_path, "cpu")
    assert not (tmp_path / "probe").exists() or not any((tmp_path / "probe").iterdir())


def test_training_does_not_depend_on_the_callers_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 10: runs with OMP_NUM_THREADS 1 and 2 trained different probes (0.9127 vs 0.9112) under one hash."""
    _, splits = load_dataset("fashion-mnist", RESOLUTION)
    train, test = splits["train"], splits["test"]
    small = {"train": LatentSplit(train.latents[:5120], train.labels[:5120]),
             "test": LatentSplit(test.latents[:500], test.labels[:500])}
    monkeypatch.setitem(probe_module.HYPERPARAMETERS, "epochs", 1)
    before, digests = torch.get_num_threads(), []
    try:
        for threads in (2, 1):
            torch.set_num_threads(threads)
            model = probe_module._build(10, 0)
            probe_module._train(model, small, torch.device("cpu"))
            assert torch.get_num_threads() == threads  # the caller's setting is restored
            digests.append(weights_sha256(model))
    finally:
        torch.set_num_threads(before)
    assert digests[0] == digests[1]


def test_cached_weights_that_do_not_match_their_record_are_refused(probe: Probe, cache_dir: Path, cheap_recipe: None,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "probe").mkdir()
    for suffix in (".pt", ".json", ".test-stats.npz"):
        (tmp_path / "probe" / f"{probe.hash}{suffix}").write_bytes((cache_dir / "probe" / f"{probe.hash}{suffix}").read_bytes())
    record_file = tmp_path / "probe" / f"{probe.hash}.json"
    record = json.loads(record_file.read_text())
    record["weights_sha256"] = "0" * 64
    record_file.write_text(json.dumps(record))
    with pytest.raises(ScorerUnavailableError, match=r"do not match their record .*Delete both files"):
        get_probe(RESOLUTION, None, tmp_path, "cpu")
