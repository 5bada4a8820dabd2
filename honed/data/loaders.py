"""DataLoaders: a seeded per-epoch shuffle (reproducible and resumable) and sequential eval loaders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): every process and every resume agree.
    With `keep` < size, each epoch uses the first `keep` rows of its permutation."""

    def __init__(self, size: int, seed: int, keep: int | None = None) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.keep = size if keep is None else keep

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 10_007 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator)[: self.keep].tolist())

    def __len__(self) -> int:
        return self.keep


def rows_per_epoch(rows: int, batch_size: int, model: nn.Module) -> int:
    """Training rows used per epoch: all, except that a model with batch norm cannot train on a
    last batch of one row (batch statistics of a single value), so that epoch leaves one random
    row out (a different one each epoch)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return rows - 1 if has_bn and rows > 1 and rows % batch_size == 1 else rows


def train_loader(dataset: Dataset, batch_size: int, seed: int, collate: Any, workers: int,
                 keep: int | None = None) -> tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(dataset), seed, keep)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=workers,
                        generator=_private_generator(seed))
    return loader, sampler


def eval_loader(dataset: Dataset, batch_size: int, collate: Any, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers,
                      generator=_private_generator(0))


def _private_generator(seed: int) -> torch.Generator:
    """Starting a DataLoader iterator draws a worker seed; from its own generator, that draw leaves
    the global RNG (dropout) untouched, so a resumed run sees the same dropout masks."""
    return torch.Generator().manual_seed(seed)
