"""Stochastic weight averaging (Izmailov et al. 2018) with `torch.optim.swa_utils.AveragedModel`.

From a point in training on (`start`: a fraction of the steps, or `start_epoch`), the weights at
each epoch end (or every N steps) join an equal average. Validation swaps the average in, after
recomputing batch-norm statistics for it with one pass over the training data (as `update_bn`
does: reset, momentum None = cumulative average), and swaps the live weights back afterwards; so
metrics, the best-checkpoint choice and the final model use the average once it exists. Without a
validation set the average replaces the weights at the end. The learning rate keeps following the
recipe's schedule (a constant SWA LR is not needed for the averaging to help).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from honed.data.batches import inputs_of
from honed.errors import HonedError
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES, flagged
from honed.techniques.ema import check_one_average, copy_into
from honed.train import checkpoint
from honed.train.events import Technique
from honed.train.schedules import planned_steps


def trainable_batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Batch-norm layers with running statistics that train (frozen ones keep their pretrained stats)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and _trains(m)
    ]


def _trains(module: nn.Module) -> bool:
    params = list(module.parameters(recurse=False))
    return not params or any(p.requires_grad for p in params)


def through_stand_ins(model: nn.Module) -> Iterator[nn.Module]:
    """Every module, and after a stand-in (a module naming the one it holds the place of in `stands_in_for`, as
    honed/train/lower_cache.py's do for a cached frozen lower part) that real module, which `modules()` skips:
    a frozen batch norm standing alone behind one must keep its statistics too."""
    for module in model.modules():
        yield module
        real = getattr(module, "stands_in_for", None)
        if isinstance(real, nn.Module):
            yield real


@contextmanager
def side_pass(loader: Any) -> Iterator[None]:
    """An extra pass over the training loader that leaves training untouched: the global RNG, the
    loader's own generator and accelerate's pass counter (which sets the sampler's epoch, hence the
    next epoch's shuffle) are restored afterwards."""
    rng, generator, passes = (
        checkpoint.rng_state(),
        getattr(loader, "generator", None),
        getattr(loader, "iteration", None),
    )
    generator_state = generator.get_state() if generator is not None else None
    try:
        yield
    finally:
        checkpoint.set_rng_state(rng)
        if generator_state is not None:
            generator.set_state(generator_state)
        if passes is not None:
            loader.iteration = passes


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, loader: Any, accelerator: Any) -> None:
    """`update_bn` for batches of keyword inputs: reset the running statistics of the trainable
    batch norms and re-estimate them as a cumulative average over one pass of `loader`. The RNG
    state is restored afterwards so the extra pass does not change the rest of training."""
    norms = trainable_batch_norms(model)
    if not norms:
        return
    modes = {m: m.training for m in through_stand_ins(model)}
    momenta = {m: m.momentum for m in norms}
    for module in norms:
        module.reset_running_stats()
        module.momentum = None
    model.train()
    for module in through_stand_ins(model):  # frozen batch norms stay in eval: their statistics must not move
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module not in momenta:
            module.eval()
    with side_pass(loader):
        for batch in loader:
            model(**inputs_of(batch))
    for module, mode in modes.items():
        module.training = mode
    for module in norms:
        module.momentum = momenta[module]
        if accelerator.num_processes > 1:  # each process saw its own shard: average the estimates
            module.running_mean.copy_(accelerator.reduce(module.running_mean, "mean"))
            module.running_var.copy_(accelerator.reduce(module.running_var, "mean"))


class SWA(Technique):
    swaps_weights_for_eval = True
    acts_on_head_only = True

    def __init__(self, start: float = 0.75, start_epoch: int | None = None, every: str | int = "epoch") -> None:
        if not 0.0 <= start < 1.0:
            raise ValueError("start must be a fraction of training in [0, 1)")
        if start_epoch is not None and start_epoch < 1:
            raise ValueError("start_epoch must be >= 1 (epochs count from 1)")
        if every != "epoch" and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError("every must be 'epoch' or a number of steps >= 1")
        self.start, self.start_epoch, self.every = float(start), start_epoch, every
        self.avg: AveragedModel | None = None
        self.pending: dict[str, Any] | None = None
        self.backup: dict[str, torch.Tensor] = {}
        self.norm_cache: tuple[int, dict[str, torch.Tensor]] | None = None

    def check(self, recipe: Any, model: Any) -> None:
        check_one_average(recipe)
        if self.start_epoch is not None and self.start_epoch > recipe.train.epochs:
            raise HonedError(
                f"techniques: swa.start_epoch={self.start_epoch} but train.epochs={recipe.train.epochs}; "
                "start averaging within the run"
            )

    @property
    def averaged(self) -> int:
        return int(self.avg.n_averaged) if self.avg is not None else 0

    def first_step(self, state: Any) -> int:
        """The first optimizer step whose weights may join the average."""
        if self.start_epoch is not None:
            return (self.start_epoch - 1) * state.steps_per_epoch + 1
        return max(1, math.ceil(self.start * state.total_steps))

    def due(self, state: Any) -> bool:
        if state.step < self.first_step(state):
            return False
        if self.every == "epoch":
            return state.step % state.steps_per_epoch == 0 or state.step >= state.total_steps
        return state.step % self.every == 0

    def on_fit_start(self, state: Any) -> None:
        self.avg = AveragedModel(state.accelerator.unwrap_model(state.model))
        if self.pending is not None:
            self.avg.load_state_dict(self.pending)
            self.pending = None

    def on_after_optimizer_step(self, state: Any) -> None:
        if self.due(state):
            self.avg.update_parameters(state.accelerator.unwrap_model(state.model))

    def swap_in(self, state: Any) -> None:
        """Live weights aside; averaged weights and their batch-norm statistics in."""
        if not self.averaged:
            return
        model = state.accelerator.unwrap_model(state.model)
        self.backup = {n: t.detach().clone() for n, t in model.state_dict().items()}
        copy_into(model, dict(self.avg.module.named_parameters()))
        if self.norm_cache is not None and self.norm_cache[0] == self.averaged:
            copy_into(model, self.norm_cache[1])
            return
        recompute_batch_norm(model, state.train_loader, state.accelerator)
        norms = {id(m) for m in trainable_batch_norms(model)}
        owners = {n: m for n, m in model.named_modules() if id(m) in norms}
        stats = {f"{n}.{b}": t.detach().clone() for n, m in owners.items() for b, t in m.named_buffers(recurse=False)}
        self.norm_cache = (self.averaged, stats)

    def on_evaluate_start(self, state: Any) -> None:
        self.swap_in(state)

    def on_evaluate_end(self, state: Any) -> None:
        if self.backup:
            copy_into(state.accelerator.unwrap_model(state.model), self.backup)
            self.backup = {}

    def on_fit_end(self, state: Any) -> None:
        """No validation chose a best checkpoint: the average is the final model."""
        if state.best_epoch is None:
            self.swap_in(state)
            self.backup = {}

    def state_dict(self) -> dict[str, Any]:
        return self.avg.state_dict() if self.avg is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending = state or None


TECHNIQUES.register("swa")(SWA)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """An equal average of about 8 snapshots over the last quarter of the run (every epoch end would give
    only one or two on a short fine-tune)."""
    if flagged(s.recipe, "swaps_weights_for_eval"):
        return []
    every = max(1, round(0.25 * planned_steps(s) / 8))
    return [Change(f"swa last 25% every {every} steps", techniques=[{"name": "swa", "start": 0.75, "every": every}],
                   group="weight_average", cost=1.1 if s.kind == "image" else 1.0,
                   why="an equal average of the weights along the end of training lands in a flatter optimum")]
