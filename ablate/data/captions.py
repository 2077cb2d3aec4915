"""Class captions for class-labelled image sets, as the paper turns ImageNet into a text-to-image set.

Each class has synonyms: for a WordNet synset folder (``n02123045``) the lemmas that ship with timm
(``timm/data/_info/imagenet_synset_to_lemma.txt``, e.g. "tabby, tabby cat"); any other folder
name stands for itself (underscores read as spaces). A caption is "a photo of a <synonym>"
("an" before a vowel). ``ablate prepare`` draws one synonym per sample, deterministically from
(seed, sample key), so the draw does not depend on sharding or device count. The *caption table*
lists every (class, synonym) caption once, class by class; its text embeddings are computed once.
"""

from __future__ import annotations

import csv
import hashlib
import pkgutil
import re
from functools import lru_cache
from typing import Callable

import torch

CAPTION_SOURCE = "WordNet lemmas of each synset from timm/data/_info/imagenet_synset_to_lemma.txt"
TEMPLATE = "a photo of a <synonym> ('an' before a vowel)"
_SYNSET = re.compile(r"n\d{8}")


def photo_caption(word: str) -> str:
    """"a photo of a <word>", with "an" before a vowel."""
    article = "an" if word[:1].lower() in "aeiou" else "a"
    return f"a photo of {article} {word}"


@lru_cache(maxsize=1)
def synset_lemmas() -> dict[str, str]:
    """WordNet synset id -> comma-separated lemmas, from the metadata that ships with timm."""
    data = pkgutil.get_data("timm.data", "_info/imagenet_synset_to_lemma.txt")
    if data is None:
        raise FileNotFoundError("timm's imagenet_synset_to_lemma.txt is missing from the installed timm package")
    return dict(csv.reader(data.decode("utf-8").splitlines(), delimiter="\t"))


def class_synonyms(folders: list[str]) -> list[tuple[str, ...]]:
    """Synonyms of each class folder: a synset's lemmas (timm), else the folder name itself."""
    lemmas = synset_lemmas()
    out = []
    for folder in folders:
        if _SYNSET.fullmatch(folder) and folder in lemmas:
            names = tuple(dict.fromkeys(n.strip() for n in lemmas[folder].split(",") if n.strip()))
        else:
            names = (folder.replace("_", " ").strip() or folder,)
        out.append(names)
    return out


def caption_table(synonyms: list[tuple[str, ...]]) -> tuple[list[str], list[int]]:
    """Every class caption once (class-major) and each class's first row in that table."""
    captions, starts = [], []
    for names in synonyms:
        starts.append(len(captions))
        captions += [photo_caption(n) for n in names]
    return captions, starts


def draw_synonym(key: str, count: int, seed: int) -> int:
    """A synonym index in [0, count) for sample ``key``: a hash of (seed, key), uniform enough."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % count


def caption_fn(synonyms: list[tuple[str, ...]]) -> Callable[[int, torch.Generator | None], str]:
    """DatasetInfo.caption: "a photo of a <synonym>" for a class, drawn with ``generator`` (first if None)."""

    def caption(class_index: int, generator: torch.Generator | None = None) -> str:
        names = synonyms[class_index]
        pick = 0 if generator is None else int(torch.randint(len(names), (1,), generator=generator))
        return photo_caption(names[pick])

    return caption
