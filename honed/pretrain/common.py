"""Shared pieces of the pretraining objectives: the run folder, the unlabelled rows, and how an objective's
batches run through the ordinary training loop (honed/train/loop.py; no loop of its own)."""

from __future__ import annotations

import json
import math
import random
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import send_to_device

from honed.data.tables import read_table, require_columns
from honed.errors import HonedError
from honed.recipe import Recipe
from honed.rundir import LOG, check_run_dir, close_log, open_run_dir
from honed.train.events import Hooks
from honed.train.loop import train
from honed.train.precision import mixed_precision
from honed.train.state import TrainState


def start_run(recipe: Recipe, overwrite: bool) -> Path:
    """RUN_DIR (never replaced without --overwrite) with the resolved recipe and log.txt."""
    run_dir = recipe.run_dir()
    check_run_dir(run_dir, overwrite, resume=False)
    open_run_dir(run_dir, overwrite, resume=False, main=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    return run_dir


def finish_run(run_dir: Path, summary: dict[str, Any], wall_s: float | None = None) -> None:
    if wall_s is not None:
        summary = {**summary, "wall_s": round(wall_s, 1)}
    (run_dir / "pretrain.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    close_log()


def unlabelled_rows(recipe: Recipe) -> list[Any]:
    """Texts (or image paths) to pretrain on: `pretrain.data` when set (only the text/path column is
    needed), else the recipe's training split only, so val/test rows never leak into the backbone."""
    column = recipe.data.text_column if recipe.data.kind == "text" else recipe.data.path_column
    if recipe.pretrain.data:
        from honed.assets import resolve_data_path

        path = resolve_data_path(recipe.pretrain.data, "pretrain.data")
        if recipe.data.kind == "image" and path.is_dir():
            suffixes = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
            rows = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in suffixes)
        else:
            frame = read_table(path, "pretrain.data")
            key = "data.text_column" if recipe.data.kind == "text" else "data.path_column"
            require_columns(frame, {key: column}, str(path))
            values = frame[column].dropna().astype(str)
            rows = values.tolist() if recipe.data.kind == "text" else [str((path.parent / v).resolve()) for v in values]
    else:
        from honed.data.build import load_tables

        train_x = load_tables(recipe).frames["train"]["x"]
        rows = [x if isinstance(x, np.ndarray) else str(x) for x in train_x]  # IDX data: arrays
    rows = [r for r in rows if not isinstance(r, str) or r.strip()]
    if recipe.pretrain.max_rows:
        rows = rows[: recipe.pretrain.max_rows]
    if not rows:
        raise HonedError(f"pretrain.data: no non-empty rows in column '{column}' to pretrain on")
    return rows


def run_epochs(
    recipe: Recipe,
    batches: Callable[[], Iterable[Any]],
    n_batches: int,
    step: Callable[[Any], torch.Tensor],
    params: list[torch.nn.Parameter],
    quiet: bool,
    what: str,
    model: torch.nn.Module | None = None,
) -> list[float]:
    """`pretrain.epochs` passes of `step` (a batch -> the objective's loss) in the ordinary training loop:
    AdamW over `params` at `pretrain.lr` (weight decay 0.01), linear warmup over `pretrain.warmup_ratio`
    of the steps then linear decay to 0 (`warmup_linear`), gradients clipped to norm 1; a batch whose
    loss is not finite is skipped (`FiniteSteps`). `model`, the module the parameters belong to, goes
    to the accelerator's device with them (without it, training stays on the CPU). Returns the mean
    loss of each epoch."""
    spec = recipe.pretrain
    acc = Accelerator(cpu=recipe.train.cpu or model is None, mixed_precision=mixed_precision(recipe.train.precision))
    objective = acc.prepare(Objective(step, params, model))  # moved first: the optimizer holds the moved parameters
    optimizer = acc.prepare(torch.optim.AdamW([{"params": params, "base_lr": spec.lr}], lr=spec.lr, weight_decay=0.01))
    total = max(1, spec.epochs * n_batches)
    warmup = round(spec.warmup_ratio * total)
    loader = Batches(batches, n_batches, acc.device)
    steps = FiniteSteps(what)
    with _scratch(recipe) as scratch:  # the loop's metrics.jsonl and checkpoints; the run keeps only its outputs
        state = TrainState(_loop_recipe(recipe), Path(scratch), objective, optimizer, acc, total, n_batches)
        train(
            state,
            Hooks([], [steps]),
            loader,
            loader,
            None,
            _objective_loss,
            lambda s: warmup_linear(s, warmup, total),
            show=not quiet and acc.is_main_process,
        )
    return steps.per_epoch


class Objective(torch.nn.Module):
    """The loop's model for a pretraining objective: `forward(batch)` runs the objective's step, which
    computes its own loss (its targets, masked tokens or rotation turns, ride inside the batch)."""

    def __init__(
        self, step: Callable[[Any], torch.Tensor], params: list[torch.nn.Parameter], model: torch.nn.Module | None
    ) -> None:
        super().__init__()
        self.step = step
        # registered, so it moves to the device with the objective
        self.owner = model if model is not None else torch.nn.ParameterList(params)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.step(batch)


def _objective_loss(loss: torch.Tensor, _rows: torch.Tensor) -> torch.Tensor:
    """The loop's loss function for an `Objective`: its output already is the loss."""
    return loss


class Batches:
    """An objective's batches as the loop reads a loader (and sampler): a length, `set_epoch`, and dicts
    on the device holding the objective's batch under "batch" and, under "labels", a placeholder whose
    length is the batch's row count (the loop counts samples by it)."""

    def __init__(self, batches: Callable[[], Iterable[Any]], n_batches: int, device: torch.device) -> None:
        self.batches, self.n_batches, self.device = batches, n_batches, device

    def __len__(self) -> int:
        return self.n_batches

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: each call of `batches` reshuffles with its own seed."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches():
            batch = send_to_device(batch, self.device)
            yield {"batch": batch, "labels": torch.empty(_rows(batch))}


def _rows(batch: Any) -> int:
    """Rows in a batch: a tensor's first dimension, or that of the first tensor in a mapping (a
    tokenizer's BatchEncoding) or tuple."""
    if isinstance(batch, torch.Tensor):
        return batch.shape[0]
    return _rows(next(iter(batch.values())) if isinstance(batch, Mapping) else batch[0])


class FiniteSteps:
    """Skips the optimizer step of a batch whose loss is not finite (e.g. a short batch in which no
    token was masked: no target, NaN loss; one NaN step would ruin every weight): its gradients are
    dropped, so AdamW leaves every parameter and its moments as they were. Records the mean finite
    loss of each epoch in `per_epoch` and logs it. (Under fp16 the loss scaler skips such steps itself.)"""

    def __init__(self, what: str) -> None:
        self.what = what
        self.per_epoch: list[float] = []
        self._seen: list[float] = []
        self._finite = True

    def on_epoch_start(self, state: Any) -> None:
        self._seen = []

    def on_after_loss(self, state: Any) -> None:
        value = float(state.loss.detach())
        self._finite = math.isfinite(value)
        if self._finite:
            self._seen.append(value)

    def on_before_optimizer_step(self, state: Any) -> None:
        if not self._finite and state.accelerator.scaler is None:
            state.optimizer.zero_grad(set_to_none=True)  # a parameter without a gradient is not stepped

    def on_epoch_end(self, state: Any) -> None:
        self.per_epoch.append(float(np.mean(self._seen)) if self._seen else float("nan"))
        LOG.info("pretrain epoch %d: %s loss %.4f", state.epoch, self.what, self.per_epoch[-1])


def _loop_recipe(recipe: Recipe) -> Recipe:
    """The recipe as the loop reads it for pretraining: the pretrain section's epochs, one batch per
    step, gradients clipped to norm 1, no step checkpoints, no tracker; no limit on skipped non-finite steps
    (a batch with no masked token has no loss: an ordinary event here, not a fault)."""
    spec = recipe.train.model_copy(
        update={
            "epochs": recipe.pretrain.epochs,
            "batch_size": recipe.pretrain.batch_size,
            "grad_accum_steps": 1,
            "max_grad_norm": 1.0,
            "max_steps": None,
            "checkpoint_every_steps": None,
            "max_bad_steps": None,
        }
    )
    return recipe.model_copy(update={"train": spec, "log": type(recipe.log)()})  # default log section: no trackers


def _scratch(recipe: Recipe) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder inside the run folder when it exists (checkpoints of a large model stay on
    its disk, not in a RAM-backed /tmp), else in the system's temporary folder."""
    run_dir = recipe.run_dir()
    return tempfile.TemporaryDirectory(prefix=".pretrain-loop-", dir=str(run_dir) if run_dir.is_dir() else None)


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """LR multiplier: rises linearly over `warmup` steps, then falls linearly to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def shuffled_chunks(rows: list[Any], size: int, seed: int) -> list[list[Any]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    return [[rows[i] for i in order[s : s + size]] for s in range(0, len(rows), size)]


__all__ = ["finish_run", "pd", "run_epochs", "shuffled_chunks", "start_run", "unlabelled_rows", "warmup_linear"]
