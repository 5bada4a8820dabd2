"""`honed.fit`: recipe in, trained model, metrics and run folder out."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch.utils.data import DataLoader

from honed.data.batches import inputs_of
from honed.data.build import Tables, check_augment, load_tables, make_collate, make_dataset
from honed.data.labels import LabelMap
from honed.data.loaders import eval_loader, rows_per_epoch, train_loader
from honed.data.preprocess import finish_preprocess
from honed.data.targets import with_task
from honed.errors import HonedError
from honed.evaluate.run_report import REPORT_AFTER_FIT
from honed.losses import build_loss
from honed.metrics import task_metrics
from honed.models.base import Classifier
from honed.models.build import build_model, save_model
from honed.models.forward import predict_logits
from honed.models.python import live_recipe
from honed.recipe import Recipe, load_recipe
from honed.rundir import LOG, check_run_dir, close_log, open_run_dir
from honed.techniques import build_techniques, flagged
from honed.techniques.trackers import Trackers
from honed.train import checkpoint
from honed.train.events import Hooks
from honed.train.feature_cache import check_cacheable, swap_in
from honed.train.interrupt import stop_on_signals
from honed.train.loop import train
from honed.train.lower_cache import real_modules_back
from honed.train.optim import build_optimizer
from honed.train.precision import mixed_precision
from honed.train.schedules import build_schedule
from honed.train.speed import compile_model, set_threads, to_channels_last, wants_channels_last
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


def normalise_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Python keyword overrides: `optim__lr=3e-5` means `optim.lr=3e-5`."""
    return {k.replace("__", "."): v for k, v in overrides.items()}


def fit(recipe: str | Path | dict | Recipe, data: dict[str, Any] | None = None, *,
        overrides: dict[str, Any] | None = None, callbacks: list[Any] | None = None,
        model: torch.nn.Module | None = None, overwrite: bool = False, resume: bool = False, quiet: bool = False,
        **kwargs: Any) -> Run:
    """Fine-tune per `recipe`.

    `data` may hold in-memory splits ({'train': DataFrame | (X, y) | Dataset}); `overrides` maps dotted
    recipe keys to values ({"optim.lr": 3e-5}), and keyword overrides spell the dots as `__`
    (`optim__lr=3e-5`). `callbacks` are run-time technique objects (an Optuna trial's pruning, a
    tracker): fired after the recipe's techniques, like them, but never written to the saved recipe.
    `model`: a live nn.Module to fine-tune (model.source python; honed trains a copy, see honed/models/python.py)."""
    started = time.perf_counter()
    set_threads()  # every core this process may use, unless OMP_NUM_THREADS or torch.set_num_threads chose
    live = model if isinstance(model, torch.nn.Module) else None  # `model` is the built Classifier from here on
    if model is not None and live is None:
        kwargs["model"] = model  # a dict: the model section, like any keyword override
    recipe = load_recipe(recipe, {**(overrides or {}), **normalise_overrides(kwargs)})
    if live is not None:
        recipe = live_recipe(recipe, live)
    run_dir = recipe.run_dir()
    check_run_dir(run_dir, overwrite, resume)
    trackers = recipe.log.chosen()
    tracking = [Trackers(trackers, recipe.name)] if trackers else []
    hooks = Hooks(build_techniques(recipe.techniques), [*(callbacks or ()), *tracking])
    hooks.provide(load_predictor=teacher_loader)
    acc = Accelerator(
        cpu=recipe.train.cpu, mixed_precision=mixed_precision(recipe.train.precision),
        gradient_accumulation_steps=recipe.train.grad_accum_steps,
        log_with=trackers or None, project_dir=str(run_dir),
        # a parameter frozen now or later sends no gradient; DDP must not wait for it
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=hooks.changes_trainable)],
    )
    set_seed(recipe.seed)
    tables = load_tables(recipe, data)
    recipe = with_task(recipe, tables.task)  # task: auto decided on the training labels; the saved recipe names it
    model = build_model(recipe, tables.labels, live)
    tables.notes.extend(model.notes)  # what building chose (a python model's head), logged with the run
    tables.frames = finish_preprocess(tables.frames, recipe, model, tables.notes)  # length filters, train image stats
    counts = tables.labels.class_counts(tables.frames["train"])  # () for regression
    loss_fn = build_loss(recipe.loss, counts, recipe.task, len(tables.frames["train"]))
    if isinstance(loss_fn, torch.nn.Module):  # a user's loss may hold buffers (class weights)
        loss_fn = loss_fn.to(acc.device)
    rows = rows_per_epoch(len(tables.frames["train"]), recipe.train.batch_size, model)
    total, steps_per_epoch = plan_steps(recipe, rows, acc.num_processes)
    lr_at = build_schedule(recipe.schedule, total)
    hooks.check(recipe, model)  # impossible settings fail here, before the run folder exists
    _check_windows(recipe, model)
    check_augment(recipe, model.preprocess)
    if recipe.train.cache_frozen_features:
        check_cacheable(recipe, model, hooks, lambda: _first_rows(recipe, model, tables))
    open_run_dir(run_dir, overwrite, resume, acc.is_main_process)
    try:
        with stop_on_signals():  # Ctrl-C/SIGTERM: checkpoint at the end of the step, then Interrupted
            return _fit(recipe, run_dir, acc, tables, model, loss_fn, lr_at, hooks, resume, quiet, started, counts)
    finally:
        if trackers:  # a pruned, failed or interrupted fit must not leave an MLflow/W&B run open (twice is harmless)
            acc.end_training()
        close_log()


def _first_rows(recipe: Recipe, model: Classifier, tables: Tables, n: int = 2) -> dict[str, Any]:
    """The first `n` training rows as one batch (evaluation's collate): the input of a check's probe forward."""
    dataset = make_dataset(tables.frames["train"].head(n), tables.labels, recipe, model.preprocess)
    return next(iter(DataLoader(dataset, batch_size=n, collate_fn=make_collate(recipe, model.preprocess))))


def _check_windows(recipe: Recipe, model: Any) -> None:
    """data.truncation=sliding's impossible settings, before the run folder is made."""
    if recipe.data.truncation != "sliding":
        return
    if recipe.data.text_pair_column is not None:
        raise HonedError("data.truncation=sliding: text pairs (data.text_pair_column) are not supported; use right")
    tokenizer = model.preprocess
    if getattr(tokenizer, "tokenizers", None):
        raise HonedError("data.truncation=sliding: a fusion model's tokenizers cut windows differently; use right "
                         "or head_tail")
    if tokenizer.num_special_tokens_to_add(pair=False) >= recipe.data.max_length:
        raise HonedError(f"data.max_length={recipe.data.max_length} leaves no room for text between the special "
                         "tokens of data.truncation=sliding's windows")
    if recipe.train.cache_frozen_features:
        raise HonedError("train.cache_frozen_features: the feature cache keeps one row per text, and "
                         "data.truncation=sliding makes several; use one or the other")
    by_index = flagged(recipe, "needs_row_index")
    if by_index:
        raise HonedError(f"techniques: {', '.join(by_index)} reads training rows by index, and data.truncation="
                         "sliding makes several rows of one text; use data.truncation right or head_tail")


def teacher_loader(folder: str, field: str) -> Any:
    """A saved model, run or ensemble folder as a Predictor, for techniques that use one (distillation's
    teacher); errors name the recipe field."""
    from honed.inference import load_predictor

    return load_predictor(folder, field=field)


def plan_steps(recipe: Recipe, train_rows: int, processes: int) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch): batches split over processes, then accumulated."""
    spec = recipe.train
    batches = -(-train_rows // spec.batch_size)  # ceiling divisions
    batches = -(-batches // processes)
    per_epoch = -(-batches // spec.grad_accum_steps)
    return min(spec.max_steps or 10**12, spec.epochs * per_epoch), per_epoch


def _fit(recipe: Recipe, run_dir: Path, acc: Accelerator, tables: Tables, model: Classifier, loss_fn: Any, lr_at: Any,
         hooks: Hooks, resume: bool, quiet: bool, started: float, counts: tuple[int, ...]) -> Run:
    if acc.is_main_process and not resume:
        (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    sizes = {k: len(v) for k, v in tables.frames.items()}
    LOG.info("data %s, task %s, %d %s: %s", sizes, recipe.task, len(tables.labels), tables.labels.noun,
             ", ".join(tables.labels.names))
    for note in tables.notes:  # preprocessing ran before the log file existed
        LOG.info(note)
    spec = recipe.train
    collate, train_collate = make_collate(recipe, model.preprocess), make_collate(recipe, model.preprocess, train=True)
    datasets = {k: make_dataset(f, tables.labels, recipe, model.preprocess, train=k == "train")
                for k, f in tables.frames.items() if len(f)}
    rows = rows_per_epoch(len(datasets["train"]), spec.batch_size, model)  # sliding windows: more rows than texts
    full, show = model, not quiet and acc.is_main_process
    # the frozen backbone runs once; only its (shared) head trains, on the cached features (or, with a frozen
    # lower part only, the same model and rows, and training skips the cached lower part)
    if spec.cache_frozen_features:
        model, datasets, hooks = swap_in(model, datasets, collate, hooks, spec.eval_batch_size, acc.device, show)
        collate, train_collate = (collate, train_collate) if model is full else (None, None)
    grouped, workers = recipe.data.group_by_length, recipe.data.num_workers  # grouped: batches of like-length text
    loader, sampler = train_loader(datasets["train"], spec.batch_size, recipe.seed, train_collate, workers, keep=rows,
                                   group_by_length=grouped, window=spec.grad_accum_steps * acc.num_processes)
    evals = {k: eval_loader(datasets[k], spec.eval_batch_size, collate, workers, grouped)
             for k in ("val", "test") if k in datasets}
    _speed_up(recipe, model, datasets, collate, acc)
    model = acc.prepare(model)  # DDP wraps every parameter; freezing comes after
    loader = acc.prepare(loader)
    evals = {k: acc.prepare(v) for k, v in evals.items()}
    total, steps_per_epoch = plan_steps(recipe, rows, acc.num_processes)
    if len(datasets["train"]) != len(tables.frames["train"]):  # planned on the texts; it runs over the windows
        lr_at = build_schedule(recipe.schedule, total)
    state = TrainState(recipe, run_dir, model, None, acc, total, steps_per_epoch, labels=tables.labels.names,
                       train_loader=loader, class_counts=counts, frames=tables.frames, scale=tables.labels.scale(),
                       label_map=tables.labels)
    with real_modules_back(full):  # a cached frozen lower part's stand-ins leave even when training raises
        saved = _restore(state, hooks, run_dir, acc) if resume else None
        hooks.fire("on_fit_start", state)  # freezing techniques choose what trains before the optimizer exists
        order = [(g["group"], g["decay"]) for g in saved["optimizer"]["param_groups"]] if saved else None
        state.optimizer = acc.prepare(build_optimizer(acc.unwrap_model(model), recipe.optim, order))
        if saved:
            state.optimizer.load_state_dict(saved["optimizer"])
        train(state, hooks, loader, sampler, evals.get("val"), loss_fn, lr_at, show)
    outputs: dict[str, Any] = {}
    metrics = _final_metrics(state, evals, acc, started, show, outputs, tables)
    unwrapped = (full if spec.cache_frozen_features else acc.unwrap_model(model)).eval()  # returned ready for inference
    to_channels_last(unwrapped, False)  # safetensors saves contiguous tensors only
    if acc.is_main_process:
        save_model(unwrapped, tables.labels, run_dir / "model", recipe.to_yaml())
        (run_dir / "results.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
        REPORT_AFTER_FIT[recipe.task](recipe, run_dir, tables, outputs, metrics, _history(run_dir))
    LOG.info("final %s", json.dumps(metrics))
    acc.wait_for_everyone()
    return Run(recipe, run_dir, metrics, unwrapped, tables.labels, _history(run_dir))


def _speed_up(recipe: Recipe, model: torch.nn.Module, datasets: dict[str, Any], collate: Any, acc: Accelerator) -> None:
    """train.channels_last and train.compile, applied to the model before accelerate wraps it."""
    if wants_channels_last(recipe.train.channels_last, model, acc.device):
        to_channels_last(model, True)
        LOG.info("train.channels_last: CNN weights laid out channels-last (NHWC)")
    if not recipe.train.compile:
        return
    if collate is None:  # cached frozen features: the head alone trains, on precomputed features
        LOG.info("train.compile: skipped, train.cache_frozen_features trains only the head")
        return
    rows = datasets.get("val") or datasets.get("test") or datasets["train"]
    model.to(acc.device)

    @torch.no_grad()
    def probe() -> None:  # one eval forward: the graph evaluation reuses; RNG and batch-norm stats untouched
        batch = collate([rows[i] for i in range(min(2, len(rows)))])
        inputs = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in inputs_of(batch).items()}
        was = model.training
        with torch.random.fork_rng(devices=[]):
            model.eval()(**inputs)
        model.train(was)

    compile_model(model, probe, LOG)


def _restore(state: TrainState, hooks: Hooks, run_dir: Path, acc: Accelerator) -> dict[str, Any]:
    """Model, progress, technique and RNG state from the last checkpoint; the optimizer state is
    returned for loading once the optimizer is rebuilt with the same groups."""
    saved, source = checkpoint.load_with_fallback(run_dir / "checkpoints" / "last.pt")
    if source.name != "last.pt":
        LOG.warning("checkpoints/last.pt is damaged; resuming from the one before it (%s)", source.name)
    if tuple(saved["labels"]) != tuple(state.labels):
        raise HonedError(
            f"--resume: the checkpoint in '{run_dir}' was trained on {len(saved['labels'])} classes "
            f"({', '.join(saved['labels'])}) but the data now has {len(state.labels)}; "
            "resume with the same data or start a new run"
        )
    try:
        acc.unwrap_model(state.model).load_state_dict(saved["model"])
    except RuntimeError:
        raise HonedError(f"--resume: the checkpoint in '{run_dir}' holds another model than model.* of this recipe; "
                         "resume with the run's own recipe.yaml or start a new run") from None
    state.restore(saved["progress"])
    try:
        hooks.load_state_dict(saved["techniques"])
    except (ValueError, KeyError, TypeError):
        raise HonedError(f"--resume: the checkpoint in '{run_dir}' was saved with other techniques than this recipe's; "
                         "resume with the run's own recipe.yaml or start a new run") from None
    rng_path = run_dir / "checkpoints" / f"rng-{acc.process_index}.pt"
    for path in (rng_path, checkpoint.previous(rng_path)):  # the one written with the checkpoint resumed from
        rng = checkpoint.load(path) if path.is_file() else {"step": None}
        if rng["step"] == state.step:
            checkpoint.set_rng_state(rng)
            break
    LOG.info("resumed at epoch %d step %d", state.epoch, state.step)
    return saved


def _final_metrics(state: TrainState, evals: dict[str, Any], acc: Accelerator, started: float, show: bool,
                   outputs: dict[str, Any] | None = None, tables: Tables | None = None) -> dict[str, Any]:
    """Test and val metrics with the best weights (chosen on val), plus speed figures. With `tables`, its
    label map first learns what it needs from the val outputs (multi-label: the decision thresholds, which
    the metrics then use) and is replaced by the tuned one."""
    best = state.run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        acc.unwrap_model(state.model).load_state_dict(checkpoint.load(best))
    metrics: dict[str, Any] = {}
    outputs = {} if outputs is None else outputs
    for split, loader in evals.items():
        outputs[split] = predict_logits(state.model, loader, acc)  # reused by the report: no second pass
    if tables is not None:
        tables.labels = tables.labels.tuned_on_val(outputs)
        state.scale = tables.labels.scale()
    for split, (logits, labels) in outputs.items():
        scores = task_metrics(state.recipe.task, logits, labels, **state.scale)
        metrics.update({f"{split}_{k}": v for k, v in scores.items()})
    metrics.update({
        "best_epoch": state.best_epoch, "epochs_run": state.epoch, "steps": state.step,
        "train_samples_per_s": state.samples_seen / max(state.train_seconds, 1e-9),
        "train_seconds": state.train_seconds, "wall_seconds": time.perf_counter() - started,
        "stop_reason": state.stop_reason, "processes": acc.num_processes, "device": str(acc.device),
        "bad_steps": state.bad_steps, "fp16_skipped_steps": state.scaler_skips,  # non-finite steps dropped
    })
    return metrics


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


