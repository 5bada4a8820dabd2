"""The training loop: read it top to bottom. Techniques act through events, never through flags."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader

from honed.errors import HonedError
from honed.metrics import improved, task_metrics
from honed.models.forward import predict_logits
from honed.progress import progress_bar
from honed.train import checkpoint, interrupt
from honed.train.events import Hooks, StopTraining
from honed.train.numerics import Guard, LossMeter, total_norm
from honed.train.optim import set_lr
from honed.train.state import TrainState

REFRESH_EVERY = 10  # batches between progress-bar loss/speed refreshes


def train(
    state: TrainState,
    hooks: Hooks,
    train_loader: DataLoader,
    sampler: Any,
    val_loader: DataLoader | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    lr_at: Callable[[int], float],
    show: bool,
) -> None:
    """Train until the epochs or max_steps run out or a technique raises StopTraining (a signal raises
    Interrupted after a checkpoint; too many non-finite steps raise NumericalFault)."""
    acc, model, spec = state.accelerator, state.model, state.recipe.train
    needs_index = hooks.any("needs_row_index")  # asked once, not per batch
    guard = Guard(state)
    try:
        with progress_bar(show) as bars:
            while state.epoch < spec.epochs and state.step < state.total_steps:
                loader, bar = _start_epoch(state, train_loader, sampler, bars)
                model.train()
                hooks.fire("on_epoch_start", state)  # after train(): a technique may keep parts in eval mode
                started, meter = time.perf_counter(), LossMeter(acc.device, guard)
                for batch in loader:
                    state.batch_index = batch.pop("index", None)  # each row's position in the training frame
                    if state.batch_index is None and needs_index:
                        raise HonedError("techniques: a technique needs each batch row's index, which this "
                                         "dataset does not yield; use honed's datasets (they carry `index`)")
                    state.batch = batch
                    hooks.fire("on_batch_start", state)
                    with acc.accumulate(model):
                        labels = batch.pop("labels")
                        state.logits = model(**batch)
                        hooks.fire("on_after_forward", state)
                        state.loss = loss_fn(state.logits, labels)
                        hooks.fire("on_after_loss", state)
                        scale = _window_scale(spec.grad_accum_steps, len(train_loader), state.batch_in_epoch)
                        acc.backward(state.loss * scale)
                        _optimizer_step(state, hooks, lr_at, guard)
                    state.batch_in_epoch += 1
                    state.samples_seen += len(labels) * acc.num_processes
                    meter.add(state.loss)
                    if acc.sync_gradients:
                        state.step += 1
                        hooks.fire("on_after_optimizer_step", state)
                        _maybe_checkpoint(state, hooks)
                        _stop_if_signalled(state, hooks)
                    bars.update(bar, advance=1)
                    if state.batch_in_epoch % REFRESH_EVERY == 0:  # reading the loss syncs a GPU: not every step
                        elapsed = state.train_seconds + time.perf_counter() - started
                        speed = state.samples_seen / max(elapsed, 1e-9)
                        bars.update(bar, info=f"loss {meter.refresh():.4f}  {speed:.1f} samples/s")
                    if state.step >= state.total_steps:
                        break
                state.train_seconds += time.perf_counter() - started
                _end_epoch(state, hooks, val_loader, meter.mean(), bars)
    except StopTraining as stop:
        state.stop_reason = str(stop)
        acc.print(state.stop_reason)
    hooks.fire("on_fit_end", state)


def _start_epoch(state: TrainState, train_loader: DataLoader, sampler: Any, bars: Any) -> tuple[Any, Any]:
    """Seed this epoch's shuffling, skip the batches a resumed run already trained on and add the epoch's
    progress bar; returns (the loader to iterate, the bar's task)."""
    acc, epochs, done = state.accelerator, state.recipe.train.epochs, state.batch_in_epoch
    train_loader.set_epoch(state.epoch)  # accelerate re-seeds each pass from its own counter: set it too
    sampler.set_epoch(state.epoch)
    loader = acc.skip_first_batches(train_loader, done) if done else train_loader
    bar = bars.add_task(f"epoch {state.epoch + 1}/{epochs}", total=len(train_loader), completed=done, info="")
    return loader, bar


def _optimizer_step(state: TrainState, hooks: Hooks, lr_at: Callable[[int], float], guard: Guard) -> None:
    """Inside `accumulate`: at a window's last micro-batch set the LR, clip, and drop a step whose gradients
    are not finite (its gradients are cleared, so no weight or optimizer moment moves); on the other
    micro-batches accelerate's optimizer wrapper does nothing."""
    acc = state.accelerator
    if acc.sync_gradients:
        state.lr = set_lr(state.optimizer, lr_at(state.step))
        norm = total_norm(acc, state.model.parameters(), state.recipe.train.max_grad_norm)
        hooks.fire("on_before_optimizer_step", state)
        if not guard.step_is_finite(norm):
            state.optimizer.zero_grad(set_to_none=True)
            return
    state.optimizer.step()
    if acc.sync_gradients:
        guard.after_step()
    state.optimizer.zero_grad(set_to_none=True)


def _stop_if_signalled(state: TrainState, hooks: Hooks) -> None:
    """The safe point after each optimizer step: on SIGINT/SIGTERM write a checkpoint and stop."""
    signum = interrupt.agreed(state.accelerator, state.step)
    if signum:
        save_checkpoint(state, hooks)
        raise interrupt.Interrupted(signum, state.step, state.run_dir)


def _window_scale(accum: int, batches: int, index: int) -> float:
    """accelerate divides each loss by `accum`; an epoch's last window may hold fewer batches, so
    scale it back up: batch 32 and 8 x 4 accumulation then give the same update (tested)."""
    window = min(accum, batches - (index // accum) * accum)
    return accum / window


def _end_epoch(state: TrainState, hooks: Hooks, val_loader: DataLoader | None, train_loss: float, bars: Any) -> None:
    """Evaluate, keep the best weights, log, checkpoint; a technique may stop training here."""
    spec, acc = state.recipe.train, state.accelerator
    record: dict[str, Any] = {"epoch": state.epoch + 1, "step": state.step, "lr": state.lr, "train_loss": train_loss,
                              "samples_per_s": state.samples_seen / max(state.train_seconds, 1e-9)}
    state.epoch += 1
    state.batch_in_epoch = 0
    stop: StopTraining | None = None
    if val_loader is not None:
        hooks.fire("on_evaluate_start", state)  # e.g. swap in averaged weights
        state.val_metrics = evaluate(state.model, val_loader, acc, bars, "val", state.recipe.task, state.scale)
        record.update({f"val_{k}": v for k, v in state.val_metrics.items()})
        if improved(state.val_metrics[spec.metric], state.best_value, spec.mode):
            state.best_value, state.best_epoch = state.val_metrics[spec.metric], state.epoch
            save_best(state)
        try:
            hooks.fire("on_evaluate_end", state)
        except StopTraining as exc:
            stop = exc
    state.epoch_record = record  # what metrics.jsonl gets; trackers log it on_epoch_end
    hooks.fire("on_epoch_end", state)
    if acc.is_main_process:
        with (state.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    save_checkpoint(state, hooks)
    if stop is not None:
        raise stop


def evaluate(model: torch.nn.Module, loader: DataLoader, acc: Any, bars: Any = None, name: str = "eval",
             task: str = "classification", scale: dict[str, Any] | None = None) -> dict[str, float]:
    """The task's metrics (honed.metrics.TASKS) of the model on `loader`; `scale` un-standardises regression targets."""
    return task_metrics(task, *predict_logits(model, loader, acc, bars, name), **(scale or {}))


def _maybe_checkpoint(state: TrainState, hooks: Hooks) -> None:
    every = state.recipe.train.checkpoint_every_steps
    if every and state.step % every == 0:
        save_checkpoint(state, hooks)


def save_checkpoint(state: TrainState, hooks: Hooks) -> None:
    """Model, optimizer, progress, technique state and each process's RNG state."""
    acc, folder = state.accelerator, state.run_dir / "checkpoints"
    acc.wait_for_everyone()
    # the replaced files stay as *.prev.pt: a damaged last.pt still leaves a checkpoint to resume from
    rng_file = folder / f"rng-{acc.process_index}.pt"
    checkpoint.atomic_save({"step": state.step, **checkpoint.rng_state()}, rng_file, keep_previous=True)
    if acc.is_main_process:
        checkpoint.atomic_save({
            "model": acc.unwrap_model(state.model).state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "progress": state.progress(),
            "techniques": hooks.state_dict(),
            "labels": list(state.labels),
        }, folder / "last.pt", keep_previous=True)
    acc.wait_for_everyone()


def save_best(state: TrainState) -> None:
    if state.accelerator.is_main_process:
        checkpoint.atomic_save(state.accelerator.unwrap_model(state.model).state_dict(),
                               state.run_dir / "checkpoints" / "best.pt")
    state.accelerator.wait_for_everyone()
