"""`honed ensemble RECIPE`: train the members on shared splits, combine them, save one folder.

Every member sees the same train/val/test rows (loaded once from the base recipe), so their
outputs line up row by row. Methods are looked up in METHODS (honed/ensemble/methods.py); each
gets the members' validation outputs and returns a fitted combiner from the one combiner
registry (honed/inference/combiners.py) that the saved folder and EnsembleClassifier use too.
What differs by task (classification, regression, multilabel: what members output, how it is
scored, what the folder saves beside ensemble.json) is the task's EnsembleTask (honed/ensemble/tasks.py).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.build import load_tables
from honed.data.targets import with_task
from honed.ensemble import classical
from honed.ensemble.bagging import bag_rows, out_of_bag
from honed.ensemble.classical import check_members, fit_sklearn_member
from honed.ensemble.members import (
    Member,
    check_labels,
    expand_members,
    fit_all,
    member_outputs,
    member_recipe,
    member_task,
    read_labels,
)
from honed.ensemble.methods import METHODS, Combined, Context, Plan, pin_task, plan
from honed.ensemble.saved import ENSEMBLE_FILE, save_ensemble
from honed.ensemble.soup import check_soup_members
from honed.ensemble.spec import EnsembleSpec, MemberSpec, parse_spec
from honed.ensemble.stacking import check_stacking
from honed.ensemble.tasks import ENSEMBLE_TASKS, EnsembleTask
from honed.errors import HonedError
from honed.fit import normalise_overrides
from honed.inference import model_folder
from honed.recipe import Recipe, build_recipe, read_yaml
from honed.train.interrupt import stop_on_signals


@dataclass
class EnsembleResult:
    folder: Path
    method: str
    labels: tuple[str, ...]  # classes, labels or target names: the columns of every output
    members: list[Member]
    combined: Combined
    probs: dict[str, np.ndarray]  # split -> (members, rows, columns): probabilities, or regression's values
    frames: dict[str, pd.DataFrame]
    metrics: dict[str, Any]
    task: str = "classification"


@dataclass
class Prepared:
    """A build checked before anything trains: the resolved recipe, spec, members, shared frames and plan."""

    recipe: Recipe
    tree: dict[str, Any]
    spec: EnsembleSpec
    members: list[MemberSpec]
    frames: dict[str, pd.DataFrame]
    task: EnsembleTask
    plan: Plan
    folder: Path


def build_ensemble(recipe: str | Path | dict[str, Any] | Recipe, *, overwrite: bool = False, quiet: bool = False,
                   overrides: dict[str, Any] | None = None, **kwargs: Any) -> EnsembleResult:
    """Train and combine the members named by the recipe's `ensemble:` section; save the folder. `overrides`
    maps dotted recipe keys to values, as in `fit` (keyword overrides spell the dots as `__`)."""
    ready = _prepare(recipe, {**(overrides or {}), **normalise_overrides(kwargs)}, overwrite)
    spec, frames, folder, task = ready.spec, ready.frames, ready.folder, ready.task
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with stop_on_signals():  # a signal stops the member in training at its next step; finished members stay
        trained, spec_info = _train(ready, overwrite, quiet)
    labels = check_labels({m.name: read_labels(m.model_dir) for m in trained})
    splits = {k: f for k, f in frames.items() if k in ("val", "test") and len(f)}
    probs = {k: np.stack([member_outputs(m.model_dir, f, labels, task.name) for m in trained])
             for k, f in splits.items()}
    truth = {k: task.truth(f, labels) for k, f in splits.items()}
    ctx = Context(spec, ready.tree, frames, labels, ready.members, trained, folder, ready.recipe.seed, overwrite,
                  quiet, spec_info, task, ready.plan)
    combined = METHODS[spec.method].fit(ctx, probs["val"], truth["val"])
    ensemble = {k: combined.ensemble_probs(probs[k], f, labels) for k, f in splits.items()}
    decision = task.decision(labels, frames, ready.recipe, ensemble["val"], truth["val"])
    metrics = _metrics(task, trained, labels, ensemble, probs, truth, decision)
    metrics.update(spec_info)  # bagging: the out-of-bag estimate
    info = {"method": spec.method, "task": task.name, "kind": ready.recipe.data.kind, "metrics": metrics,
            **combined.info}
    save_ensemble(folder, labels, combined.listed(trained), combined.combine, combined.meta, info, decision)
    (folder / "recipe.yaml").write_text(ready.recipe.to_yaml(), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    if ready.recipe.report.enabled:  # the error-analysis report of the ensemble on test (val when there is none)
        split = "test" if "test" in ensemble else "val"
        task.report(folder, ready.recipe, labels, decision, ensemble[split], truth[split], splits[split], split)
    return EnsembleResult(folder, spec.method, labels, trained, combined, probs, frames, metrics, task.name)


def _prepare(recipe: str | Path | dict[str, Any] | Recipe, changes: dict[str, Any], overwrite: bool) -> Prepared:
    """Everything checked that can be before the folder is touched: the spec, the members (their task,
    recipes and labels), the data and what the method can do with the data's task."""
    base_recipe = build_recipe(_base_tree(recipe), changes,
                               source=str(recipe) if isinstance(recipe, (str, Path)) else "recipe")
    tree = base_recipe.model_dump(mode="json")
    spec = parse_spec(tree.pop("ensemble", None))
    folder = base_recipe.run_dir()
    stopped = (folder / "members").is_dir() and not (folder / ENSEMBLE_FILE).is_file()  # rerun after Ctrl-C: continue
    if folder.exists() and any(folder.iterdir()) and not overwrite and not stopped:
        raise HonedError(f"ensemble folder '{folder}' already exists; pass --overwrite to replace it")
    members = _member_specs(spec, base_recipe)
    check_members(members, base_recipe.data.kind, spec.method)  # an sklearn member on images, a bad pipeline: now
    if spec.method == "soup":
        check_soup_members(members, tree, folder)  # different backbones or heads: now, not after training
    if spec.method == "stacking":
        if spec.snapshots is not None:
            raise HonedError("ensemble.snapshots: stacking refits members on folds, which snapshots of one run "
                             "cannot be; use method voting or selection with snapshots")
        check_stacking(spec.stacking.folds, len(members))
    tables = load_tables(base_recipe)
    frames = {k: f.reset_index(drop=True) for k, f in tables.frames.items()}
    if frames["val"].empty:
        raise HonedError("data.split.val: an ensemble needs validation rows (for weights and best checkpoints); "
                         "set data.val or data.split.val > 0")
    task = ENSEMBLE_TASKS[tables.task]
    if task.pin_task and base_recipe.task == "auto":  # as fit resolves it: the task's defaults where it was silent
        base_recipe = with_task(base_recipe, task.name)
        tree = {k: v for k, v in base_recipe.model_dump(mode="json").items() if k != "ensemble"}
    chosen = plan(spec, task)  # a combiner, metric or meta-learner the task cannot use: now
    if spec.snapshots is not None and spec.method != "bagging" and not task.snapshots:
        raise HonedError(f"ensemble.snapshots: snapshot models of a {task.name} run are saved without their "
                         f"{task.name} label map, so they cannot be combined yet; list members or use bagging")
    if spec.method == "stacking":
        task.check_folds(frames["train"], spec.stacking.folds, base_recipe.seed)  # too many folds for a class: now
    _check_member_tasks(members, tree, folder, task)  # a bad member recipe fails here, before --overwrite removes
    _check_prefit(members, tables.labels.names, folder if overwrite else None)
    return Prepared(base_recipe, tree, spec, members, frames, task, chosen, folder)


def _check_member_tasks(members: list[MemberSpec], tree: dict[str, Any], folder: Path, task: EnsembleTask) -> None:
    """Every member must be of the ensemble's task (a prefit folder's by its label map, a recipe's by its
    `task`, auto given the ensemble's); building each member's recipe also finds a bad recipe or override."""
    for i, m in enumerate(members):
        if m.prefit is not None:
            found = member_task(model_folder(m.prefit, f"ensemble.members.{i}.prefit"))
        elif m.kind == "sklearn":
            found = classical.TASK
        else:
            found = member_recipe(tree, m, folder / "members" / m.name, pin_task(task)).task
        if found not in ("auto", task.name):
            raise HonedError(f"ensemble.members.{i}: member '{m.name}' is a {found} model but the ensemble's data "
                             f"is task {task.name}; members must all be of the ensemble's task")


def _check_prefit(members: list[MemberSpec], names: tuple[str, ...], replaced: Path | None) -> None:
    """A prefit member must know the data's labels and must not sit in the folder --overwrite
    replaces; found before anything trains."""
    for i, m in enumerate(members):
        if m.prefit is not None:
            field = f"ensemble.members.{i}.prefit"
            folder = model_folder(m.prefit, field)
            if replaced is not None and folder.resolve().is_relative_to(replaced.resolve()):
                raise HonedError(f"{field}: '{m.prefit}' lies inside the ensemble folder '{replaced}' "
                                 "that --overwrite would delete; write the ensemble elsewhere (output_dir=...)")
            labels = read_labels(folder)
            if set(labels) != set(names):
                raise HonedError(f"{field}: member '{m.name}' was trained on labels ({', '.join(labels)}) "
                                 f"but the data has ({', '.join(names)}); members must share one label set")


def _base_tree(recipe: str | Path | dict[str, Any] | Recipe) -> dict[str, Any]:
    if isinstance(recipe, Recipe):
        return recipe.model_dump(mode="json")
    return dict(recipe) if isinstance(recipe, dict) else read_yaml(recipe)


def _member_specs(spec: EnsembleSpec, base: Recipe) -> list[MemberSpec]:
    if spec.method == "bagging":
        return [MemberSpec(name=f"bag{i}", overrides={"seed": base.seed + i}) for i in range(spec.bagging.n_members)]
    if spec.snapshots is not None:
        return []
    members = expand_members(spec)
    if len(members) < 2:
        raise HonedError(f"ensemble.members: an ensemble needs at least 2 members, got {len(members)}; "
                         "list more or use from_tune/snapshots")
    return members


def _train(ready: Prepared, overwrite: bool, quiet: bool) -> tuple[list[Member], dict[str, Any]]:
    """Train what is not prefit (bagging on resampled rows, snapshots as one cyclic run)."""
    spec, tree, frames, members, folder, task = (ready.spec, ready.tree, ready.frames, ready.members, ready.folder,
                                                 ready.task)
    if spec.snapshots is not None and spec.method != "bagging":
        return _snapshots(ready, overwrite, quiet), {"snapshots": spec.snapshots.cycles}
    bags = None
    if spec.method == "bagging":
        bags = bag_rows(len(frames["train"]), len(members), spec.bagging.bootstrap, spec.bagging.max_samples,
                        int(tree.get("seed", 0)), task.strata(frames["train"]))
    jobs = []
    for i, m in enumerate(members):
        if m.prefit is None and m.kind == "honed":
            train = frames["train"].iloc[bags[i]] if bags is not None else frames["train"]
            recipe = member_recipe(tree, m, folder / "members" / m.name, pin_task(task))
            jobs.append((m.name, recipe, task.data(train, frames["val"])))
    classical_dirs = {}  # sklearn members (classification only): seconds each, so in this process, on the same rows
    for m in (m for m in members if m.kind == "sklearn"):
        run_dir, labels = folder / "members" / m.name, tuple(sorted(set(frames["train"]["label"].astype(str))))
        recipe = member_recipe(tree, m, run_dir)
        classical_dirs[m.name] = fit_sklearn_member(m, frames["train"], labels, recipe, run_dir, overwrite)
    dirs = {**fit_all(jobs, spec.workers, overwrite, quiet, spec.keep_checkpoints), **classical_dirs}
    trained = [Member(m.name, model_folder(m.prefit, f"ensemble.members.{i}.prefit") if m.prefit else dirs[m.name])
               for i, m in enumerate(members)]
    if bags is None:
        return trained, {}
    train, left = frames["train"], out_of_bag(bags, len(frames["train"]))
    order = read_labels(trained[0].model_dir)
    oob = [(rows, member_outputs(m.model_dir, train.iloc[rows].reset_index(drop=True), order, task.name))
           for m, rows in zip(trained, left, strict=True) if len(rows)]
    return trained, task.oob(oob, train, order)


def _snapshots(ready: Prepared, overwrite: bool, quiet: bool) -> list[Member]:
    """One run with cosine restarts that saves a model at each cycle end (technique `snapshots`)."""
    spec, tree, frames = ready.spec, ready.tree, ready.frames
    cycles = spec.snapshots.cycles  # type: ignore[union-attr]
    # first in the list: after-events fire in reverse order, so it saves each cycle's weights after every other
    # technique's after-step work (e.g. prune re-applying its masks)
    techniques = [{"name": "snapshots", "cycles": cycles}, *tree.get("techniques", [])]
    overrides = {"schedule.name": "cosine", "schedule.cycles": cycles, "techniques": techniques}
    member = MemberSpec(name="snapshots", overrides=overrides)
    run_dir = ready.folder / "members" / "snapshots"
    recipe = member_recipe(tree, member, run_dir, pin_task(ready.task))
    fit_all([(member.name, recipe, ready.task.data(frames["train"], frames["val"]))], 1, overwrite, quiet,
            spec.keep_checkpoints)
    saved = [Member(f"snapshot{i}", run_dir / "snapshots" / f"cycle{i}") for i in range(1, cycles + 1)]
    missing = [m.name for m in saved if not (m.model_dir / "honed.json").is_file()]
    if missing:  # e.g. early stopping ended the run, or fewer steps than cycles
        raise HonedError(f"ensemble.snapshots.cycles: the run saved {cycles - len(missing)} of {cycles} cycle models "
                         f"(missing {', '.join(missing)}); remove early_stopping, train longer or ask for fewer cycles")
    return saved


def _metrics(task: EnsembleTask, members: list[Member], labels: tuple[str, ...], ensemble: dict[str, np.ndarray],
             probs: dict[str, np.ndarray], truth: dict[str, np.ndarray], decision: Any) -> dict[str, Any]:
    """The task's scores (honed.metrics, as for one model: accuracy and macro-F1; RMSE, MAE, R², Pearson and
    Spearman per target and averaged; micro/macro-F1 and mAP) of each member, by its own decision map, and of
    the ensemble, by its own, on val and test."""
    out: dict[str, Any] = {"members": {}, "ensemble": {}}
    decisions = [task.member_decision(m.model_dir) for m in members]
    for split, p in probs.items():
        for i, m in enumerate(members):
            scores = task.scores(p[i], truth[split], labels, decisions[i])
            out["members"].setdefault(m.name, {}).update({f"{split}_{k}": v for k, v in scores.items()})
        scores = task.scores(ensemble[split], truth[split], labels, decision)
        out["ensemble"].update({f"{split}_{k}": v for k, v in scores.items()})
    return out


__all__ = ["ENSEMBLE_FILE", "METHODS", "EnsembleResult", "build_ensemble"]


def print_ensemble(result: EnsembleResult) -> None:
    """The members' and the ensemble's val/test scores as a table, then where things are."""
    from rich.console import Console
    from rich.table import Table

    summary = ENSEMBLE_TASKS[result.task].summary
    weights = dict(zip([m.name for m in result.members], result.combined.weights, strict=True))
    table = Table(title=f"honed ensemble: {result.method} ({result.combined.combine})")
    columns = [c for c in (f"{split}_{name}" for split in ("val", "test") for name in summary)
               if c in result.metrics["ensemble"]]
    for name in ("model", "weight", *columns):
        table.add_column(name, justify="right" if name != "model" else "left")
    for name, scores in result.metrics["members"].items():
        weight = "-" if result.combined.combiner.needs_meta else f"{weights[name]:.2f}"
        table.add_row(name, weight, *(f"{scores[c]:.4f}" for c in columns))
    table.add_row("ensemble", "", *(f"{result.metrics['ensemble'][c]:.4f}" for c in columns))
    console = Console()
    console.print(table)
    if "oob_rows" in result.metrics:
        shown = ", ".join(f"{name} {result.metrics[f'oob_{name}']:.4f}" for name in summary
                          if f"oob_{name}" in result.metrics)
        console.print(f"out-of-bag {shown} on {result.metrics['oob_rows']} training rows")
    console.print(f"ensemble folder: {result.folder} (`honed predict {result.folder} DATA`)")
