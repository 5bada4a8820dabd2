"""Batches of rows with similar token counts, so dynamic padding pads little.

Training: shuffle, cut the permutation into mega-batches, sort each by length, cut it into batches,
shuffle the batches (HF's LengthGroupedSampler and the sortish sampler do the same). Evaluation:
rows sorted by length; `predict_logits` puts the results back in row order by each batch's `index`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

MEGA_BATCHES = 50  # batches per mega-batch at most (HF's choice): sorting within it keeps the epoch random


def epoch_permutation(size: int, seed: int, epoch: int, keep: int) -> list[int]:
    """The first `keep` rows of the epoch's permutation; shared with EpochSampler so both leave out
    the same rows and every process and every resume agree."""
    generator = torch.Generator().manual_seed(seed * 10_007 + epoch)
    return torch.randperm(size, generator=generator)[:keep].tolist()


def mega_batch_rows(rows: int, batch_size: int) -> int:
    """Rows per mega-batch: up to MEGA_BATCHES batches, fewer on small data so an epoch still holds
    about four mega-batches (as HF), never less than one batch."""
    return batch_size * max(1, min(MEGA_BATCHES, rows // (batch_size * 4)))


def grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, keep: int | None = None, window: int = 1
) -> list[list[int]]:
    """One epoch's batches, a pure function of its arguments.

    Grouping works on optimizer steps: windows of `window` batches (gradient accumulation steps x
    processes) are grouped as one batch of `batch_size * window` rows would be, then cut into their
    batches in order, so 4 accumulated batches of 8 update as one batch of 32 does, on one process or
    several. Every kept row appears once. Full windows come in shuffled order except that the one
    holding the longest row comes first (a memory error shows at the first step, not hours in); the
    one short batch, if any, comes last, where accelerate's BatchSamplerShard expects it (it tells the
    remainder by its size and pads it under DDP so that every process gets as many batches)."""
    keep = len(lengths) if keep is None else keep
    order, step_rows = epoch_permutation(len(lengths), seed, epoch, keep), batch_size * window
    span = mega_batch_rows(keep, step_rows)
    steps: list[list[int]] = []
    for start in range(0, len(order), span):
        mega = sorted(order[start : start + span], key=lambda i: -lengths[i])  # stable: ties keep the shuffle
        steps += [mega[j : j + step_rows] for j in range(0, len(mega), step_rows)]
    short = steps.pop() if steps and len(steps[-1]) < step_rows else None
    generator = torch.Generator().manual_seed(seed * 10_007 + epoch + 1_000_003)  # independent of the row draw
    steps = [steps[i] for i in torch.randperm(len(steps), generator=generator).tolist()]
    if steps:
        longest = max(range(len(steps)), key=lambda s: lengths[steps[s][0]])  # each is sorted: [0] is its longest
        steps[0], steps[longest] = steps[longest], steps[0]
    steps += [short] if short else []
    return [rows[j : j + batch_size] for rows in steps for j in range(0, len(rows), batch_size)]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Length-grouped batches whose order depends only on (seed, epoch), so `set_epoch` plus
    accelerate's `skip_first_batches` resume exactly mid-epoch. `batch_size` and `drop_last` are what
    accelerate reads to shard it across processes; the batch count equals a plain sampler's, so
    gradient accumulation windows and step counts are unchanged. `window` = batches per optimizer
    step over all processes (grad_accum_steps x processes): see grouped_batches."""

    def __init__(
        self, lengths: Sequence[int], batch_size: int, seed: int, keep: int | None = None, window: int = 1
    ) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = list(lengths), batch_size, seed, 0
        self.keep = len(self.lengths) if keep is None else keep
        self.window, self.drop_last = window, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(grouped_batches(self.lengths, self.batch_size, self.seed, self.epoch, self.keep, self.window))

    def __len__(self) -> int:
        return -(-self.keep // self.batch_size)


class LengthSortedSampler(Sampler[int]):
    """Every row once, longest first (the largest batch runs first); stable, so equal lengths keep
    row order. The caller restores row order from the batches' `index`."""

    def __init__(self, lengths: Sequence[int]) -> None:
        self.order = sorted(range(len(lengths)), key=lambda i: -lengths[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


def padded_tokens(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    """Tokens fed with dynamic padding: each batch padded to its longest row."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
