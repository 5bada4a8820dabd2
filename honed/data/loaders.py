"""DataLoaders: a seeded per-epoch shuffle (reproducible and resumable) and eval loaders.

Text rows, whose token counts are known, are batched by length unless the recipe says
`data.group_by_length: false` (see length_grouping); other data keep a plain shuffle and row order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from honed.data.length_grouping import LengthGroupedBatchSampler, LengthSortedSampler, epoch_permutation


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): every process and every resume agree.
    With `keep` < size, each epoch uses the first `keep` rows of its permutation."""

    def __init__(self, size: int, seed: int, keep: int | None = None) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.keep = size if keep is None else keep

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(epoch_permutation(self.size, self.seed, self.epoch, self.keep))

    def __len__(self) -> int:
        return self.keep


def rows_per_epoch(rows: int, batch_size: int, model: nn.Module) -> int:
    """Training rows used per epoch: all, except that a model with batch norm cannot train on a
    last batch of one row (batch statistics of a single value), so that epoch leaves one random
    row out (a different one each epoch)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return rows - 1 if has_bn and rows > 1 and rows % batch_size == 1 else rows


def row_lengths(dataset: Dataset) -> list[int] | None:
    """Each row's token count when the dataset knows it without re-tokenising (its `lengths()`), else None."""
    lengths = getattr(dataset, "lengths", None)
    return lengths() if callable(lengths) else None


def train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    collate: Any,
    workers: int,
    keep: int | None = None,
    group_by_length: bool = False,
    window: int = 1,
) -> tuple[DataLoader, Sampler]:
    """The training loader and the sampler whose `set_epoch` picks each epoch's order: length-grouped
    batches when asked and the rows have lengths (grouped per optimizer step of `window` batches:
    grad_accum_steps x processes), a plain seeded shuffle otherwise. Either way an epoch has
    ceil(keep / batch_size) batches and only the last may be short."""
    lengths = row_lengths(dataset) if group_by_length else None
    if lengths is not None:
        grouped = LengthGroupedBatchSampler(lengths, batch_size, seed, keep, window)
        loader = DataLoader(
            dataset, batch_sampler=grouped, collate_fn=collate, num_workers=workers, generator=_private_generator(seed),
            pin_memory=pin_memory(),
        )
        return loader, grouped
    sampler = EpochSampler(len(dataset), seed, keep)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=workers,
        generator=_private_generator(seed),
        pin_memory=pin_memory(),
    )
    return loader, sampler


def eval_loader(
    dataset: Dataset, batch_size: int, collate: Any, workers: int, sort_by_length: bool = False
) -> DataLoader:
    """Every row once; longest first when asked and the rows have lengths (less padding), in row order
    otherwise. Batches carry each row's `index`, from which predict_logits restores row order."""
    lengths = row_lengths(dataset) if sort_by_length else None
    sampler = LengthSortedSampler(lengths) if lengths is not None else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        collate_fn=collate,
        num_workers=workers,
        generator=_private_generator(0),
        pin_memory=pin_memory(),
    )


def pin_memory() -> bool:
    """Page-locked batches only where they help: copies to a CUDA device (on CPU pinning is pure cost)."""
    return torch.cuda.is_available()


def _private_generator(seed: int) -> torch.Generator:
    """Starting a DataLoader iterator draws a worker seed; from its own generator, that draw leaves
    the global RNG (dropout) untouched, so a resumed run sees the same dropout masks."""
    return torch.Generator().manual_seed(seed)
