"""Learning-rate range test (Smith 2015, fastai's `lr_find`): which `optim.lr` to train with.

A copy of the recipe's model trains for up to `steps` optimizer steps while the LR grows
exponentially from `start` to `end`; the loss, smoothed as fastai does (exponential moving average,
beta 0.98, bias-corrected), is recorded until it passes 4x its best or turns NaN. The suggestion
is fastai's default "valley" point (the middle of the longest falling stretch of the curve, a
little past its steepest part), or the steepest descent of the smoothed loss against log LR.

The swept LR is `optim.lr`: every param group keeps its ratio to it (layer-wise decay, group_lr),
as in training. Techniques are not applied; nothing but `lr_find.csv` and `lr_find.png` in the
run folder is written.
"""

from __future__ import annotations

import copy
import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import Dataset

from honed.data.build import load_tables, make_collate, make_dataset
from honed.data.loaders import train_loader
from honed.errors import HonedError
from honed.fit import _precision, normalise_overrides
from honed.losses import Loss, build_loss
from honed.models.base import Classifier
from honed.models.build import build_model
from honed.progress import progress_bar
from honed.recipe import Recipe, load_recipe
from honed.train.optim import build_optimizer, set_lr

BETA = 0.98  # loss smoothing, as fastai
DIVERGED = 4.0  # stop once the smoothed loss passes this multiple of its best
METHODS = ("valley", "steep")
OUTPUTS = ("lr_find.csv", "lr_find.png")


@dataclass
class Parts:
    """The recipe's accelerator, model, loss and augmented training set, built as `fit` builds them."""

    recipe: Recipe
    acc: Accelerator
    model: Classifier
    loss_fn: Loss
    dataset: Dataset
    collate: Any


def build_parts(recipe: Any, data: dict[str, Any] | None, overrides: dict[str, Any]) -> Parts:
    """What a probe of the recipe (range test, batch-size search) needs, without a run folder."""
    recipe = load_recipe(recipe, normalise_overrides(overrides))
    acc = Accelerator(cpu=recipe.train.cpu, mixed_precision=_precision(recipe.train.precision))
    set_seed(recipe.seed)
    tables = load_tables(recipe, data)
    model = build_model(recipe, tables.labels)
    counts = tuple(int(c) for c in tables.frames["train"]["label"].value_counts().reindex(tables.labels.names).fillna(0))
    dataset = make_dataset(tables.frames["train"], tables.labels, recipe, model.preprocess, train=True)
    collate = make_collate(recipe, model.preprocess, train=True)
    return Parts(recipe, acc, model, build_loss(recipe.loss, counts), dataset, collate)


def lr_find(recipe: Any, data: dict[str, Any] | None = None, *, start: float = 1e-7, end: float = 10.0, steps: int = 100,
            method: str = "valley", overwrite: bool = False, quiet: bool = False,
            **overrides: Any) -> tuple[list[float], list[float], float]:
    """Run the range test for `recipe` (a path, dict or Recipe, with dotted overrides as in `fit`);
    writes the curve and its plot to the run folder and returns (lrs, smoothed losses, suggestion)."""
    _check_range(start, end, steps, method)
    parts = build_parts(recipe, data, overrides)
    folder = parts.recipe.run_dir()
    taken = [name for name in OUTPUTS if (folder / name).exists()]
    if taken and not overwrite:
        raise HonedError(f"run folder '{folder}' already holds {taken[0]}; pass --overwrite to replace the range test's files")
    lrs, raw, smoothed = range_test(parts, start, end, steps, show=not quiet and parts.acc.is_main_process)
    suggestion = suggest(lrs, smoothed, method)
    if parts.acc.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / "lr_find.csv", lrs, raw, smoothed)
        plot(folder / "lr_find.png", lrs, smoothed, suggestion, method)
    return lrs, smoothed, suggestion


def _check_range(start: float, end: float, steps: int, method: str) -> None:
    if not start > 0:
        raise HonedError(f"--start: the first learning rate must be > 0, got {start}")
    if not end > start:
        raise HonedError(f"--end: the last learning rate must be above --start ({start:g}), got {end:g}")
    if steps < 5:
        raise HonedError(f"--steps: a range test needs at least 5 steps, got {steps}")
    if method not in METHODS:
        raise HonedError(f"--method: unknown suggestion method '{method}'; valid: {', '.join(METHODS)}")


def range_test(parts: Parts, start: float, end: float, steps: int, show: bool = False) -> tuple[list[float], list[float], list[float]]:
    """(LRs, raw losses, smoothed losses) of the steps run on a copy of `parts.model`; each step
    accumulates `train.grad_accum_steps` batches and clips gradients like training."""
    recipe, acc = parts.recipe, parts.acc
    spec = recipe.train
    model = copy.deepcopy(parts.model)
    optimizer = build_optimizer(model, recipe.optim)
    loader, sampler = train_loader(parts.dataset, spec.batch_size, recipe.seed, parts.collate, recipe.data.num_workers)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    model.train()
    batches = _endless(loader, sampler)
    lrs: list[float] = []
    raw: list[float] = []
    smoothed: list[float] = []
    average, best = 0.0, math.inf
    with progress_bar(show) as bars:
        task = bars.add_task("lr-find", total=steps, info="")
        for i in range(steps):
            lr = start * (end / start) ** (i / (steps - 1))
            set_lr(optimizer, lr / recipe.optim.lr)  # the head's group runs at `lr`, the others keep their ratio
            loss = _step(model, optimizer, batches, parts.loss_fn, acc, spec.grad_accum_steps, spec.max_grad_norm)
            average = BETA * average + (1 - BETA) * loss
            smooth = average / (1 - BETA ** (i + 1))
            lrs.append(lr)
            raw.append(loss)
            smoothed.append(smooth)
            bars.update(task, advance=1, info=f"lr {lr:.2e}  loss {smooth:.4f}")
            if not math.isfinite(smooth) or smooth > DIVERGED * best:
                break
            best = min(best, smooth)
    return lrs, raw, smoothed


def _endless(loader: Any, sampler: Any) -> Iterator[dict[str, torch.Tensor]]:
    """Batches epoch after epoch (a range test may need more steps than one epoch holds)."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def _step(model: Any, optimizer: Any, batches: Iterator[dict[str, torch.Tensor]], loss_fn: Any, acc: Any,
          accum: int, max_grad_norm: float | None) -> float:
    """One optimizer step over `accum` batches; returns their mean loss."""
    total = 0.0
    for _ in range(accum):
        batch = next(batches)
        labels = batch.pop("labels")
        loss = loss_fn(model(**batch), labels)
        acc.backward(loss / accum)
        total += float(acc.reduce(loss.detach(), reduction="mean"))  # every process sees the same loss and stops together
    if max_grad_norm:
        acc.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / accum


def suggest(lrs: list[float], losses: list[float], method: str = "valley") -> float:
    """The suggested LR from a (smoothed) range-test curve. Like fastai, the first tenth and the last
    5 points are left out when there are at least 10, and so is everything from the first NaN."""
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]
    if len(losses) >= 10:
        lrs, losses = lrs[len(losses) // 10: -5], losses[len(losses) // 10: -5]
    if len(losses) < 2:
        raise HonedError(f"lr-find: the loss diverged after {finite} steps, too soon to suggest a learning rate; lower --start")
    if method == "steep":
        slopes = [(losses[i + 1] - losses[i]) / math.log(lrs[i + 1] / lrs[i]) for i in range(len(losses) - 1)]
        return lrs[min(range(len(slopes)), key=slopes.__getitem__)]
    return lrs[_valley(losses)]


def _valley(losses: list[float]) -> int:
    """fastai's valley: the longest (not necessarily contiguous) falling run of the curve; the index
    a half of its length past its first third."""
    n = len(losses)
    run = [1] * n  # run[i]: length of the longest falling sequence ending at i
    first, last = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[last] < run[i]:
            last, first = i, i - run[i]
    third = (last - first) / 3
    return first + int(third) + int(third / 2)


def write_csv(path: Path, lrs: list[float], raw: list[float], smoothed: list[float]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "lr", "loss", "smoothed_loss"])
        writer.writerows([i, lr, loss, smooth] for i, (lr, loss, smooth) in enumerate(zip(lrs, raw, smoothed, strict=True)))


def plot(path: Path, lrs: list[float], losses: list[float], suggestion: float, method: str) -> None:
    """Smoothed loss against log LR with the suggestion marked (matplotlib's Agg canvas: no pyplot,
    so no global backend is changed)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4), dpi=100)
    axes = figure.subplots()
    axes.plot(lrs, losses)
    axes.set_xscale("log")
    axes.axvline(suggestion, color="tab:red", linestyle="--", label=f"{method}: {suggestion:.2e}")
    axes.plot([suggestion], [losses[lrs.index(suggestion)]], "o", color="tab:red")
    shown = [v for v in (losses[:-5] if len(losses) > 10 else losses) if math.isfinite(v)] or [0.0]
    low, high = min(shown), max(shown)  # like fastai's plot, the blow-up at the end is cut off
    pad = 0.05 * (high - low) or 0.05 * abs(high) or 0.05
    axes.set_ylim(low - pad, high + pad)
    axes.set_xlabel("learning rate (optim.lr)")
    axes.set_ylabel("smoothed training loss")
    axes.set_title("LR range test")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
