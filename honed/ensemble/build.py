"""`honed ensemble RECIPE`: train the members on shared splits, combine them, save one folder.

Every member sees the same train/val/test rows (loaded once from the base recipe), so their
probabilities line up row by row. Methods are looked up in METHODS (name -> how to fit); each
gets the members' validation probabilities and returns a fitted combiner from the one combiner
registry (honed/inference/combiners.py) that the saved folder and EnsembleClassifier use too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.build import load_tables
from honed.ensemble.bagging import bag_rows, oob_estimate, out_of_bag
from honed.ensemble.classical import check_members, fit_sklearn_member, sklearn_out_of_fold
from honed.ensemble.members import (
    Member,
    as_data,
    check_labels,
    expand_members,
    fit_all,
    member_probs,
    member_recipe,
    read_labels,
)
from honed.ensemble.saved import ENSEMBLE_FILE, save_ensemble
from honed.ensemble.soup import check_soup_members, make_soup
from honed.ensemble.spec import EnsembleSpec, MemberSpec, parse_spec
from honed.ensemble.stacking import check_stacking, fold_indices, meta_learner
from honed.errors import HonedError
from honed.fit import normalise_overrides
from honed.inference import model_folder
from honed.inference.combiners import COMBINERS, Combiner, Selection, Stacking
from honed.inference.selection import greedy_selection
from honed.metrics import probability_metrics
from honed.recipe import Recipe, build_recipe, read_yaml
from honed.train.interrupt import stop_on_signals


@dataclass
class Combined:
    """A fitted combiner (its rule, weights and meta-learner) and what the method reports."""

    combiner: Combiner
    info: dict[str, Any] = field(default_factory=dict)
    saved: list[Member] | None = None  # what the folder lists instead of the trained members (a soup's one model)

    @property
    def combine(self) -> str:
        return self.combiner.rule

    @property
    def weights(self) -> np.ndarray:
        return np.asarray(self.combiner.weights)

    @property
    def meta(self) -> Any:
        return self.combiner.meta

    def probs(self, member_probs: np.ndarray) -> np.ndarray:
        return self.combiner(member_probs)

    def ensemble_probs(self, probs: np.ndarray, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
        """What the saved folder predicts on a split: the combined member probabilities, or (a soup) the
        saved models' own."""
        if self.saved is None:
            return self.probs(probs)
        return COMBINERS.build("soft")(np.stack([member_probs(m.model_dir, frame, labels)[0] for m in self.saved]))

    def listed(self, trained: list[Member]) -> list[tuple[str, Path, float]]:
        """(name, folder, weight) of each model the ensemble folder lists."""
        if self.saved is not None:
            return [(m.name, m.model_dir, 1.0 / len(self.saved)) for m in self.saved]
        return [(m.name, m.model_dir, float(w)) for m, w in zip(trained, self.weights, strict=True)]


@dataclass
class EnsembleResult:
    folder: Path
    method: str
    labels: tuple[str, ...]
    members: list[Member]
    combined: Combined
    probs: dict[str, np.ndarray]  # split -> (members, rows, classes)
    frames: dict[str, pd.DataFrame]
    metrics: dict[str, Any]


@dataclass
class Context:
    """What a combiner may use: the spec, base tree, shared frames and member settings."""

    spec: EnsembleSpec
    base: dict[str, Any]
    frames: dict[str, pd.DataFrame]
    labels: tuple[str, ...]
    members: list[MemberSpec]
    trained: list[Member]
    folder: Path
    seed: int
    overwrite: bool
    quiet: bool
    info: dict[str, Any] = field(default_factory=dict)  # what training reported (bagging's out-of-bag estimate)


def _voting(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    spec = ctx.spec
    weights = (greedy_selection(val, y, spec.selection.rounds, spec.selection.metric)
               if spec.weights == "select" else spec.weights)
    return Combined(COMBINERS.build(spec.voting, weights=weights).fit(val, y))


def _selection(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    return Combined(Selection(rounds=ctx.spec.selection.rounds, metric=ctx.spec.selection.metric).fit(val, y))


def _stacking(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    spec, train = ctx.spec.stacking, ctx.frames["train"]
    oof = np.stack([_out_of_fold(ctx, m) for m in ctx.members])
    y_train = np.asarray([ctx.labels.index(v) for v in train["label"]])
    combiner = Stacking(meta=meta_learner(spec.meta, spec.params)).fit(oof, y_train)
    shutil.rmtree(ctx.folder / "folds", ignore_errors=True)
    return Combined(combiner, {"folds": spec.folds, "meta": spec.meta})


def _bagging(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    return Combined(COMBINERS.build(ctx.spec.voting).fit(val, y), info=ctx.info)


def _soup(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    """One weight-averaged model (honed/ensemble/soup.py) saved as FOLDER/model; the shown weights are
    each member's share of the average."""
    member_val = np.asarray([probability_metrics(p, y)["accuracy"] for p in val])
    soup = make_soup(ctx.trained, ctx.frames, member_val, ctx.spec.soup, ctx.folder / "model")
    shares = [1.0 / len(soup.ingredients) if m.name in soup.ingredients else 0.0 for m in ctx.trained]
    info = {"soup": ctx.spec.soup, "ingredients": soup.ingredients, "soup_val_accuracy": soup.val_accuracy}
    return Combined(COMBINERS.build("soft", weights=shares).fit(val, y), info, saved=[Member("soup", soup.folder)])


METHODS: dict[str, Callable[[Context, np.ndarray, np.ndarray], Combined]] = {
    "voting": _voting, "selection": _selection, "stacking": _stacking, "bagging": _bagging, "soup": _soup,
}


def _out_of_fold(ctx: Context, member: MemberSpec) -> np.ndarray:
    """(train rows, classes) probabilities of `member` from honed.cv.cross_validate: k fits of the
    member's recipe, each predicting the fold it did not train on (a prefit member's saved recipe is
    the one refitted)."""
    from honed.cv import cross_validate

    if member.kind == "sklearn":  # seconds per fold: cross-fitted here, on the same stratified folds as stacking checks
        recipe = member_recipe(ctx.base, member, ctx.folder / "members" / member.name)
        return sklearn_out_of_fold(member, ctx.frames["train"], ctx.labels, recipe, ctx.spec.stacking.folds, ctx.seed)
    if member.prefit is not None:
        member = MemberSpec(name=member.name, recipe=str(model_folder(member.prefit, "prefit") / "recipe.yaml"))
    train = ctx.frames["train"]
    recipe = member_recipe(ctx.base, member, ctx.folder / "folds" / member.name)
    result = cross_validate(recipe, ctx.spec.stacking.folds, data=as_data(train, ctx.frames["val"]),
                            quiet=ctx.quiet, overwrite=True)
    if len(result.frame) != len(train):  # e.g. a member recipe whose preprocessing drops rows
        raise HonedError(f"ensemble member '{member.name}': cross-validation kept {len(result.frame)} of {len(train)} "
                         "training rows (its data.preprocess drops rows); stacking needs every row")
    return result.oof_probs[:, [result.labels.index(n) for n in ctx.labels]]


def build_ensemble(recipe: str | Path | dict[str, Any] | Recipe, *, overwrite: bool = False, quiet: bool = False,
                   overrides: dict[str, Any] | None = None, **kwargs: Any) -> EnsembleResult:
    """Train and combine the members named by the recipe's `ensemble:` section; save the folder. `overrides`
    maps dotted recipe keys to values, as in `fit` (keyword overrides spell the dots as `__`)."""
    base = _base_tree(recipe)
    changes = {**(overrides or {}), **normalise_overrides(kwargs)}
    base_recipe = build_recipe(base, changes, source=str(recipe) if isinstance(recipe, (str, Path)) else "recipe")
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
        meta_learner(spec.stacking.meta, spec.stacking.params)  # a bad name fails before any training
    tables = load_tables(base_recipe)
    frames = {k: f.reset_index(drop=True) for k, f in tables.frames.items()}
    if frames["val"].empty:
        raise HonedError("data.split.val: an ensemble needs validation rows (for weights and best checkpoints); "
                         "set data.val or data.split.val > 0")
    if spec.method == "stacking":
        # too many folds for a class: now, not after training
        fold_indices(frames["train"]["label"], spec.stacking.folds, base_recipe.seed)
    _check_prefit(members, tables.labels.names, folder if overwrite else None)
    for m in members:  # a bad member recipe or override fails here, before --overwrite removes the old ensemble
        if m.prefit is None:
            member_recipe(tree, m, folder / "members" / m.name)
    if overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with stop_on_signals():  # a signal stops the member in training at its next step; finished members stay
        trained, spec_info = _train(spec, tree, frames, members, folder, overwrite, quiet)
    labels = check_labels({m.name: read_labels(m.model_dir) for m in trained})
    splits = {k: f for k, f in frames.items() if k in ("val", "test") and len(f)}
    probs = {k: np.stack([member_probs(m.model_dir, f, labels)[0] for m in trained]) for k, f in splits.items()}
    y = {k: np.asarray([labels.index(v) for v in f["label"]]) for k, f in splits.items()}
    ctx = Context(spec, tree, frames, labels, members, trained, folder, base_recipe.seed, overwrite, quiet, spec_info)
    combined = METHODS[spec.method](ctx, probs["val"], y["val"])
    ensemble_probs = {k: combined.ensemble_probs(probs[k], f, labels) for k, f in splits.items()}
    metrics = _metrics(trained, ensemble_probs, probs, y)
    metrics.update(spec_info)  # bagging: the out-of-bag estimate
    info = {"method": spec.method, "kind": base_recipe.data.kind, "metrics": metrics, **combined.info}
    save_ensemble(folder, labels, combined.listed(trained), combined.combine, combined.meta, info)
    (folder / "recipe.yaml").write_text(base_recipe.to_yaml(), encoding="utf-8")
    (folder / "results.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    _report(folder, base_recipe, labels, ensemble_probs, y, splits)
    return EnsembleResult(folder, spec.method, labels, trained, combined, probs, frames, metrics)


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


def _train(spec: EnsembleSpec, tree: dict[str, Any], frames: dict[str, pd.DataFrame], members: list[MemberSpec],
           folder: Path, overwrite: bool, quiet: bool) -> tuple[list[Member], dict[str, Any]]:
    """Train what is not prefit (bagging on resampled rows, snapshots as one cyclic run)."""
    if spec.snapshots is not None and spec.method != "bagging":
        return _snapshots(spec, tree, frames, folder, overwrite, quiet), {"snapshots": spec.snapshots.cycles}
    bags = None
    if spec.method == "bagging":
        bags = bag_rows(len(frames["train"]), len(members), spec.bagging.bootstrap, spec.bagging.max_samples,
                        int(tree.get("seed", 0)), frames["train"]["label"].astype(str).to_numpy())
    jobs, labels = [], tuple(sorted(set(frames["train"]["label"].astype(str))))
    for i, m in enumerate(members):
        if m.prefit is None and m.kind == "honed":
            train = frames["train"].iloc[bags[i]] if bags is not None else frames["train"]
            data = as_data(train, frames["val"])
            jobs.append((m.name, member_recipe(tree, m, folder / "members" / m.name), data))
    classical = {}  # sklearn members: seconds each, so in this process, on the same train rows
    for m in (m for m in members if m.kind == "sklearn"):
        run_dir = folder / "members" / m.name
        recipe = member_recipe(tree, m, run_dir)
        classical[m.name] = fit_sklearn_member(m, frames["train"], labels, recipe, run_dir, overwrite)
    dirs = {**fit_all(jobs, spec.workers, overwrite, quiet, spec.keep_checkpoints), **classical}
    trained = [Member(m.name, model_folder(m.prefit, f"ensemble.members.{i}.prefit") if m.prefit else dirs[m.name])
               for i, m in enumerate(members)]
    if bags is None:
        return trained, {}
    train, left = frames["train"], out_of_bag(bags, len(frames["train"]))
    order = read_labels(trained[0].model_dir)
    oob = [(rows, member_probs(m.model_dir, train.iloc[rows].reset_index(drop=True), order)[0])
           for m, rows in zip(trained, left, strict=True) if len(rows)]
    y = np.asarray([order.index(v) for v in train["label"]])
    return trained, oob_estimate(oob, y, len(order))


def _snapshots(spec: EnsembleSpec, tree: dict[str, Any], frames: dict[str, pd.DataFrame], folder: Path, overwrite: bool,
               quiet: bool) -> list[Member]:
    """One run with cosine restarts that saves a model at each cycle end (technique `snapshots`)."""
    cycles = spec.snapshots.cycles  # type: ignore[union-attr]
    # first in the list: after-events fire in reverse order, so it saves each cycle's weights after every other
    # technique's after-step work (e.g. prune re-applying its masks)
    techniques = [{"name": "snapshots", "cycles": cycles}, *tree.get("techniques", [])]
    overrides = {"schedule.name": "cosine", "schedule.cycles": cycles, "techniques": techniques}
    member = MemberSpec(name="snapshots", overrides=overrides)
    run_dir = folder / "members" / "snapshots"
    job = (member.name, member_recipe(tree, member, run_dir), as_data(frames["train"], frames["val"]))
    fit_all([job], 1, overwrite, quiet, spec.keep_checkpoints)
    saved = [Member(f"snapshot{i}", run_dir / "snapshots" / f"cycle{i}") for i in range(1, cycles + 1)]
    missing = [m.name for m in saved if not (m.model_dir / "honed.json").is_file()]
    if missing:  # e.g. early stopping ended the run, or fewer steps than cycles
        raise HonedError(f"ensemble.snapshots.cycles: the run saved {cycles - len(missing)} of {cycles} cycle models "
                         f"(missing {', '.join(missing)}); remove early_stopping, train longer or ask for fewer cycles")
    return saved


def _metrics(members: list[Member], ensemble: dict[str, np.ndarray], probs: dict[str, np.ndarray],
             y: dict[str, np.ndarray]) -> dict[str, Any]:
    """Accuracy and macro-F1 of each member and of the ensemble (its probabilities per split) on val and test."""
    out: dict[str, Any] = {"members": {}, "ensemble": {}}
    for split, p in probs.items():
        for i, m in enumerate(members):
            scores = probability_metrics(p[i], y[split])
            out["members"].setdefault(m.name, {}).update({f"{split}_{k}": v for k, v in scores.items()})
        out["ensemble"].update({f"{split}_{k}": v for k, v in probability_metrics(ensemble[split], y[split]).items()})
    return out


def _report(folder: Path, recipe: Recipe, labels: tuple[str, ...], probs: dict[str, np.ndarray],
            y: dict[str, np.ndarray], frames: dict[str, pd.DataFrame]) -> None:
    """The error-analysis report of the ensemble on test (val when there is no test)."""
    split = "test" if "test" in probs else "val"
    if not recipe.report.enabled:
        return
    from honed.evaluate.report import build_report, write_report

    report = build_report(labels=list(labels), y_true=y[split], probs=probs[split], frame=frames[split],
                          top_k=recipe.report.top_k, split=split, title=f"honed report: ensemble {recipe.name}",
                          group_name=recipe.data.group_column)
    write_report(folder, report)


__all__ = ["ENSEMBLE_FILE", "METHODS", "EnsembleResult", "build_ensemble"]


def print_ensemble(result: EnsembleResult) -> None:
    """The members' and the ensemble's val/test scores as a table, then where things are."""
    from rich.console import Console
    from rich.table import Table

    weights = dict(zip([m.name for m in result.members], result.combined.weights, strict=True))
    table = Table(title=f"honed ensemble: {result.method} ({result.combined.combine})")
    columns = [c for c in ("val_accuracy", "val_macro_f1", "test_accuracy", "test_macro_f1")
               if c in result.metrics["ensemble"]]
    for name in ("model", "weight", *columns):
        table.add_column(name, justify="right" if name != "model" else "left")
    for name, scores in result.metrics["members"].items():
        weight = "-" if result.combined.combine == "stacking" else f"{weights[name]:.2f}"
        table.add_row(name, weight, *(f"{scores[c]:.4f}" for c in columns))
    table.add_row("ensemble", "", *(f"{result.metrics['ensemble'][c]:.4f}" for c in columns))
    console = Console()
    console.print(table)
    if "oob_accuracy" in result.metrics:
        console.print(f"out-of-bag accuracy {result.metrics['oob_accuracy']:.4f} on "
                      f"{result.metrics['oob_rows']} training rows")
    console.print(f"ensemble folder: {result.folder} (`honed predict {result.folder} DATA`)")
