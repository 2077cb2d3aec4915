"""Decoding latents to pixels: identity passthrough, a real (tiny, random) AutoencoderKL, the uint8 rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ablate  # noqa: F401  (fixes torchvision before diffusers imports it)
from ablate.data.base import DatasetInfo
from ablate.data.decode import check_decoder, decoder_for, image_files, read_images, samples_to_images, to_uint8
from ablate.errors import ConfigError, ScorerUnavailableError


def _info(autoencoder: str, provenance: dict | None = None, **kwargs) -> DatasetInfo:
    return DatasetInfo(
        name="toy", channels=4, resolution=4, num_classes=2, class_names=["a", "b"],
        autoencoder=autoencoder, caption=lambda i, g=None: "a photo of a thing",
        provenance=provenance or {}, **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=8, scaling_factor=0.3, shift_factor=0.05,
    )
    path = tmp_path_factory.mktemp("vae") / "tiny-vae"
    vae.save_pretrained(path)
    return path


def _reference_decode(path: Path, raw: torch.Tensor) -> torch.Tensor:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(path).eval()
    with torch.no_grad():
        return vae.decode(raw).sample.clamp(-1, 1)


def test_identity_returns_its_input_unchanged() -> None:
    x = torch.randn(3, 1, 8, 8) * 2  # values outside [-1, 1] are not touched either
    decode = decoder_for(_info("identity"))
    assert decode.identity and decode(x) is x
    assert decode.provenance() == {"autoencoder": "identity"}


def test_vae_by_path_applies_scaling_and_shift_from_provenance(tiny_vae: Path) -> None:
    z = torch.randn(5, 4, 4, 4)
    decode = decoder_for(_info(str(tiny_vae), {"scaling_factor": 0.5, "shift_factor": 0.1}))
    pixels = decode(z)
    assert pixels.shape == (5, 3, 8, 8) and pixels.dtype == torch.float32
    assert pixels.min() >= -1 and pixels.max() <= 1
    torch.testing.assert_close(pixels, _reference_decode(tiny_vae, z / 0.5 + 0.1))
    # the factors matter: decoding without them gives other pixels
    assert not torch.allclose(pixels, _reference_decode(tiny_vae, z))
    prov = decode.provenance()
    assert prov["scaling_factor"] == 0.5 and prov["shift_factor"] == 0.1 and prov["factors_from"] == "dataset provenance"


def test_vae_falls_back_to_its_config_factors(tiny_vae: Path) -> None:
    z = torch.randn(2, 4, 4, 4)
    decode = decoder_for(_info(str(tiny_vae)))
    torch.testing.assert_close(decode(z), _reference_decode(tiny_vae, z / 0.3 + 0.05))
    assert decode.provenance()["factors_from"] == "autoencoder config"


def test_per_channel_normalised_latents_are_denormalised_first(tiny_vae: Path) -> None:
    mean, std = [0.1, -0.2, 0.3, 0.0], [1.5, 0.5, 2.0, 1.0]
    info = _info(str(tiny_vae), {"scaling_factor": 0.5}, latent_mean=mean, latent_std=std)
    z = torch.randn(2, 4, 4, 4)
    raw = z * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    torch.testing.assert_close(decoder_for(info)(z), _reference_decode(tiny_vae, raw))
    latents = pytest.importorskip("ablate.data.latents")  # one convention with the data side
    torch.testing.assert_close(decoder_for(info).raw(z), latents.denormalise(z, info))


def test_check_decoder_names_the_missing_autoencoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_decoder(_info("identity"))
    with pytest.raises(ScorerUnavailableError, match="no config.json"):
        check_decoder(_info(str(tmp_path)))
    with pytest.raises(ScorerUnavailableError, match="someone/not-a-cached-vae.*HF_HUB_OFFLINE") as err:
        check_decoder(_info("someone/not-a-cached-vae"))
    assert "'autoencoder' option" in str(err.value)


def test_to_uint8_rounds_like_a_png_writer_and_makes_rgb() -> None:
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0, -3.0, 0.5]).view(1, 1, 2, 3)
    images = to_uint8(x)
    assert images.dtype == torch.uint8 and images.shape == (1, 3, 2, 3)
    assert images[0, 0].flatten().tolist() == [0, 128, 255, 255, 0, 191]
    assert torch.equal(images[:, 0], images[:, 2])


def test_png_round_trip_gives_the_in_memory_images(tmp_path: Path) -> None:
    from PIL import Image

    pixels = torch.rand(3, 3, 6, 6) * 2 - 1
    images = samples_to_images(pixels, _info("identity"))
    for i, img in enumerate(images):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
    files = image_files(tmp_path)
    assert [f.name for f in files] == ["0.png", "1.png", "2.png"]
    assert torch.equal(read_images(files), images)
    assert read_images(files, resolution=4).shape == (3, 3, 4, 4)
    Image.new("RGB", (7, 5)).save(tmp_path / "odd.png")
    with pytest.raises(ConfigError, match="differ in size"):
        read_images(image_files(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no images"):
        image_files(tmp_path / "empty")
