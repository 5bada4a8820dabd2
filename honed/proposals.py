"""What `honed climb` may try: candidate changes contributed by the files that own them.

A technique, loss or schedule file registers a small function with `@proposes(stage)`; given the
`Situation` of the climb (the current recipe, the data's kind and size, what the LR finder and the
audit found) it returns the `Change`s worth trying there, or none. The climb (honed/climb/) reads
this table and never names a technique itself, so adding a technique adds its candidates without
touching the climb. This module sits in the bottom layer so that every file can contribute.

A `Change` is plain data: dotted recipe overrides and/or technique entries to add; changes of one
`group` are alternatives (two learning rates), so once one of them is kept the others are not tried
on top of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STAGES = ("data", "optimisation", "techniques", "model", "ensemble")


@dataclass
class Change:
    """One candidate change. `overrides`: dotted recipe keys -> values; `techniques`: entries
    ({"name": ..., **settings}) added to the recipe's list, replacing an entry of the same name;
    `runner`: how a configuration with this change is scored (fit, classical; see honed/climb/runners.py);
    `cost`: a rough multiple of the baseline's compute, shown so the user knows what a change costs."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    techniques: list[dict[str, Any]] = field(default_factory=list)
    group: str = ""
    runner: str = "fit"
    why: str = ""
    cost: float = 1.0

    def __post_init__(self) -> None:
        self.group = self.group or self.name

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "overrides": dict(self.overrides), "techniques": [dict(t) for t in self.techniques],
                "group": self.group, "runner": self.runner, "why": self.why, "cost": self.cost}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Change:
        return cls(**raw)


@dataclass
class Situation:
    """What a proposer may read. `recipe`: the current best recipe (a honed.recipe.Recipe); `kind`: text |
    image; `task`: classification | regression; `train_rows`: training rows; `lr_found`: the LR finder's
    suggestion (None when it did not run); `long_share`: share of training texts longer than
    data.max_length tokens; `findings`: audit counts by check (e.g. {"exact duplicate": 12});
    `backbones`: other pretrained models, names or model sections (climb.backbones, or the installed ones of
    the data's kind); `steps`: optimizer steps of one
    run of the current recipe; `class_skew`: largest over smallest class count in train (1.0: balanced)."""

    recipe: Any
    kind: str
    task: str
    train_rows: int
    lr_found: float | None = None
    long_share: float = 0.0
    findings: dict[str, int] = field(default_factory=dict)
    backbones: list[Any] = field(default_factory=list)
    steps: int = 0
    class_skew: float = 1.0

    def has_technique(self, name: str) -> bool:
        return any(t.name == name for t in self.recipe.techniques)


Proposer = Callable[[Situation], list[Change]]
PROPOSERS: dict[str, list[Proposer]] = {stage: [] for stage in STAGES}


def proposes(stage: str) -> Callable[[Proposer], Proposer]:
    """Register `fn(situation) -> [Change, ...]` as a source of candidates for `stage`."""
    if stage not in PROPOSERS:
        raise ValueError(f"unknown climb stage '{stage}'; stages: {', '.join(STAGES)}")

    def add(fn: Proposer) -> Proposer:
        PROPOSERS[stage].append(fn)
        return fn

    return add


def proposals(stage: str, situation: Situation, errors: list[str] | None = None) -> list[Change]:
    """Every registered candidate for `stage` in this situation, each name once (first wins). A proposer that
    raises is left out and named in `errors` (when given), so one broken file does not stop a climb."""
    seen: dict[str, Change] = {}
    for proposer in PROPOSERS[stage]:
        try:
            changes = proposer(situation) or []
        except Exception as exc:
            if errors is None:
                raise
            errors.append(f"{proposer.__module__}.{proposer.__name__}: {type(exc).__name__}: {exc}")
            continue
        for change in changes:
            seen.setdefault(change.name, change)
    return list(seen.values())
