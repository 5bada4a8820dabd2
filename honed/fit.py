"""`honed.fit`: recipe in, trained model, metrics and run folder out."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from honed.data.build import Tables, load_tables, make_collate, make_dataset
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader, train_loader
from honed.errors import HonedError
from honed.losses import LOSSES
from honed.models.base import Classifier
from honed.models.build import build_model, save_model
from honed.recipe import Recipe, load_recipe
from honed.rundir import LOG, check_run_dir, close_log, open_run_dir
from honed.techniques import build_techniques
from honed.train import checkpoint
from honed.train.events import Hooks
from honed.train.loop import evaluate, train
from honed.train.optim import build_optimizer
from honed.train.schedules import SCHEDULES, warmup_steps
from honed.train.state import TrainState


@dataclass
class Run:
    """What a fit returns: the recipe, the run folder, final metrics and the trained model."""

    recipe: Recipe
    run_dir: Path
    metrics: dict[str, Any]
    model: Classifier
    labels: LabelMap
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"


def _precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def normalise_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Python keyword overrides: `optim__lr=3e-5` means `optim.lr=3e-5`."""
    return {k.replace("__", "."): v for k, v in overrides.items()}


def fit(recipe: str | Path | dict | Recipe, data: dict[str, Any] | None = None, *, overwrite: bool = False,
        resume: bool = False, quiet: bool = False, **overrides: Any) -> Run:
    """Fine-tune per `recipe`; `data` may hold in-memory splits ({'train': DataFrame | (X, y) | Dataset})."""
    started = time.perf_counter()
    recipe = load_recipe(recipe, normalise_overrides(overrides))
    run_dir = recipe.run_dir()
    check_run_dir(run_dir, overwrite, resume)
    acc = Accelerator(
        cpu=recipe.train.cpu, mixed_precision=_precision(recipe.train.precision),
        gradient_accumulation_steps=recipe.train.grad_accum_steps,
        log_with="tensorboard" if recipe.log.tensorboard else None, project_dir=str(run_dir),
    )
    set_seed(recipe.seed)
    tables = load_tables(recipe, data)
    model = build_model(recipe, tables.labels)
    loss_fn = LOSSES.build(recipe.loss.name, "loss.name", **{k: v for k, v in recipe.loss.model_dump().items() if k != "name"})
    hooks = Hooks(build_techniques(recipe.techniques))
    SCHEDULES.get(recipe.schedule.name, "schedule.name")
    open_run_dir(run_dir, overwrite, resume, acc.is_main_process)
    try:
        return _fit(recipe, run_dir, acc, tables, model, loss_fn, hooks, resume, quiet, started)
    finally:
        close_log()


def _fit(recipe: Recipe, run_dir: Path, acc: Accelerator, tables: Tables, model: Classifier, loss_fn: Any, hooks: Hooks,
         resume: bool, quiet: bool, started: float) -> Run:
    if acc.is_main_process and not resume:
        (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    sizes = {k: len(v) for k, v in tables.frames.items()}
    LOG.info("data %s, %d classes: %s", sizes, len(tables.labels), ", ".join(tables.labels.names))
    spec = recipe.train
    collate = make_collate(recipe, model.preprocess)
    datasets = {k: make_dataset(f, tables.labels, recipe, model.preprocess) for k, f in tables.frames.items() if len(f)}
    loader, sampler = train_loader(datasets["train"], spec.batch_size, recipe.seed, collate, recipe.data.num_workers)
    evals = {k: eval_loader(datasets[k], spec.eval_batch_size, collate, recipe.data.num_workers) for k in ("val", "test") if k in datasets}
    optimizer = build_optimizer(model, recipe.optim)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    evals = {k: acc.prepare(v) for k, v in evals.items()}
    steps_per_epoch = -(-len(loader) // spec.grad_accum_steps)
    total = min(spec.max_steps or 10**12, spec.epochs * steps_per_epoch)
    schedule = recipe.schedule
    lr_at = SCHEDULES.build(schedule.name, "schedule.name", total=total, warmup=warmup_steps(total, schedule.warmup_ratio, schedule.warmup_steps))
    state = TrainState(recipe, run_dir, model, optimizer, acc, total, steps_per_epoch, labels=tables.labels.names)
    if resume:
        _restore(state, hooks, run_dir, acc)
    if recipe.log.tensorboard:
        acc.init_trackers("tensorboard")
    show = not quiet and acc.is_main_process
    train(state, hooks, loader, sampler, evals.get("val"), loss_fn, lr_at, show)
    metrics = _final_metrics(state, evals, acc, started, show)
    unwrapped = acc.unwrap_model(model).eval()  # returned ready for inference
    if acc.is_main_process:
        save_model(unwrapped, tables.labels, run_dir / "model", recipe.to_yaml())
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    LOG.info("final %s", json.dumps(metrics))
    acc.wait_for_everyone()
    if recipe.log.tensorboard:
        acc.end_training()
    return Run(recipe, run_dir, metrics, unwrapped, tables.labels, _history(run_dir))


def _restore(state: TrainState, hooks: Hooks, run_dir: Path, acc: Accelerator) -> None:
    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    if tuple(saved["labels"]) != tuple(state.labels):
        raise HonedError(
            f"--resume: the checkpoint in '{run_dir}' was trained on {len(saved['labels'])} classes "
            f"({', '.join(saved['labels'])}) but the data now has {len(state.labels)}; resume with the same data or start a new run"
        )
    acc.unwrap_model(state.model).load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.restore(saved["progress"])
    hooks.load_state_dict(saved["techniques"])
    rng_path = run_dir / "checkpoints" / f"rng-{acc.process_index}.pt"
    if rng_path.is_file():
        rng = checkpoint.load(rng_path)
        if rng["step"] == state.step:
            checkpoint.set_rng_state(rng)
    LOG.info("resumed at epoch %d step %d", state.epoch, state.step)


def _final_metrics(state: TrainState, evals: dict[str, Any], acc: Accelerator, started: float, show: bool) -> dict[str, Any]:
    """Test and val metrics with the best weights (chosen on val), plus speed figures."""
    best = state.run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        acc.unwrap_model(state.model).load_state_dict(checkpoint.load(best))
    metrics: dict[str, Any] = {}
    for split, loader in evals.items():
        metrics.update({f"{split}_{k}": v for k, v in evaluate(state.model, loader, acc).items()})
    metrics.update({
        "best_epoch": state.best_epoch, "epochs_run": state.epoch, "steps": state.step,
        "train_samples_per_s": state.samples_seen / max(state.train_seconds, 1e-9),
        "train_seconds": state.train_seconds, "wall_seconds": time.perf_counter() - started,
        "stop_reason": state.stop_reason, "processes": acc.num_processes, "device": str(acc.device),
    })
    return metrics


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


