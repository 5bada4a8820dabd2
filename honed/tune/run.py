"""`honed.tune(recipe)`: run (or resume, or join) the study the recipe's `search:` section describes.

The same call on several machines with one `storage` URL joins one study; `workers=N` starts N
trial processes here. Budgets count the whole study: `n_trials` finished trials (complete, pruned
or failed) across all workers; `timeout` bounds this invocation. Re-running the same command
resumes: finished trials stay, the budget counts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from honed.errors import HonedError
from honed.fit import normalise_overrides
from honed.metrics import TASKS
from honed.progress import progress_bar
from honed.recipe import Recipe, load_recipe
from honed.train.interrupt import Interrupted, raise_if_pending, stop_on_signals
from honed.train.speed import machine_cores
from honed.tune.objective import Objective
from honed.tune.outputs import write_outputs
from honed.tune.space import check_space, grid_size
from honed.tune.spec import SearchSpec, check_task_metric, parse_search
from honed.tune.study import (
    StopAtBudget,
    best_value,
    counts,
    default_storage,
    finished,
    masked,
    open_storage,
    open_study,
    requeue_interrupted,
    used,
)


@dataclass
class TuneResult:
    """The study's outcome; the files are in `run_dir` (see honed/tune/outputs.py)."""

    run_dir: Path
    study_name: str
    storage: str
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_value(self) -> float | None:
        return self.summary.get("best_value")

    @property
    def best_params(self) -> dict[str, Any]:
        return self.summary.get("best_params", {})


@dataclass
class Plan:
    """Everything a worker process needs (plain data: it crosses a process boundary)."""

    tree: dict[str, Any]
    search: dict[str, Any]
    run_dir: Path
    storage: str
    study_name: str
    seed: int
    epochs: int
    budget: int | None
    timeout: float | None


def tune(
    recipe: str | Path | dict | Recipe,
    *,
    storage: str | None = None,
    workers: int = 1,
    quiet: bool = True,
    n_trials: int | None = None,
    timeout: float | None = None,
    study_name: str | None = None,
    overrides: dict[str, Any] | None = None,
    **kwargs: Any,
) -> TuneResult:
    """Validate everything, open/join the study, run trials (here or in `workers` processes), write outputs.
    `overrides` maps dotted recipe keys to values, as in `fit` (keyword overrides spell the dots as `__`)."""
    if workers < 1:
        raise HonedError(f"--workers: expected 1 or more, got {workers}")
    plan, spec = make_plan(recipe, storage, n_trials, timeout, study_name, {**(overrides or {}), **kwargs})
    owner = plan.run_dir / "study_name.txt"  # trials/trial-N belong to one study: a second one needs its own folder
    holder = owner.read_text(encoding="utf-8").strip() if owner.is_file() else plan.study_name
    if holder != plan.study_name:
        raise HonedError(
            f"run folder '{plan.run_dir}' holds the trials of study '{holder}'; "
            f"give study '{plan.study_name}' its own folder (--output DIR or output_dir)"
        )
    study = open_study(open_storage(plan.storage, spec), plan.study_name, spec, plan.seed, plan.epochs)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    owner.write_text(plan.study_name + "\n", encoding="utf-8")
    optuna.storages.fail_stale_trials(study)
    before = finished(study)
    if plan.budget is not None and used(study) >= plan.budget:
        print(
            f"honed tune: study '{plan.study_name}' already has {before} finished trials "
            f"(budget {plan.budget}); writing outputs only"
        )
    else:
        with progress_bar(not quiet) as bars:
            bar = bars.add_task(
                f"trials ({spec.sampler}, {spec.pruner} pruning)", total=plan.budget, completed=before, info=""
            )
            show = _Progress(bars, bar)
            if workers == 1:
                run_worker(plan, 0, show)
            else:
                _run_processes(plan, workers, study, show)
            show(study)
    summary = write_outputs(study, spec, plan.tree, plan.run_dir, plan.storage)
    return TuneResult(plan.run_dir, plan.study_name, masked(plan.storage), summary)


def make_plan(
    recipe: Any,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
    study_name: str | None,
    overrides: dict[str, Any],
) -> tuple[Plan, SearchSpec]:
    """Load the recipe, validate `search:` and the space against the recipe, fix budgets and paths."""
    recipe = resolved_task(load_recipe(recipe, normalise_overrides(overrides)))
    spec = parse_search(recipe.search, source=recipe.name, default_metric=recipe.train.metric)
    check_task_metric(spec, recipe.task, source=recipe.name)
    tree = recipe.model_dump(mode="json")
    tree["search"] = None
    check_space(tree, spec)
    if spec.cv_folds is None and recipe.data.val is None and recipe.data.split.val == 0:
        raise HonedError(
            f"{recipe.name}: trials are scored on the val split, but data.split.val is 0 and data.val is "
            "not set; give a val fraction or file, or set search.cv_folds"
        )
    budget = n_trials or spec.n_trials
    if spec.sampler == "grid":
        budget = min(budget or grid_size(spec), grid_size(spec))
    if budget is None and (timeout or spec.timeout) is None:
        raise HonedError(
            f"{recipe.name}: search needs a budget; set search.n_trials and/or search.timeout (or --trials/--timeout)"
        )
    run_dir = Path(recipe.output_dir) if recipe.output_dir else Path("runs") / f"{recipe.name}-tune"
    if run_dir.exists() and not run_dir.is_dir():
        raise HonedError(f"run folder '{run_dir}' is a file; set output_dir or --output to a folder")
    if storage is None:
        run_dir.mkdir(parents=True, exist_ok=True)
    plan = Plan(
        tree,
        spec.model_dump(mode="json"),
        run_dir,
        storage or default_storage(run_dir),
        study_name or spec.study_name or recipe.name,
        spec.seed if spec.seed is not None else recipe.seed,
        recipe.train.epochs,
        budget,
        timeout or spec.timeout,
    )
    return plan, spec


def resolved_task(recipe: Recipe) -> Recipe:
    """The recipe with `task: auto` decided on its training labels (as `fit` decides it) and the task's defaults
    filled in, so every trial, the metric check and best_recipe.yaml name one task (the tree every trial starts
    from spells out every field, so a trial could not fill in its task's defaults itself)."""
    if recipe.task in TASKS:
        return recipe
    if recipe.data.train is None:
        raise HonedError("data.train: no training data given; set data.train to a file, folder or asset")
    from honed.data.sources import load_source
    from honed.data.targets import with_task

    frame = load_source(recipe.data.train, recipe.data, "data.train", task="auto")
    return with_task(recipe, frame.attrs.get("task", "classification"))


def run_worker(plan: Plan, index: int, callback: Any = None) -> None:
    """One worker: optimise until the study's budget or this invocation's timeout is spent."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = SearchSpec.model_validate(plan.search)
    seed = (
        plan.seed if spec.sampler == "grid" else plan.seed + index
    )  # one grid order for all workers: trial N takes point N
    study = open_study(open_storage(plan.storage, spec), plan.study_name, spec, seed, plan.epochs)
    callbacks: list[Any] = [_report_failure]
    if plan.budget is not None:
        callbacks.append(StopAtBudget(plan.budget))
    if callback is not None:
        callbacks.append(lambda s, t: callback(s))
    optuna.storages.fail_stale_trials(study)  # a dead worker's trial: failed and re-queued before the budget is counted
    if plan.budget is not None and used(study) >= plan.budget:
        return
    callbacks.append(lambda s, t: raise_if_pending(run_dir=plan.run_dir))  # a signal during a trial's last evaluation
    with stop_on_signals():
        try:
            study.optimize(
                Objective(plan.tree, spec, plan.run_dir),
                n_trials=plan.budget,
                timeout=plan.timeout,
                catch=(Exception,),
                callbacks=callbacks,
                gc_after_trial=True,
            )
        except Interrupted as exc:  # the unfinished trial goes back to the queue: re-running the command redoes it
            requeue_interrupted(study)
            raise Interrupted(exc.signum, run_dir=plan.run_dir) from None


def _run_processes(plan: Plan, workers: int, study: optuna.Study, show: Any) -> None:
    """N trial processes on this machine sharing the study through its storage; progress by polling.
    Each is `python -m honed.tune.run PLAN.json INDEX THREADS` (no re-import of the caller's script)."""
    # the machine's cores split between the workers (one each when workers >= cores), unless the user chose
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(chosen) if chosen.isdigit() and int(chosen) > 0 else max(1, machine_cores() // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # the worker's fit keeps it (honed/train/speed.py)
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=plan.run_dir, prefix=".plan-", delete=False) as handle:
        json.dump({**asdict(plan), "run_dir": str(plan.run_dir)}, handle)
    processes = [
        subprocess.Popen([sys.executable, "-m", "honed.tune.run", handle.name, str(i), str(threads)], env=env)
        for i in range(workers)
    ]
    try:
        while any(p.poll() is None for p in processes):
            show(study)
            time.sleep(2.0)
    finally:
        for process in processes:
            process.wait()
        Path(handle.name).unlink(missing_ok=True)
    bad = [p.returncode for p in processes if p.returncode]
    if bad:
        print(
            f"honed tune: {len(bad)} worker process(es) exited with codes {bad}; the study keeps their finished trials"
        )


def _worker_main(argv: list[str]) -> None:
    """Entry of a worker process started by `_run_processes`."""
    import torch

    raw = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    torch.set_num_threads(int(argv[2]))
    run_worker(Plan(**{**raw, "run_dir": Path(raw["run_dir"])}), int(argv[1]))


def _report_failure(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    if trial.state == optuna.trial.TrialState.FAIL:
        print(f"honed tune: trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'no value')}", flush=True)


class _Progress:
    """Updates the bar with trials done/pruned/failed and the best value so far."""

    def __init__(self, bars: Any, bar: Any) -> None:
        self.bars, self.bar = bars, bar

    def __call__(self, study: optuna.Study) -> None:
        c = counts(study)
        best = best_value(study)
        info = f"complete {c['complete']}  pruned {c['pruned']}  failed {c['fail']}  running {c['running']}"
        info += f"  best {best:.4f}" if best is not None else ""
        self.bars.update(self.bar, completed=c["complete"] + c["pruned"] + c["fail"], info=info)


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
