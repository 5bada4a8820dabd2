"""How each `ensemble.method` fits its combiner from the members' validation outputs, and which combiner it
may use for the ensemble's task.

A method picks its combiner by the combiners' declared capabilities (honed/inference/combiners.py): voting
and bagging take the rule `ensemble.voting` names (default: the task's), selection and stacking the one
combiner of their family that serves the task. `plan` makes that choice, and checks the selection metric
and stacking meta-learner against the task, before anything trains; a choice the task cannot use is one
line naming the field.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.ensemble.classical import sklearn_out_of_fold
from honed.ensemble.members import Member, member_probs, member_recipe
from honed.ensemble.soup import make_soup
from honed.ensemble.spec import EnsembleSpec, MemberSpec
from honed.ensemble.tasks import ENSEMBLE_TASKS, EnsembleTask
from honed.errors import HonedError
from honed.inference import model_folder
from honed.inference.combiners import COMBINERS, Combiner
from honed.inference.selection import SELECTION_METRICS, greedy_selection
from honed.metrics import probability_metrics
from honed.recipe import Recipe


@dataclass(frozen=True)
class Plan:
    """What a spec resolves to for its task: the combiner rule, the selection metric, stacking's meta-learner."""

    rule: str
    metric: str
    meta: str | None


@dataclass
class Combined:
    """A fitted combiner (its rule, weights and meta-learner) and what the method reports."""

    combiner: Combiner
    info: dict[str, Any] = field(default_factory=dict)
    saved: list[Member] | None = None  # what the folder lists instead of the trained members (a soup's one model)
    fitted_on: np.ndarray | None = None  # stacking: the out-of-fold member outputs the meta-learner was fitted on

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
        """The ensemble's outputs from the members' (members, rows, columns): probabilities or values."""
        return self.combiner(member_probs)

    def ensemble_probs(self, probs: np.ndarray, frame: pd.DataFrame, labels: tuple[str, ...]) -> np.ndarray:
        """What the saved folder predicts on a split: the combined member outputs, or (a soup) the
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
    task: EnsembleTask = field(default_factory=lambda: ENSEMBLE_TASKS["classification"])
    plan: Plan = Plan("soft", "accuracy", "logistic_regression")

    def recipe_for(self, member: MemberSpec, run_dir: Path, **extra: Any) -> Recipe:
        """The member's recipe, its task pinned to the ensemble's where it says auto (see member_recipe)."""
        return member_recipe(self.base, member, run_dir, pin_task(self.task), extra)


def pin_task(task: EnsembleTask) -> str | None:
    """The task member recipes of task auto are given, if the task pins it (in-memory targets are not re-guessed)."""
    return task.name if task.pin_task else None


def _voting(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    spec = ctx.spec
    weights = (greedy_selection(val, y, spec.selection.rounds, ctx.plan.metric)
               if spec.weights == "select" else spec.weights)
    return Combined(COMBINERS.build(ctx.plan.rule, weights=weights).fit(val, y))


def _selection(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    """Weights by greedy selection; saved as the task's weighted mean (soft, or mean for values)."""
    combiner = COMBINERS.build(ctx.plan.rule, rounds=ctx.spec.selection.rounds, metric=ctx.plan.metric,
                               rule=ctx.task.vote)
    return Combined(combiner.fit(val, y))


def _stacking(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    spec, train = ctx.spec.stacking, ctx.frames["train"]
    oof = np.stack([_out_of_fold(ctx, m) for m in ctx.members])
    meta = ctx.task.meta_learner(str(ctx.plan.meta), spec.params)
    combiner = COMBINERS.build(ctx.plan.rule, meta=meta).fit(oof, ctx.task.truth(train, ctx.labels))
    shutil.rmtree(ctx.folder / "folds", ignore_errors=True)
    return Combined(combiner, {"folds": spec.folds, "meta": ctx.plan.meta}, fitted_on=oof)


def _bagging(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    return Combined(COMBINERS.build(ctx.plan.rule).fit(val, y), info=ctx.info)


def _soup(ctx: Context, val: np.ndarray, y: np.ndarray) -> Combined:
    """One weight-averaged model (honed/ensemble/soup.py) saved as FOLDER/model; the shown weights are
    each member's share of the average."""
    member_val = np.asarray([probability_metrics(p, y)["accuracy"] for p in val])
    soup = make_soup(ctx.trained, ctx.frames, member_val, ctx.spec.soup, ctx.folder / "model")
    shares = [1.0 / len(soup.ingredients) if m.name in soup.ingredients else 0.0 for m in ctx.trained]
    info = {"soup": ctx.spec.soup, "ingredients": soup.ingredients, "soup_val_accuracy": soup.val_accuracy}
    return Combined(COMBINERS.build("soft", weights=shares).fit(val, y), info, saved=[Member("soup", soup.folder)])


@dataclass(frozen=True)
class Method:
    """How a method fits (`fit`) and which combiners it may use: those of `family`, chosen by
    `ensemble.voting` when `by_voting`, else the family's one combiner serving the task; `fixed` is the rule
    of a method that combines in its own way (a soup), for the `tasks` it serves."""

    fit: Callable[[Context, np.ndarray, np.ndarray], Combined]
    family: str
    by_voting: bool = False
    fixed: str | None = None
    tasks: tuple[str, ...] | None = None


METHODS: dict[str, Method] = {
    "voting": Method(_voting, "voting", by_voting=True),
    "selection": Method(_selection, "selection"),
    "stacking": Method(_stacking, "stacking"),
    "bagging": Method(_bagging, "voting", by_voting=True),
    "soup": Method(_soup, "voting", fixed="soft", tasks=("classification",)),
}


def _serving(family: str, task: str) -> list[str]:
    """The registered combiners of `family` that combine `task`'s outputs."""
    return [n for n in COMBINERS.names() if COMBINERS.get(n).family == family  # type: ignore[attr-defined]
            and task in COMBINERS.get(n).tasks]  # type: ignore[attr-defined]


def _rule(spec: EnsembleSpec, task: EnsembleTask) -> str:
    """The combiner rule of the spec's method for `task`; one that cannot combine the task is one line."""
    method = METHODS[spec.method]
    if method.tasks is not None and task.name not in method.tasks:
        raise HonedError(f"ensemble.method: {spec.method} serves task {', '.join(method.tasks)} only, not "
                         f"{task.name}; use voting or selection")
    if method.fixed is not None:
        return method.fixed
    serving = _serving(method.family, task.name)
    if not method.by_voting:
        if not serving:
            raise HonedError(f"ensemble.method: {spec.method} does not serve task {task.name} yet; use voting or "
                             "selection")
        return serving[0]
    rule = spec.voting or task.vote
    combiner: Any = COMBINERS.get(rule)
    if task.name not in combiner.tasks:
        raise HonedError(f"ensemble.voting: '{rule}' combines {', '.join(combiner.tasks)} outputs, not task "
                         f"{task.name}; use {' or '.join(serving)}")
    return rule


def plan(spec: EnsembleSpec, task: EnsembleTask) -> Plan:
    """The combiner, selection metric and meta-learner of `spec` for `task`, all checked (before training)."""
    rule = _rule(spec, task)
    combiner: Any = COMBINERS.get(rule)
    if spec.weights is not None and not combiner.weighted:
        raise HonedError(f"ensemble.weights: voting {rule} takes no weights; drop ensemble.weights or use voting "
                         f"{task.vote}")
    metric = spec.selection.metric or task.selection_metric
    if task.name not in SELECTION_METRICS[metric].tasks:
        fits = [n for n, m in SELECTION_METRICS.items() if task.name in m.tasks]
        serves = ", ".join(SELECTION_METRICS[metric].tasks)
        raise HonedError(f"ensemble.selection.metric: '{metric}' scores task {serves}, not {task.name}; use "
                         f"{' or '.join(fits)}")
    meta = spec.stacking.meta or task.meta
    if combiner.needs_meta:
        task.meta_learner(str(meta), spec.stacking.params)  # a bad name fails before any training
    return Plan(rule, metric, meta)


def _out_of_fold(ctx: Context, member: MemberSpec) -> np.ndarray:
    """(train rows, columns) outputs of `member` from honed.cv.cross_validate: k fits of the member's
    recipe, each predicting the fold it did not train on (class or label probabilities, or predicted values
    in the targets' units; a prefit member's saved recipe is the one refitted)."""
    from honed.cv import cross_validate

    if member.kind == "sklearn":  # seconds per fold: cross-fitted here, on the same stratified folds as stacking checks
        recipe = member_recipe(ctx.base, member, ctx.folder / "members" / member.name)
        return sklearn_out_of_fold(member, ctx.frames["train"], ctx.labels, recipe, ctx.spec.stacking.folds, ctx.seed)
    member = _refittable(member)
    train = ctx.frames["train"]
    recipe = ctx.recipe_for(member, ctx.folder / "folds" / member.name)
    result = cross_validate(recipe, ctx.spec.stacking.folds, data=ctx.task.data(train, ctx.frames["val"]),
                            quiet=ctx.quiet, overwrite=True)
    if len(result.frame) != len(train):  # e.g. a member recipe whose preprocessing drops rows
        raise HonedError(f"ensemble member '{member.name}': cross-validation kept {len(result.frame)} of {len(train)} "
                         "training rows (its data.preprocess drops rows); stacking needs every row")
    return result.oof_probs[:, [result.labels.index(n) for n in ctx.labels]]


def _refittable(member: MemberSpec) -> MemberSpec:
    """A prefit member as the recipe it was trained from (its saved recipe.yaml), so folds can refit it."""
    if member.prefit is None:
        return member
    return MemberSpec(name=member.name, recipe=str(model_folder(member.prefit, "prefit") / "recipe.yaml"))
