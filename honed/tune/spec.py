"""The recipe's `search:` section, typed: what to vary, how to sample, how long, what to optimise.

    search:
      sampler: tpe            # grid | random | tpe
      n_trials: 20            # trial budget of the whole study (all workers, all machines)
      timeout: 3600           # seconds for this invocation (optional)
      metric: accuracy        # a val metric of the recipe's task (honed.metrics.TASKS); default train.metric
      pruner: median          # none | median | hyperband | successive_halving
      params:
        optim.lr: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}
        train.batch_size: {type: categorical, choices: [16, 32]}
        techniques.ema: {type: switch, options: {decay: 0.999}}

A parameter names any recipe key by its dotted path; `techniques.<name>` with `type: switch` turns a
registered technique on or off. Optuna does the sampling and pruning (honed/tune/study.py).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from honed.errors import HonedError, did_you_mean
from honed.metrics import DIRECTION, TASKS

PRIMITIVE = (str, int, float, bool, type(None))
METRICS = tuple(dict.fromkeys(name for task in TASKS.values() for name in task.names))  # every task's val metrics


class ParamSpec(BaseModel):
    """One searched recipe key. float/int need low/high (log scale: low > 0); categorical needs
    choices (a list, or a mapping label -> value for lists/dicts); `grid` lists the grid sampler's
    points for a float/int (an int range or a float with `step` is enumerated without it)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["float", "log_float", "int", "categorical", "switch"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | dict[str, Any] | None = None
    grid: list[Any] | None = None
    options: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "log_float":
            self.type, self.log = "float", True
        if self.grid is not None and not self.grid:
            raise ValueError("grid is empty; list at least one value")
        if self.type in ("float", "int"):
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs low and high")
            if self.low > self.high:
                raise ValueError(f"low ({self.low:g}) is greater than high ({self.high:g})")
            if self.log and self.low <= 0:
                raise ValueError(f"log scale needs low > 0 (got low={self.low:g})")
            if self.type == "int" and self.step is not None and self.step != int(self.step):
                raise ValueError(f"an int parameter needs a whole step >= 1 (got step={self.step:g})")
            if self.log and self.step is not None:
                raise ValueError("log scale and step cannot be combined (Optuna samples one or the other)")
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical parameter needs a non-empty choices list")
        return self

    def labelled_choices(self) -> dict[Any, Any]:
        """Optuna choices (None/bool/int/float/str) -> the recipe value each stands for."""
        if self.type == "switch":
            return {False: False, True: True}
        if isinstance(self.choices, dict):
            return dict(self.choices)
        return {c if isinstance(c, PRIMITIVE) else _label(c): c for c in self.choices or []}

    def grid_points(self, name: str) -> list[Any]:
        """The points the grid sampler visits, as Optuna choices."""
        if self.grid is not None:
            return list(self.grid)
        if self.type in ("categorical", "switch"):
            return list(self.labelled_choices())
        assert self.low is not None and self.high is not None
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step is None:
            raise HonedError(
                f"search.params.{name}: the grid sampler needs `grid: [values]` or a `step` for a float parameter"
            )
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1  # never a point beyond high
        return [round(self.low + i * self.step, 12) for i in range(count)]


def _label(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


class SearchSpec(BaseModel):
    """The whole `search:` section."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, ParamSpec] = Field(min_length=1)
    sampler: Literal["grid", "random", "tpe"] = "tpe"
    n_trials: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0)
    metric: str = "accuracy"  # `honed tune` fills in the recipe's train.metric when the section names none
    direction: Literal["maximize", "minimize"] | None = None
    pruner: Literal["none", "median", "hyperband", "successive_halving"] = "none"
    startup_trials: int = Field(2, ge=0)  # trials before the pruner (median) or TPE start acting
    seed: int | None = None
    study_name: str | None = None
    keep_top_k: int = Field(0, ge=0)
    cv_folds: int | None = Field(None, ge=2, le=100)
    heartbeat: float = Field(30.0, ge=1.0)  # seconds; a trial silent for 2x this is failed and retried
    max_retry: int = Field(1, ge=0)

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric '{value}'{did_you_mean(value, METRICS)}")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> SearchSpec:
        natural = natural_direction(self.metric)
        if self.direction is None:
            self.direction = natural
        elif self.direction != natural:
            raise ValueError(
                f"direction {self.direction} contradicts metric {self.metric} (it is {natural}d); drop direction"
            )
        return self

    @property
    def mode(self) -> str:
        """The recipe's train.mode that matches the direction (best checkpoint chosen the same way)."""
        return "max" if self.direction == "maximize" else "min"


def natural_direction(metric: str) -> str:
    """Optuna's direction for a val metric: its fixed one in honed.metrics.DIRECTION (rmse and mae lower,
    r2, pearson, spearman, micro_f1 and map higher is better), else classification's rule (loss lower,
    accuracy and macro_f1 higher)."""
    fixed = DIRECTION.get(metric, "min" if metric == "loss" else "max")
    return "minimize" if fixed == "min" else "maximize"


def check_task_metric(spec: SearchSpec, task: str, source: str = "recipe") -> None:
    """The searched metric must be a val metric of the recipe's task (checked before any trial)."""
    names = TASKS[task].names
    if spec.metric not in names:
        raise HonedError(f"{source}: search.metric: '{spec.metric}' is not a {task} metric; "
                         f"use one of {', '.join(names)}")


def parse_search(
    raw: dict[str, Any] | None, source: str = "recipe", default_metric: str | None = None
) -> SearchSpec:
    """Validate `search:`; every problem is one line naming the key. `default_metric` (the recipe's
    train.metric) is the metric when the section names none."""
    if not raw:
        raise HonedError(
            f"{source}: no `search:` section; add one with params (see `honed tune --help` and the README)"
        )
    if default_metric is not None:
        raw = {"metric": default_metric, **raw}
    try:
        return SearchSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            model = ParamSpec if len(err["loc"]) == 3 and err["loc"][0] == "params" else SearchSpec
            message = "unknown setting" + did_you_mean(str(err["loc"][-1]), model.model_fields)
        raise HonedError(f"{source}: search.{path}: {message}") from exc
