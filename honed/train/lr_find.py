"""Learning-rate range test (Smith 2015, fastai's `lr_find`): which `optim.lr` to train with.

A copy of the recipe's model trains in the ordinary loop (honed/train/loop.py) for up to `steps`
optimizer steps under the `LRRangeTest` callback (honed/train/lr_range.py), which grows the LR
exponentially from `start` to `end`, records the smoothed loss and cancels the fit once it passes 4x
its best or turns NaN. The suggestion is fastai's default "valley" point (the middle of the longest
falling stretch of the curve, a little past its steepest part), or the steepest descent of the
smoothed loss against log LR.

The swept LR is `optim.lr`: every param group keeps its ratio to it (layer-wise decay, group_lr),
as in training. Techniques are not applied; the loop's own bookkeeping (metrics.jsonl, checkpoints)
goes to a temporary folder, so nothing but `lr_find.csv` and `lr_find.png` lands in the run folder,
and `honed train` may use that folder afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import Dataset

from honed.data.build import load_tables, make_collate, make_dataset
from honed.data.loaders import train_loader
from honed.errors import HonedError
from honed.losses import Loss, build_loss
from honed.models.base import Classifier
from honed.models.build import build_model
from honed.recipe import Recipe, load_recipe
from honed.train.events import CancelFit, Hooks
from honed.train.loop import train
from honed.train.lr_range import LRRangeTest
from honed.train.optim import build_optimizer
from honed.train.precision import mixed_precision
from honed.train.state import TrainState

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
    """What a probe of the recipe (range test, batch-size search) needs, without a run folder.
    Overrides are dotted keys; `optim__lr` spells `optim.lr` as a Python keyword, as in `fit`."""
    recipe = load_recipe(recipe, {k.replace("__", "."): v for k, v in overrides.items()})
    acc = Accelerator(
        cpu=recipe.train.cpu,
        mixed_precision=mixed_precision(recipe.train.precision),
        gradient_accumulation_steps=recipe.train.grad_accum_steps,
    )
    set_seed(recipe.seed)
    tables = load_tables(recipe, data)
    model = build_model(recipe, tables.labels)
    counts = tuple(
        int(c) for c in tables.frames["train"]["label"].value_counts().reindex(tables.labels.names).fillna(0)
    )
    dataset = make_dataset(tables.frames["train"], tables.labels, recipe, model.preprocess, train=True)
    collate = make_collate(recipe, model.preprocess, train=True)
    return Parts(recipe, acc, model, build_loss(recipe.loss, counts), dataset, collate)


def lr_find(
    recipe: Any,
    data: dict[str, Any] | None = None,
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    method: str = "valley",
    overwrite: bool = False,
    quiet: bool = False,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[list[float], list[float], float]:
    """Run the range test for `recipe` (a path, dict or Recipe, with dotted overrides as in `fit`);
    writes the curve and its plot to the run folder and returns (lrs, smoothed losses, suggestion)."""
    _check_range(start, end, steps, method)
    parts = build_parts(recipe, data, {**(overrides or {}), **kwargs})
    folder = parts.recipe.run_dir()
    taken = [name for name in OUTPUTS if (folder / name).exists()]
    if taken and not overwrite:
        raise HonedError(
            f"run folder '{folder}' already holds {taken[0]}; pass --overwrite to replace the range test's files"
        )
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


def range_test(
    parts: Parts, start: float, end: float, steps: int, show: bool = False
) -> tuple[list[float], list[float], list[float]]:
    """(LRs, raw losses, smoothed losses) of the steps the training loop runs on a copy of
    `parts.model` under an `LRRangeTest` callback; each step accumulates `train.grad_accum_steps`
    batches and clips gradients, as training does, since it is training's own loop."""
    recipe, acc = parts.recipe, parts.acc
    model = copy.deepcopy(parts.model)
    optimizer = build_optimizer(model, recipe.optim)
    loader, sampler = train_loader(
        parts.dataset,
        recipe.train.batch_size,
        recipe.seed,
        parts.collate,
        recipe.data.num_workers,
        group_by_length=recipe.data.group_by_length,
        window=recipe.train.grad_accum_steps * acc.num_processes,
    )
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    per_epoch = -(-len(loader) // recipe.train.grad_accum_steps)
    finder = LRRangeTest(start, end, steps)
    with tempfile.TemporaryDirectory(prefix="honed-lr-find-") as scratch:  # the loop's metrics.jsonl and checkpoints
        probe = _probe_recipe(recipe, -(-steps // per_epoch))
        state = TrainState(probe, Path(scratch), model, optimizer, acc, steps, per_epoch)
        with contextlib.suppress(CancelFit):  # the usual end: the loss diverged or the steps ran out
            # a constant schedule: the finder sets each step's LR itself
            train(state, Hooks([], [finder]), loader, sampler, None, parts.loss_fn, lambda step: 1.0, show)
    return finder.lrs, finder.raw, finder.smoothed


def _probe_recipe(recipe: Recipe, epochs: int) -> Recipe:
    """The recipe as the loop should read it for a probe: enough epochs for the steps (the range test
    may need more batches than one epoch holds), no step checkpoints, no tracker."""
    spec = recipe.train.model_copy(update={"epochs": epochs, "max_steps": None, "checkpoint_every_steps": None})
    return recipe.model_copy(update={"train": spec, "log": type(recipe.log)()})  # default log section: no trackers


def suggest(lrs: list[float], losses: list[float], method: str = "valley") -> float:
    """The suggested LR from a (smoothed) range-test curve. Like fastai, the first tenth and the last
    5 points are left out when there are at least 10, and so is everything from the first NaN."""
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))
    lrs, losses = lrs[:finite], losses[:finite]
    if len(losses) >= 10:
        lrs, losses = lrs[len(losses) // 10 : -5], losses[len(losses) // 10 : -5]
    if len(losses) < 2:
        raise HonedError(
            f"lr-find: the loss diverged after {finite} steps, too soon to suggest a learning rate; lower --start"
        )
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
        rows = enumerate(zip(lrs, raw, smoothed, strict=True))
        writer.writerows([i, lr, loss, smooth] for i, (lr, loss, smooth) in rows)


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
