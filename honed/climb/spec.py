"""The recipe's `climb:` section, typed, and the budget strings `--budget` takes.

    climb:
      stages:                    # run in this order; leave one out (or enabled: false) to skip it
        data: {}
        optimisation: {}
        techniques: {max_candidates: 8}
        model: {}
        ensemble: {}
      seeds: 3                   # paired runs per candidate (same seeds as the current best)
      folds: 5                   # k-fold pairing instead, when the training rows are fewer than small_data_rows
      small_data_rows: 2000
      alpha: 0.1                 # one-sided paired t-test level
      drop_below: 0.01           # first pair worse by more than this: stopped (clearly losing)
      fresh_pairs: auto          # auto: a stage's first kept change whose screening p < alpha / candidates
                                 # screened is kept without fresh pairs; always: every kept change re-runs
      budget: 3h                 # wall clock of the whole climb (s, m, h), and/or
      trials: 60                 # runs (one seed of one candidate is one run)
      backbones: [sentence-transformers/all-mpnet-base-v2]   # for the model stage; unset: the installed offline
                                                 # models of the data's kind; []: none
      transfer: unlabelled.csv   # in-domain rows without labels (read as `honed predict` reads its input):
                                 # the distilled student also learns the kept ensemble's soft labels on them
      candidates:                # the user's own, tried in their stage
        - {stage: optimisation, name: lr 2e-4, overrides: {optim.lr: 2.0e-4}, group: lr}
      skip: [swa]                # candidate names never to try
      study_name: climb-rt       # the Optuna study (default climb-<recipe name>); one per --storage climb
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from honed.errors import HonedError, did_you_mean
from honed.proposals import STAGES

UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_budget(value: Any, field: str = "climb.budget") -> float | None:
    """'3h', '90m', '45s', '3600' or a number of seconds -> seconds; None stays None; zero, negative
    or unreadable is one line naming the field."""
    if value is None:
        return None
    text = str(value).strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?", text)
    if isinstance(value, bool) or match is None:
        raise HonedError(f"{field}: cannot read '{value}' as a duration; write e.g. 3h, 90m, 600s or 600")
    seconds = float(match.group(1)) * UNITS[match.group(2) or ""]
    if seconds <= 0:
        raise HonedError(f"{field}: the budget must be more than zero, got '{value}'")
    return seconds


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageSpec(_Spec):
    enabled: bool = True
    max_candidates: int | None = Field(None, ge=1)


class CandidateSpec(_Spec):
    """A user's own candidate: dotted overrides and/or technique entries, tried in `stage`."""

    stage: Literal["data", "optimisation", "techniques", "model"] = "techniques"
    name: str
    overrides: dict[str, Any] = {}
    techniques: list[dict[str, Any]] = []
    group: str = ""

    @model_validator(mode="after")
    def _something(self) -> CandidateSpec:
        if not self.overrides and not self.techniques:
            raise ValueError(f"candidate '{self.name}' changes nothing; give overrides or techniques")
        return self


class ClimbSpec(_Spec):
    stages: dict[str, StageSpec] = Field(default_factory=lambda: {s: StageSpec() for s in STAGES})
    seeds: int = Field(3, ge=2, le=20)
    folds: int = Field(5, ge=2, le=20)
    small_data_rows: int = Field(2000, ge=0)
    pairing: Literal["auto", "seeds", "folds"] = "auto"
    alpha: float = Field(0.1, gt=0.0, lt=0.5)
    drop_below: float | None = Field(0.01, ge=0.0)
    fresh_pairs: Literal["auto", "always"] = "auto"
    budget: float | None = None
    trials: int | None = Field(None, ge=1)
    metric: str | None = None
    backbones: list[str | dict[str, Any]] | None = None  # names or model sections; None: the installed ones
    candidates: list[CandidateSpec] = []
    skip: list[str] = []
    top_k: int = Field(3, ge=2, le=10)
    single_model: bool = False
    transfer: str | None = None  # unlabelled in-domain rows for the distillation (transfer.py)
    lr_find: bool = True
    workers: int = Field(1, ge=1)
    study_name: str | None = None  # default climb-<recipe name>; machines sharing --storage use one name

    @field_validator("stages", mode="before")
    @classmethod
    def _stage_list(cls, value: Any) -> Any:
        """`stages: [optimisation, techniques]` is short for those stages with their defaults."""
        if isinstance(value, list):
            return {str(s): {} for s in value}
        return value

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: dict[str, StageSpec]) -> dict[str, StageSpec]:
        for name in value:
            if name not in STAGES:
                raise ValueError(f"unknown stage '{name}'{did_you_mean(name, STAGES)}; stages: {', '.join(STAGES)}")
        if not any(s.enabled for s in value.values()):
            raise ValueError("no stage is enabled; enable at least one of " + ", ".join(STAGES))
        return value

    @field_validator("backbones")
    @classmethod
    def _named(cls, value: list[str | dict[str, Any]] | None) -> list[str | dict[str, Any]] | None:
        for i, backbone in enumerate(value or []):
            if isinstance(backbone, dict) and not backbone.get("name"):
                raise ValueError(f"entry {i}: a model section needs a name, e.g. {{name: resnet18, weights: "
                                 "resnet18.pth}")
        return value

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        try:
            return parse_budget(value)
        except HonedError as exc:
            raise ValueError(str(exc).removeprefix("climb.budget: ")) from None

    def enabled(self) -> list[str]:
        """The stages to run, in the climb's fixed order."""
        return [s for s in STAGES if s in self.stages and self.stages[s].enabled]


def parse_climb(raw: Any, source: str = "recipe") -> ClimbSpec:
    """Validate `climb:` (absent means every default); each problem is one line naming the key."""
    if raw is not None and not isinstance(raw, dict):
        raise HonedError(f"{source}: climb: expected a mapping of settings, got {type(raw).__name__}")
    if raw is not None and not raw:
        raise HonedError(f"{source}: climb: the section is empty; remove it for the defaults or give settings")
    try:
        return ClimbSpec.model_validate(raw or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting" + did_you_mean(str(err["loc"][-1]), _fields_at(err["loc"]))
        raise HonedError(f"{source}: climb.{path}: {message}") from exc


def _fields_at(loc: tuple[Any, ...]) -> Any:
    if loc and loc[0] == "stages":
        return StageSpec.model_fields
    if loc and loc[0] == "candidates":
        return CandidateSpec.model_fields
    return ClimbSpec.model_fields
