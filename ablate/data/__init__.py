"""Datasets by name: Fashion-MNIST pixels (the default) or prepared autoencoder latents."""

from __future__ import annotations

from pathlib import Path

from ablate.data.base import DatasetInfo, LatentSplit

DATASETS: tuple[str, ...] = ("fashion-mnist", "imagenet", "cc12m")


def load_dataset(
    name: str, resolution: int, data_dir: Path | None = None, conditioning: str = "class"
) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
    """The dataset's info and its splits "train" and "test" at ``resolution`` (latent side length); with
    ``conditioning`` "caption", Fashion-MNIST items carry captions and their token ids
    (:mod:`ablate.data.class_captions`)."""
    if name == "fashion-mnist":
        from ablate.data import fashion_mnist

        info, splits = fashion_mnist.load(resolution, data_dir)
        if conditioning == "caption":
            from ablate.data.class_captions import captioned

            return captioned(info, splits, [fashion_mnist.SYNONYMS[c] for c in fashion_mnist.CLASSES])
        return info, splits
    from ablate.data.latents import load_prepared

    return load_prepared(name, resolution, data_dir)


__all__ = ["DATASETS", "DatasetInfo", "LatentSplit", "load_dataset"]
