"""`ablate prepare` end to end on tiny real-image collections, offline, with random-init models.

Images: photos that ship with scikit-image (skimage.data) and Fashion-MNIST test images, written
as an ImageFolder tree and as img2dataset-style WebDataset tars. Autoencoder: a 25k-parameter
diffusers AutoencoderKL (f8, 4 channels) built from a config and loaded by path. Text encoder:
a tiny open_clip config with random weights saved to a file.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import ablate  # noqa: F401  (torchvision fix first)
from ablate.cli import main
from ablate.data.captions import class_synonyms, draw_synonym, photo_caption
from ablate.data.encode import AutoencoderUnavailableError, load_autoencoder
from ablate.data.latents import find_prepared, load_prepared
from ablate.data.fashion_mnist import EMBEDDED_DIR
from ablate.data.shards import MANIFEST, read_manifest
from ablate.data.prepare import PrepareJob, prepare
from ablate.data.sources import center_crop, expand_braces
from ablate.data.text import TextEncoder, TextEncoderSpec, TextEncoderUnavailableError
from ablate.errors import AblateError, ConfigError, DatasetNotFoundError

skdata = pytest.importorskip("skimage.data")
FASHION = EMBEDDED_DIR / "t10k-images-idx3-ubyte.gz"  # the package's own copy: always there
RES = 32  # pixels; latents 4 x 4 x 4
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def fashion_images(count: int) -> list[Image.Image]:
    raw = np.frombuffer(gzip.decompress(FASHION.read_bytes()), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    return [Image.fromarray(raw[i]) for i in range(count)]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=RES,
    )
    vae.save_pretrained(root / "vae")
    import open_clip

    (root / "tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / "tiny-clip.json")
    torch.save(open_clip.create_model("tiny-clip", pretrained=None).state_dict(), root / "tiny-clip.pt")
    return {"vae": root / "vae", "clip_config": root / "tiny-clip.json", "clip_weights": root / "tiny-clip.pt"}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imagenet") / "train"
    classes = {
        "n02123045": [skdata.chelsea(), skdata.cat()],          # tabby, tabby cat
        "n03594734": [np.asarray(im) for im in fashion_images(4)],  # jean, blue jean, denim (grey 28x28)
        "n04008634": [skdata.rocket(), skdata.coffee()],        # projectile, missile
        "misc_things": [skdata.astronaut(), skdata.camera(), skdata.logo()],  # not a synset: grey, RGBA
    }
    for folder, images in classes.items():
        (root / folder).mkdir(parents=True)
        for i, array in enumerate(images):
            Image.fromarray(array).save(root / folder / f"img{i}.png")
    (root / "n02123045" / "broken.jpg").write_bytes(jpeg(Image.fromarray(skdata.cat()))[:300])  # truncated
    return root


def tiny_job(out: Path, models: dict[str, Path], **kw: object) -> PrepareJob:
    text = TextEncoderSpec(str(models["clip_config"]), None, str(models["clip_weights"]), tokens=True)
    defaults = dict(dataset="imagenet", out=str(out), resolution=RES, vae=str(models["vae"]), text=text,
                    shard_size=4, holdout=2, batch_size=3)
    defaults.update(kw)
    return PrepareJob(**defaults)  # type: ignore[arg-type]


def quiet() -> object:
    from rich.console import Console

    return Console(file=io.StringIO(), width=120)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory: pytest.TempPathFactory, image_folder: Path, models: dict[str, Path]) -> Path:
    """Prepared through the command line, as a user would."""
    out = tmp_path_factory.mktemp("data") / "imagenet32-tiny"
    argv = ["prepare", "imagenet", "--root", str(image_folder), "--out", str(out), "--resolution", str(RES),
            "--vae", str(models["vae"]), "--text-model", str(models["clip_config"]), "--text-pretrained", "none",
            "--text-weights", str(models["clip_weights"]), "--shard-size", "4", "--holdout", "2",
            "--gpus", "cpu", "--workers", "0", "--batch-size", "3"]
    assert main(argv) == 0
    return out


def test_manifest_records_the_job(imagenet: Path, image_folder: Path) -> None:
    manifest = read_manifest(imagenet)
    assert manifest["dataset"] == "imagenet" and manifest["resolution"] == RES
    assert (manifest["latent_resolution"], manifest["latent_channels"]) == (RES // 8, 4)
    assert manifest["counts"] == {"images": 11, "corrupt": 1, "shards": 3}
    assert manifest["corrupt"][0]["key"] == "n02123045/broken.jpg"
    assert manifest["autoencoder"]["scaling_factor"] == pytest.approx(0.18215)
    assert manifest["command"].startswith("python -m ablate prepare imagenet")
    assert manifest["classes"]["folders"] == ["misc_things", "n02123045", "n03594734", "n04008634"]
    assert manifest["classes"]["synonyms"][1] == ["tabby", "tabby cat"]
    assert manifest["classes"]["synonyms"][0] == ["misc things"]
    assert len(manifest["latent_mean"]) == 4 and all(s > 0 for s in manifest["latent_std"])
    assert manifest["text_encoder"]["pooled"]["dim"] == 16 and manifest["text_encoder"]["tokens"]["shape"] == [16, 32]
    assert all(len(entry["sha256"]) == 64 for entry in manifest["files"].values())
    assert not list(imagenet.glob("*.part"))


def test_stored_moments_are_the_cropped_image_and_its_mirror(imagenet: Path, image_folder: Path,
                                                            models: dict[str, Path]) -> None:
    key = "n02123045/img0.png"
    shard = next(json.loads(p.read_text()) for p in sorted(imagenet.glob("shard-*.json")) if key in p.read_text())
    moments = np.load(imagenet / shard["moments"], mmap_mode="r")
    vae = load_autoencoder(str(models["vae"]))
    position = shard["keys"].index(key)
    crop = center_crop(Image.open(image_folder / "n02123045" / "img0.png").convert("RGB"), RES)
    for flip, image in ((0, crop), (1, ImageOps.mirror(crop))):
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        with torch.no_grad():
            dist = vae.encode(x).latent_dist
        np.testing.assert_allclose(moments[position, flip, 0], dist.mean[0].numpy(), atol=2e-3, rtol=2e-3)
        np.testing.assert_allclose(moments[position, flip, 1], dist.std[0].numpy(), atol=2e-3, rtol=2e-3)


def test_load_serves_normalised_latents_labels_and_captions(imagenet: Path, models: dict[str, Path]) -> None:
    info, splits = load_prepared("imagenet", RES // 8, imagenet.parent)
    train, test = splits["train"], splits["test"]
    assert (info.channels, info.resolution, info.num_classes, info.cond_dim) == (4, RES // 8, 4, 16)
    assert len(train) == 10 and len(test) == 1  # holdout 2 asked, at most a tenth of 11 kept
    assert train.latents.shape == (10, 4, 4, 4) and test.latents[0].shape == (4, 4, 4)
    # normalised with the manifest statistics: over the whole set, posterior means average to 0 and
    # Var(mean) + E[std^2] is 1 per channel
    mean, std = (torch.cat(pair) for pair in zip(train.latents.moments(torch.arange(10)), test.latents.moments([0])))
    torch.testing.assert_close(test.latents[:], test.latents.moments([0])[0])
    assert mean.mean((0, 2, 3)).abs().max() < 1e-2
    second_moment = mean.var((0, 2, 3), unbiased=False) + (std**2).mean((0, 2, 3))
    torch.testing.assert_close(second_moment, torch.ones(4), atol=2e-2, rtol=0)
    # labels follow the sorted class folders; captions are "a photo of a <synonym of that class>"
    synonyms = class_synonyms(["misc_things", "n02123045", "n03594734", "n04008634"])
    for i in range(len(train)):
        assert train.captions[i] in {photo_caption(s) for s in synonyms[int(train.labels[i])]}
    assert info.caption(1, torch.Generator().manual_seed(0)) in {"a photo of a tabby", "a photo of a tabby cat"}
    # text embeddings are those of each sample's own caption
    encoder = TextEncoder(TextEncoderSpec(str(models["clip_config"]), None, str(models["clip_weights"])))
    pooled, tokens = encoder.encode([train.captions[i] for i in range(len(train))])
    np.testing.assert_allclose(train.text_emb[:].numpy(), pooled, atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(train.text_tokens[torch.tensor([0, 3])].numpy(), tokens[[0, 3]], atol=5e-3, rtol=5e-3)


def test_flips_and_resampling_draw_from_the_stored_posterior(imagenet: Path) -> None:
    _, flipping = load_prepared(str(imagenet), RES // 8, resample=False, flip=True)
    mean, _ = flipping["train"].latents.moments([2, 2], flipped=torch.tensor([0, 1]))
    draws = flipping["train"].latents[torch.full((400,), 2)]
    is_plain = (draws - mean[0]).abs().amax((1, 2, 3)) < 1e-6
    is_mirror = (draws - mean[1]).abs().amax((1, 2, 3)) < 1e-6
    assert bool((is_plain | is_mirror).all()) and 150 < int(is_plain.sum()) < 250
    _, sampling = load_prepared(str(imagenet), RES // 8, resample=True, flip=False)
    view = sampling["train"].latents
    view.generator = torch.Generator().manual_seed(0)
    samples = view[torch.full((4000,), 2)]
    mean, std = view.moments([2])
    torch.testing.assert_close(samples.mean(0), mean[0], atol=0.1, rtol=0)
    torch.testing.assert_close(samples.std(0), std[0], atol=0.06, rtol=0.1)
    assert torch.equal(sampling["test"].latents[0], sampling["test"].latents[0])  # test split: mean, no noise


def test_synonym_draw_covers_every_synonym() -> None:
    counts = np.bincount([draw_synonym(f"img{i}.jpg", 3, seed=0) for i in range(3000)], minlength=3)
    assert counts.min() > 850
    assert draw_synonym("a", 3, 0) == draw_synonym("a", 3, 0)


def webdataset_tars(folder: Path) -> list[tuple[str, str]]:
    """Two img2dataset-style tars; returns (key, caption) of the readable images."""
    photos = [skdata.chelsea(), skdata.rocket(), skdata.coffee(), *[np.asarray(im) for im in fashion_images(3)]]
    expected = []
    for t in range(2):
        with tarfile.open(folder / f"{t:05d}.tar", "w") as tar:
            for j, photo in enumerate(photos[3 * t : 3 * t + 3]):
                key = f"{t:05d}{j:04d}"
                caption = f"picture number {t}-{j}, seen\nfrom afar"
                payload = jpeg(Image.fromarray(photo)) if (t, j) != (1, 1) else b"\xff\xd8not a jpeg"
                for ext, data in (("jpg", payload), ("txt", caption.encode()), ("json", b"{}")):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                if (t, j) != (1, 1):
                    expected.append((f"{t:05d}.tar/{key}", " ".join(caption.split())))
    return expected


def test_cc12m_tars_keep_captions(tmp_path: Path, models: dict[str, Path]) -> None:
    expected = webdataset_tars(tmp_path)
    text = TextEncoderSpec(str(models["clip_config"]), None, str(models["clip_weights"]), tokens=False)
    job = tiny_job(tmp_path / "cc12m", models, dataset="cc12m", source=(str(tmp_path / "{00000..00001}.tar"),),
                   tars_per_shard=1, text=text)
    prepare(job, ["cpu"], console=quiet())
    manifest = read_manifest(tmp_path / "cc12m")
    assert manifest["counts"] == {"images": 5, "corrupt": 1, "shards": 2}
    assert manifest["corrupt"][0]["key"] == "00001.tar/000010001"
    info, splits = load_prepared("cc12m", RES // 8, tmp_path)
    assert info.num_classes == 0 and info.cond_dim == 16 and splits["train"].text_tokens is None
    keys = [k for s in (0, 1) for k in json.loads((tmp_path / "cc12m" / f"shard-{s:05d}.json").read_text())["keys"]]
    captions = dict(expected)
    rows = np.setdiff1d(np.arange(5), [0])  # holdout 1 of 5 (at most a tenth, at least one): row 0
    assert [splits["train"].captions[i] for i in range(4)] == [captions[keys[r]] for r in rows]
    assert bool((splits["train"].labels == 0).all())
    with pytest.raises(ConfigError, match="no classes"):
        info.caption(0, None)


def test_resume_after_interruption_skips_finished_shards(tmp_path: Path, image_folder: Path,
                                                         models: dict[str, Path]) -> None:
    job = tiny_job(tmp_path / "out", models, source=(str(image_folder),))

    class Stop(Exception):
        pass

    def stop_after_first(record: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        prepare(job, ["cpu"], console=quiet(), on_shard_done=stop_after_first)
    out = tmp_path / "out"
    assert not (out / MANIFEST).exists() and (out / "shard-00000.json").exists()
    with pytest.raises(DatasetNotFoundError, match="Unfinished"):
        find_prepared("imagenet", RES // 8, tmp_path)
    first = (out / "moments-00000.npy").stat().st_mtime_ns
    (out / "moments-00001.npy.part").write_bytes(b"half a shard")  # killed mid-shard
    (out / "moments-00002.npy").write_bytes(b"renamed, but no shard record")
    seen: list[int] = []
    prepare(job, ["cpu"], console=quiet(), on_shard_done=lambda r: seen.append(r["index"]))
    assert seen == [1, 2] and (out / "moments-00000.npy").stat().st_mtime_ns == first
    assert not list(out.glob("*.part"))
    _, splits = load_prepared("imagenet", RES // 8, tmp_path)
    assert len(splits["train"]) + len(splits["test"]) == 11


def test_tampered_shard_fails_checksum_and_prepare_repairs_it(tmp_path: Path, imagenet: Path,
                                                              image_folder: Path, models: dict[str, Path]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(imagenet, copy)
    with open(copy / "moments-00001.npy", "r+b") as handle:
        handle.seek(-3, 2)
        byte = handle.read(1)
        handle.seek(-3, 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(DatasetNotFoundError, match="moments-00001.npy has SHA-256"):
        load_prepared(str(copy), RES // 8)
    with open(copy / "labels-00002.npy", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(DatasetNotFoundError, match="bytes"):
        load_prepared(str(copy), RES // 8, verify="size")
    job = tiny_job(copy, models, source=(str(image_folder),), workers=0)
    seen: list[int] = []
    prepare(job, ["cpu"], console=quiet(), on_shard_done=lambda r: seen.append(r["index"]))
    assert seen == [1, 2]
    load_prepared(str(copy), RES // 8)


def test_clear_errors(tmp_path: Path, image_folder: Path, imagenet: Path, models: dict[str, Path],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    (empty / "n01440764").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="No images were found"):
        prepare(tiny_job(tmp_path / "o1", models, source=(str(empty),)), ["cpu"], console=quiet())
    with pytest.raises(DatasetNotFoundError, match="do not exist"):
        prepare(tiny_job(tmp_path / "o2", models, dataset="cc12m", source=(str(tmp_path / "{0..3}.tar"),)), ["cpu"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AutoencoderUnavailableError, match="'nobody/no-such-vae'.*local diffusers folder"):
        prepare(tiny_job(tmp_path / "o3", models, source=(str(image_folder),), vae="nobody/no-such-vae"), ["cpu"])
    retry = tiny_job(tmp_path / "o3", models, source=(str(image_folder),), text=None, shard_size=64)
    prepare(retry, ["cpu"], console=quiet())  # nothing was finished under the failed job: taken over
    info, splits = load_prepared(str(tmp_path / "o3"), RES // 8)
    assert info.cond_dim == 0 and splits["train"].text_emb is None  # --text-model none: no embeddings...
    assert splits["train"].captions[0].startswith("a photo of")  # ...but the caption text is kept
    with pytest.raises(TextEncoderUnavailableError, match="--text-weights"):
        TextEncoder(TextEncoderSpec("ViT-B-32", "openai"))
    with pytest.raises(ConfigError, match="different prepared dataset.*resolution"):
        prepare(tiny_job(imagenet, models, source=(str(image_folder),), resolution=64), ["cpu"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        prepare(tiny_job(tmp_path / "busy", models, source=(str(image_folder),)), ["cpu"])
    with pytest.raises(ConfigError, match="not at latent resolution 8"):
        load_prepared("imagenet", 8, imagenet.parent)
    assert all(isinstance(e, AblateError) for e in (ConfigError("x"), AutoencoderUnavailableError("y")))


def test_prepare_writes_only_under_its_out(tmp_path: Path, image_folder: Path, models: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27: prepare, run in a working directory of its own, writes only its --out (see tests/test_outputs.py
    for the other commands)."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    argv = ["prepare", "imagenet", "--root", str(image_folder), "--out", str(tmp_path / "out"), "--resolution",
            str(RES), "--vae", str(models["vae"]), "--text-model", "none", "--shard-size", "64", "--holdout", "1",
            "--gpus", "cpu", "--workers", "0", "--batch-size", "3"]
    assert main(argv) == 0
    assert list(cwd.rglob("*")) == []
    assert [p for p in home.rglob("*") if p.is_file() and ".cache/matplotlib" not in str(p)] == []
    assert (tmp_path / "out" / MANIFEST).is_file()


def test_a_reference_split_of_one_image_stops_the_run_before_its_first_cell(
        tmp_path: Path, imagenet: Path, models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27: a prepared set whose test split (the FID reference) holds one image failed every cell after
    training ("a covariance needs at least 2 features, got 1"); the pre-flight refuses it before any cell."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""name: one-ref
variants: [rf]
datasets: [imagenet]
data: {{resolution: {RES // 8}, val_size: 1, data_dir: '{imagenet.parent}'}}
model: {{patch_size: 1, hidden_size: 16, depth: 1, num_heads: 2}}
eval: {{num_samples: 4, scorers: [fid_clip],
        scorer_options: {{fid_clip: {{model: tiny-clip, pretrained: none,
                                      clip_weights: {models['clip_weights']}}}}}}}
""")
    code = main(["run", str(grid), "--results", str(tmp_path / "results"), "--device", "cpu"])
    message = " ".join(capsys.readouterr().err.split())
    assert code == 2, message
    assert "scorer 'fid_clip'" in message.lower() and "1 image(s)" in message and "frechet distance" in message.lower()
    assert not list((tmp_path / "results").rglob("*.ckpt")) and not list((tmp_path / "results").rglob("*.json"))


def test_brace_expansion_and_center_crop() -> None:
    assert expand_braces("d/{00008..00011}.tar") == [f"d/{i:05d}.tar" for i in range(8, 12)]
    assert expand_braces("{a,b}/{1..2}") == ["a/1", "a/2", "b/1", "b/2"]
    wide = Image.fromarray(np.tile(np.arange(600, dtype=np.uint8)[None, :] % 251, (400, 1)))
    crop = np.asarray(center_crop(wide, 32))
    assert crop.shape == (32, 32)
    # the crop is the centre of the image: halved to 300 x 200, resized to 48 x 32, columns 8..40
    assert abs(int(crop[0, 16]) - int(wide.getpixel((300, 0)))) < 12


def sd_vae_available() -> str | None:
    import os

    local = os.environ.get("ABLATE_SD_VAE")
    if local and Path(local).is_dir():
        return local
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache("stabilityai/sd-vae-ft-ema", "config.json")
    return "stabilityai/sd-vae-ft-ema" if isinstance(hit, str) else None


@pytest.mark.skipif(sd_vae_available() is None, reason="stabilityai/sd-vae-ft-ema weights are not available locally")
def test_real_sd_vae_ft_ema(tmp_path: Path, image_folder: Path) -> None:
    job = PrepareJob("imagenet", (str(image_folder),), str(tmp_path / "sd"), resolution=256,
                     vae=sd_vae_available(), text=None, holdout=1, batch_size=4)  # type: ignore[arg-type]
    prepare(job, ["cuda:0" if torch.cuda.is_available() else "cpu"], console=quiet())
    info, splits = load_prepared(str(tmp_path / "sd"), 32)
    assert (info.channels, info.resolution) == (4, 32)
    assert read_manifest(tmp_path / "sd")["autoencoder"]["scaling_factor"] == pytest.approx(0.18215)
    assert splits["train"].latents[0].shape == (4, 32, 32)
