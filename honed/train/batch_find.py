"""Per-device batch-size search (`honed batch-find`), Lightning's batch-size finder in spirit.

Batch sizes 8, 16, 32, ... up to a cap each run one warm-up training step (forward, backward,
AdamW step: the optimizer state is allocated too) and then a few timed steps. On CUDA the search
doubles until `torch.cuda.OutOfMemoryError` and picks the largest batch that ran: memory is what
limits a GPU, and its batches are built from the training set's longest rows, so real batches fit.
On CPU nothing runs out before the cap; the pick is the batch with the best throughput.

The recipe's effective batch (batch_size x grad_accum_steps x processes) sets the optimisation, so
the report also gives the batch size and grad_accum_steps that keep it while fitting the pick.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import default_collate

from honed.data.batches import inputs_of
from honed.errors import HonedError
from honed.progress import progress_bar
from honed.train.lr_find import Parts, build_parts
from honed.train.optim import build_optimizer

FIRST = 8
CPU_CAP = 256
CUDA_CAP = 16384
POOL = 64  # distinct rows a batch is built from (repeated to the batch size)


@dataclass
class Trial:
    batch: int
    fits: bool
    samples_per_s: float = 0.0
    peak_gib: float | None = None  # CUDA only


@dataclass
class BatchReport:
    device: str
    goal: str  # "memory" (largest that fits) or "throughput"
    trials: list[Trial]
    best: int
    effective: int  # the recipe's batch_size x grad_accum_steps x processes
    batch_size: int  # per device, keeping `effective`
    grad_accum_steps: int
    processes: int = 1
    notes: list[str] = field(default_factory=list)


def batch_find(
    recipe: Any,
    data: dict[str, Any] | None = None,
    *,
    max_batch: int | None = None,
    timed_steps: int = 3,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> BatchReport:
    """Try doubling batch sizes for `recipe` (path, dict or Recipe, dotted overrides as in `fit`)."""
    if max_batch is not None and max_batch < 1:
        raise HonedError(f"--max: the largest batch to try must be >= 1, got {max_batch}")
    if timed_steps < 1:
        raise HonedError(f"--steps: at least 1 timed step per batch size, got {timed_steps}")
    parts = build_parts(recipe, data, {**(overrides or {}), **kwargs})
    cuda = parts.acc.device.type == "cuda"
    cap = max_batch or (CUDA_CAP if cuda else CPU_CAP)
    trials = measure(parts, sizes(cap), timed_steps, show=not quiet and parts.acc.is_main_process)
    goal = "memory" if cuda else "throughput"
    best = choose(trials, goal)
    spec, processes = parts.recipe.train, parts.acc.num_processes
    per_device = spec.batch_size * spec.grad_accum_steps
    batch, accum = keep_effective(per_device, best)
    report = BatchReport(str(parts.acc.device), goal, trials, best, per_device * processes, batch, accum, processes)
    if best > per_device:
        report.notes.append(
            f"a batch of {best} with no accumulation would raise the effective batch from "
            f"{per_device * processes} to {best * processes}: retune optim.lr if you take it"
        )
    if cuda and all(t.fits for t in trials):
        report.notes.append(f"every size up to the cap fitted; pass --max {cap * 2} to try larger ones")
    return report


def sizes(cap: int) -> list[int]:
    """8, 16, 32, ... up to `cap` (just `cap` when it is below 8)."""
    out = [min(FIRST, cap)]
    while out[-1] * 2 <= cap:
        out.append(out[-1] * 2)
    return out


def measure(parts: Parts, batch_sizes: list[int], timed_steps: int, show: bool = False) -> list[Trial]:
    """One warm-up and `timed_steps` timed training steps per size, stopping at the first that runs
    out of memory. The model trains on the way (it is the probe's own copy; nothing is saved)."""
    acc = parts.acc
    model, optimizer = acc.prepare(parts.model, build_optimizer(parts.model, parts.recipe.optim))
    model.train()
    pool = _pool(parts, acc.device)
    trials: list[Trial] = []
    with progress_bar(show) as bars:
        task = bars.add_task("batch-find", total=len(batch_sizes), info="")
        for size in batch_sizes:
            bars.update(task, info=f"batch {size}")
            trial = _trial(model, optimizer, parts, _repeat(pool, size), size, timed_steps)
            trials.append(trial)
            bars.update(task, advance=1)
            if not trial.fits:
                break
    if not trials[0].fits:
        raise HonedError(
            f"batch-find: even a batch of {trials[0].batch} ran out of memory on {acc.device}; "
            "lower data.max_length or data.image_size, or pick a smaller model"
        )
    return trials


def _trial(
    model: Any, optimizer: Any, parts: Parts, batch: dict[str, torch.Tensor], size: int, timed_steps: int
) -> Trial:
    cuda = parts.acc.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(parts.acc.device)
    trial = Trial(size, fits=True)
    try:
        _train_step(model, optimizer, parts, batch)  # warm-up: allocations, kernels, optimizer state
        _sync(cuda)
        started = time.perf_counter()
        for _ in range(timed_steps):
            _train_step(model, optimizer, parts, batch)
        _sync(cuda)
        trial.samples_per_s = size * timed_steps / (time.perf_counter() - started)
    except torch.cuda.OutOfMemoryError:
        trial.fits = False
    optimizer.zero_grad(set_to_none=True)  # outside `except`: its traceback no longer pins the tensors
    if cuda:
        trial.peak_gib = torch.cuda.max_memory_allocated(parts.acc.device) / 2**30
        gc.collect()
        torch.cuda.empty_cache()
    return trial


def _train_step(model: Any, optimizer: Any, parts: Parts, batch: dict[str, torch.Tensor]) -> None:
    loss = parts.loss_fn(model(**inputs_of(batch)), batch["labels"])
    parts.acc.backward(loss)
    if parts.recipe.train.max_grad_norm:
        parts.acc.clip_grad_norm_(model.parameters(), parts.recipe.train.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _pool(parts: Parts, device: torch.device) -> dict[str, torch.Tensor]:
    """Up to POOL training rows, the longest first for text (padding them all to the longest row:
    the memory a real batch needs at most), collated and moved to `device`."""
    dataset = parts.dataset
    columns = getattr(dataset, "columns", None)
    order = list(range(len(dataset)))
    if columns is not None and "input_ids" in columns:
        order.sort(key=lambda i: -len(columns["input_ids"][i]))
    rows = [dataset[i] for i in order[:POOL]]
    batch = parts.collate(rows) if parts.collate is not None else default_collate(rows)
    return {k: v.to(device) for k, v in batch.items()}


def _repeat(pool: dict[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
    index = torch.arange(size, device=next(iter(pool.values())).device) % len(pool["labels"])
    return {k: v[index] for k, v in pool.items()}


def choose(trials: list[Trial], goal: str) -> int:
    """The largest batch that ran ("memory") or the one with the most samples/s ("throughput")."""
    ran = [t for t in trials if t.fits]
    if goal == "memory":
        return max(t.batch for t in ran)
    return max(ran, key=lambda t: t.samples_per_s).batch


def keep_effective(per_device: int, limit: int) -> tuple[int, int]:
    """(batch_size, grad_accum_steps) with batch_size x grad_accum_steps == `per_device` (the
    recipe's rows per device per optimizer step) and the largest batch_size not above `limit`."""
    batch = max(d for d in range(1, min(per_device, limit) + 1) if per_device % d == 0)
    return batch, per_device // batch
