"""Datasets by name: Fashion-MNIST pixels (the default) or prepared autoencoder latents."""

from __future__ import annotations

from pathlib import Path

from ablate.data.base import DatasetInfo, LatentSplit

DATASETS: tuple[str, ...] = ("fashion-mnist", "imagenet", "cc12m")


def load_dataset(
    name: str, resolution: int, data_dir: Path | None = None
) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
    """The dataset's info and its splits "train" and "test" at ``resolution`` (latent side length)."""
    if name == "fashion-mnist":
        from ablate.data import fashion_mnist

        return fashion_mnist.load(resolution, data_dir)
    from ablate.data.latents import load_prepared

    return load_prepared(name, resolution, data_dir)


__all__ = ["DATASETS", "DatasetInfo", "LatentSplit", "load_dataset"]
