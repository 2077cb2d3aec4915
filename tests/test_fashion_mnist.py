"""Fashion-MNIST: locating (shipped copy, --data-dir, Debian, cache, download), verifying, the transform, captions."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
from pathlib import Path

import pytest
import torch

import ablate  # noqa: F401  (fixes torchvision first)
from ablate.data import DATASETS, fashion_mnist as fm, load_dataset
from ablate.errors import ConfigError, DatasetNotFoundError

SHIPPED = fm.EMBEDDED_DIR  # the copy inside the package: present wherever ablate is installed


def test_splits_shapes_range_and_labels() -> None:
    info, splits = load_dataset("fashion-mnist", 32)
    train, test = splits["train"], splits["test"]
    assert train.latents.shape == (60000, 1, 32, 32) and test.latents.shape == (10000, 1, 32, 32)
    assert train.latents.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert float(train.latents.min()) == -1.0 and float(train.latents.max()) == 1.0
    border = torch.cat([test.latents[..., :2, :].flatten(), test.latents[..., -2:, :].flatten(),
                        test.latents[..., :, :2].flatten(), test.latents[..., :, -2:].flatten()])
    assert torch.all(border == -1.0)  # 2 px of black padding, 28 -> 32
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert test.labels[:5].tolist() == [9, 2, 1, 1, 6]  # the canonical first test labels


def test_info_and_provenance() -> None:
    info, _ = load_dataset("fashion-mnist", 32)
    assert (info.name, info.channels, info.resolution, info.num_classes) == ("fashion-mnist", 1, 32, 10)
    assert info.autoencoder == "identity" and info.class_names == list(fm.CLASSES)
    prov = info.provenance
    assert prov["transform"] == "pad 28->32, resize to R, scale to [-1,1]" and prov["resolution"] == 32
    assert {name: sums["idx_sha256"] for name, sums in prov["files"].items()} == fm.IDX_SHA256
    assert prov["splits"] == {"train": 60000, "test": 10000}


def test_other_resolutions_resize_with_antialiasing_and_are_cached() -> None:
    _, s32 = load_dataset("fashion-mnist", 32)
    info, s16 = load_dataset("fashion-mnist", 16)
    x16, x32 = s16["test"].latents, s32["test"].latents
    assert x16.shape == (10000, 1, 16, 16) and info.resolution == 16
    assert x16.min() >= -1.0 and x16.max() <= 1.0
    assert abs(float(x16.mean()) - float(x32.mean())) < 0.01  # antialiased resizing keeps the mean
    pooled = torch.nn.functional.avg_pool2d(x32, 2)
    assert float((pooled - x16).abs().mean()) < 0.05
    assert load_dataset("fashion-mnist", 16)[1]["test"].latents is x16  # in-memory cache


def test_bad_resolution_is_a_config_error() -> None:
    for bad in (0, 2, 1000, 32.0):
        with pytest.raises(ConfigError, match="resolution"):
            load_dataset("fashion-mnist", bad)


def test_captions_draw_synonyms_with_a_generator() -> None:
    assert tuple(fm.SYNONYMS) == fm.CLASSES and all(len(s) >= 2 for s in fm.SYNONYMS.values())
    info, _ = load_dataset("fashion-mnist", 32)
    assert info.caption(9, None) == "a photo of an ankle boot"
    assert info.caption(0, None) == "a photo of a t-shirt"
    draws = [info.caption(4, torch.Generator().manual_seed(s)) for s in range(40)]
    assert set(draws) == {f"a photo of {'an' if w[0] in 'aeiou' else 'a'} {w}" for w in fm.SYNONYMS["Coat"]}
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [info.caption(c % 10, g1) for c in range(30)] == [info.caption(c % 10, g2) for c in range(30)]


def test_data_dir_is_searched_first_and_gz_or_raw_files_work(tmp_path: Path) -> None:
    for name in fm.FILES:
        src = SHIPPED / name
        if "labels" in name:  # one decompressed file: both forms are read
            (tmp_path / name[:-3]).write_bytes(gzip.decompress(src.read_bytes()))
        else:
            (tmp_path / name).symlink_to(src)
    assert fm.locate(tmp_path) == (tmp_path, "data-dir")
    info, splits = fm.load(32, tmp_path)
    assert info.provenance["source"] == str(tmp_path.resolve()) and info.provenance["origin"] == "data-dir"
    assert torch.equal(splits["test"].labels, load_dataset("fashion-mnist", 32)[1]["test"].labels)


def test_a_data_dir_may_hold_a_fashion_mnist_subfolder(tmp_path: Path) -> None:
    (tmp_path / "fashion-mnist").mkdir()
    for name in fm.FILES:
        (tmp_path / "fashion-mnist" / name).symlink_to(SHIPPED / name)
    assert fm.locate(tmp_path) == (tmp_path / "fashion-mnist", "data-dir")


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "partial"])
def test_an_explicit_data_dir_without_the_files_is_refused_not_replaced(tmp_path: Path, kind: str) -> None:
    given = tmp_path / "given"
    if kind == "file":
        given.write_text("not a directory")
    elif kind in ("empty", "partial"):
        given.mkdir()
    if kind == "partial":
        (given / fm.FILES[0]).symlink_to(SHIPPED / fm.FILES[0])
    with pytest.raises(DatasetNotFoundError) as err:
        fm.load(32, given)
    message = str(err.value)
    assert repr(str(given)) in message and "\n" not in message
    expected = {"missing": "does not exist", "file": "is a file, not a directory", "empty": "lacks " + fm.FILES[0],
                "partial": "lacks " + ", ".join(fm.FILES[1:])}[kind]
    assert expected in message, message


def test_the_shipped_copy_needs_no_network_and_no_debian_package(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    _offline(monkeypatch, tmp_path)
    monkeypatch.setattr(fm.urllib.request, "urlopen", lambda *a, **k: pytest.fail("no download expected"))
    assert fm.locate(None) == (SHIPPED, "embedded")
    info, splits = fm.load(32)
    assert info.provenance["origin"] == "embedded" and info.provenance["source"] == str(SHIPPED.resolve())
    assert len(splits["train"]) == 60000


def test_a_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    for name in fm.FILES:
        (tmp_path / name).symlink_to(SHIPPED / name)
    victim = tmp_path / "t10k-images-idx3-ubyte.gz"
    victim.unlink()
    victim.write_bytes((SHIPPED / victim.name).read_bytes()[:5000])
    with pytest.raises(DatasetNotFoundError, match=r"t10k-images-idx3-ubyte\.gz.*truncated or corrupt"):
        fm.load(32, tmp_path)
    victim.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetNotFoundError, match=r"t10k-images-idx3-ubyte\.gz.*BadGzipFile"):
        fm.load(32, tmp_path)


def test_a_corrupt_file_is_rejected(tmp_path: Path) -> None:
    for name in fm.FILES:
        (tmp_path / name).symlink_to(SHIPPED / name)
    labels = bytearray(gzip.decompress((SHIPPED / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(labels)))
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte.gz.*SHA-256"):
        fm.load(32, tmp_path)


def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shipped: bool = True) -> None:
    """Hide the Debian copy and the download cache (and the shipped copy unless ``shipped``)."""
    if not shipped:
        monkeypatch.setattr(fm, "EMBEDDED_DIR", tmp_path / "no-shipped-copy")
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setenv("ABLATE_CACHE", str(tmp_path / "cache"))


def test_without_the_shipped_copy_the_debian_copy_then_the_cache_are_used(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    _offline(monkeypatch, tmp_path, shipped=False)
    cached = tmp_path / "cache" / "fashion-mnist"
    cached.mkdir(parents=True)
    for name in fm.FILES:
        (cached / name).symlink_to(SHIPPED / name)
    assert fm.locate(None) == (cached, "cache")
    debian = tmp_path / "no-debian"
    debian.mkdir()
    for name in fm.FILES:
        (debian / name).symlink_to(SHIPPED / name)
    assert fm.locate(None) == (debian, "debian")


def test_nothing_found_explains_the_three_ways(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _offline(monkeypatch, tmp_path, shipped=False)

    def no_network(url: str, timeout: float) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fm.urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError) as err:
        fm.locate(None)
    message = str(err.value)
    assert "--data-dir" in message and "apt-get install dataset-fashion-mnist" in message
    assert fm.SOURCE_URL in message and "no network" in message and "\n" not in message


def test_download_verifies_checksums(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    served = {fm.SOURCE_URL + name: (SHIPPED / name).read_bytes() for name in fm.FILES}
    _offline(monkeypatch, tmp_path, shipped=False)
    monkeypatch.setattr(fm.urllib.request, "urlopen", lambda url, timeout: io.BytesIO(served[url]))
    # The Debian .gz bytes differ from the published ones: the published MD5 must reject them.
    with pytest.raises(DatasetNotFoundError, match="expected"):
        fm.locate(None)
    assert not any((tmp_path / "cache" / "fashion-mnist").iterdir())  # nothing half-written kept
    md5 = {Path(url).name: hashlib.md5(data).hexdigest() for url, data in served.items()}
    monkeypatch.setattr(fm, "SOURCE_GZ_MD5", md5)
    assert fm.locate(None) == (tmp_path / "cache" / "fashion-mnist", "download")
    assert fm.locate(None) == (tmp_path / "cache" / "fashion-mnist", "cache")
    assert sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir()) == sorted(fm.FILES)


def test_other_names_go_to_prepared_latents(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DATASETS == ("fashion-mnist", "imagenet", "cc12m")
    latents = pytest.importorskip("ablate.data.latents")
    seen = []
    monkeypatch.setattr(latents, "load_prepared", lambda *args: seen.append(args) or "prepared")
    assert load_dataset("imagenet", 32, Path("/x")) == "prepared"
    assert seen == [("imagenet", 32, Path("/x"))]
