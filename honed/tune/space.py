"""Search space -> Optuna suggestions -> recipe overrides.

Each parameter is suggested under its dotted recipe key (the name Optuna stores, plots and the
dashboard show). Under the grid sampler every parameter is a categorical over its grid points, so
Optuna's GridSampler enumerates the product exactly.
"""

from __future__ import annotations

from typing import Any

import optuna
import yaml

from honed.errors import HonedError
from honed.recipe import build_recipe, set_dotted
from honed.tune.spec import ParamSpec, SearchSpec

SWITCH_PREFIX = "techniques."


def grid_space(spec: SearchSpec) -> dict[str, list[Any]]:
    """The grid sampler's search space: every parameter's points (an empty grid is an error)."""
    space = {name: p.grid_points(name) for name, p in spec.params.items()}
    for name, points in space.items():
        if not points:
            raise HonedError(f"search.params.{name}: the grid is empty; give at least one value")
    return space


def grid_size(spec: SearchSpec) -> int:
    size = 1
    for points in grid_space(spec).values():
        size *= len(points)
    return size


def suggest(trial: optuna.Trial, spec: SearchSpec) -> dict[str, Any]:
    """One trial's values, as recipe values (categorical labels mapped back)."""
    values: dict[str, Any] = {}
    for name, p in spec.params.items():
        if spec.sampler == "grid":
            picked = trial.suggest_categorical(name, p.grid_points(name))
            values[name] = p.labelled_choices().get(picked, picked) if p.type in ("categorical", "switch") else picked
        else:
            values[name] = _suggest_one(trial, name, p)
    return values


def _suggest_one(trial: optuna.Trial, name: str, p: ParamSpec) -> Any:
    if p.type == "float":
        return trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    choices = p.labelled_choices()
    return choices[trial.suggest_categorical(name, list(choices))]


def values_from_params(spec: SearchSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Recipe values from a stored trial's Optuna params (labels mapped back)."""
    out = {}
    for name, value in params.items():
        p = spec.params.get(name)
        out[name] = (
            p.labelled_choices().get(value, value) if p is not None and p.type in ("categorical", "switch") else value
        )
    return out


def apply(tree: dict[str, Any], spec: SearchSpec, values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the recipe tree with the trial's values set; a switch appends its technique."""
    tree = yaml.safe_load(yaml.safe_dump(tree))
    for name, value in values.items():
        if spec.params[name].type == "switch":
            technique = name.removeprefix(SWITCH_PREFIX)
            tree["techniques"] = [t for t in tree.get("techniques") or [] if t.get("name") != technique]
            if value:
                tree["techniques"].append({"name": technique, **spec.params[name].options})
        else:
            set_dotted(tree, name, value)
    return tree


def check_space(tree: dict[str, Any], spec: SearchSpec) -> None:
    """Every parameter names a real recipe key and its extreme values validate, before any trial."""
    from honed.techniques import TECHNIQUES, load_all

    load_all()
    for name, p in spec.params.items():
        if p.type == "switch":
            technique = name.removeprefix(SWITCH_PREFIX)
            if not name.startswith(SWITCH_PREFIX) or technique not in TECHNIQUES:
                raise HonedError(
                    f"search.params.{name}: a switch is named techniques.<technique>; "
                    f"known techniques: {', '.join(TECHNIQUES.names())}"
                )
            samples = [True]
        elif spec.sampler == "grid":
            samples = [values_from_params(spec, {name: v})[name] for v in p.grid_points(name)]
        elif p.type in ("float", "int"):
            samples = [int(p.low) if p.type == "int" else p.low, int(p.high) if p.type == "int" else p.high]
        else:
            samples = list(p.labelled_choices().values())
        for value in samples:
            try:
                build_recipe(apply(tree, spec, {name: value}))
            except HonedError as exc:
                raise HonedError(f"search.params.{name} = {value!r}: {str(exc).removeprefix('recipe: ')}") from exc
