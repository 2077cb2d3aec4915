"""Captions for a class-labelled set made offline (Fashion-MNIST's caption mode), tokenised for a jointly
trained caption encoder.

Every class has synonyms (the dataset's) and every synonym is written with each of :data:`TEMPLATES`
("an" before a vowel); the *caption table* lists each (class, synonym, template) caption once, class-major.
Item i of a split gets one caption of its class, drawn from (seed, split, i) by
:func:`ablate.data.captions.draw_synonym`, so the draw is the same on every machine and for every cell.
Captions are tokenised with open_clip's tokenizer (its BPE vocabulary ships inside the wheel; nothing is
downloaded), ``CONTEXT_LENGTH`` tokens with start and end of text, then mapped to a *compact vocabulary*:
the open_clip ids that occur in the table, in increasing order, numbered from 1 (0 stays padding). A
caption of padding only is the null caption (classifier-free guidance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import torch
from torch import Tensor

from ablate.data.base import DatasetInfo, LatentSplit
from ablate.data.captions import draw_synonym

TEMPLATES: tuple[str, ...] = (
    "a photo of {}", "a picture of {}", "{} on a plain background", "a grayscale photo of {}", "a small image of {}",
)
CONTEXT_LENGTH = 16
CAPTION_SEED = 0
TOKENIZER = "open_clip SimpleTokenizer (OpenAI CLIP BPE, shipped in the open_clip wheel)"


def with_article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


@dataclass(frozen=True)
class CaptionTable:
    """Every caption once (class-major), each class's first row and row count, and the token ids."""

    captions: tuple[str, ...]
    starts: tuple[int, ...]
    counts: tuple[int, ...]
    ids: Tensor                 # (rows, CONTEXT_LENGTH) compact token ids, 0 = padding
    vocabulary: tuple[int, ...]  # the open_clip id of compact id k + 1

    @property
    def vocab_size(self) -> int:
        """Compact ids 0 (padding) to len(vocabulary)."""
        return len(self.vocabulary) + 1


@lru_cache(maxsize=4)
def caption_table(synonyms: tuple[tuple[str, ...], ...], context_length: int = CONTEXT_LENGTH) -> CaptionTable:
    """The table of ``synonyms`` (one tuple per class) written with every template, tokenised."""
    from open_clip.tokenizer import SimpleTokenizer

    captions, starts, counts = [], [], []
    for names in synonyms:
        starts.append(len(captions))
        captions += [template.format(with_article(name)) for name in names for template in TEMPLATES]
        counts.append(len(captions) - starts[-1])
    raw = SimpleTokenizer(context_length=context_length)(captions)
    vocabulary = torch.unique(raw[raw != 0])
    ids = torch.where(raw != 0, torch.searchsorted(vocabulary, raw) + 1, 0)
    return CaptionTable(tuple(captions), tuple(starts), tuple(counts), ids, tuple(int(v) for v in vocabulary))


def caption_rows(labels: Tensor, split: str, table: CaptionTable, seed: int = CAPTION_SEED) -> Tensor:
    """Each item's row of the caption table: a caption of its class drawn from (seed, split, index)."""
    return torch.tensor([table.starts[c] + draw_synonym(f"{split}:{i}", table.counts[c], seed)
                         for i, c in enumerate(labels.tolist())], dtype=torch.long)


class RowCaptions(Sequence[str]):
    """The caption text of each item, as rows of the table (no copy per item)."""

    def __init__(self, captions: tuple[str, ...], rows: Tensor) -> None:
        self.captions, self.rows = captions, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):  # noqa: ANN001, ANN204 (an int; slices are not needed)
        return self.captions[int(self.rows[i])]


def captioned(info: DatasetInfo, splits: dict[str, LatentSplit], synonyms: Sequence[Sequence[str]],
              seed: int = CAPTION_SEED) -> tuple[DatasetInfo, dict[str, LatentSplit]]:
    """The dataset with a caption per item: ``text_tokens`` (N, L) compact ids and ``captions`` text;
    the info gains the vocabulary size and context length and says how the captions were made."""
    table = caption_table(tuple(tuple(s) for s in synonyms))
    out = {}
    for name, split in splits.items():
        rows = caption_rows(split.labels, name, table, seed)
        out[name] = replace(split, text_tokens=table.ids[rows], captions=RowCaptions(table.captions, rows))
    provenance = {**info.provenance, "captions": {
        "templates": list(TEMPLATES), "synonyms": [list(s) for s in synonyms], "seed": seed,
        "draw": "per item: blake2b(seed:split:index) over its class's captions", "tokenizer": TOKENIZER,
        "context_length": CONTEXT_LENGTH, "vocab_size": table.vocab_size}}
    return replace(info, caption_vocab=table.vocab_size, caption_length=CONTEXT_LENGTH,
                               provenance=provenance), out
