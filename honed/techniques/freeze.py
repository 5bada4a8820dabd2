"""Freeze parts of the model for the whole run: by layer group, by glob pattern over parameter
names, everything but the last k blocks (and the head), or everything but the head (a linear probe).
Frozen batch-norm layers can keep their pretrained running statistics (eval mode), as fastai does
for frozen CNN bodies."""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError
from honed.techniques import TECHNIQUES
from honed.train import freezing
from honed.train.events import Technique


class Freeze(Technique):
    acts_on_head_only = True
    changes_trainable = True

    def __init__(
        self,
        groups: list[str] | None = None,
        patterns: list[str] | None = None,
        all_but_last: int | None = None,
        all_but_head: bool = False,
        bn_eval: bool = True,
    ) -> None:
        if not groups and not patterns and all_but_last is None and not all_but_head:
            raise ValueError("name what to freeze: groups, patterns, all_but_last or all_but_head")
        if all_but_last is not None and all_but_last < 0:
            raise ValueError("all_but_last must be >= 0")
        self.groups, self.patterns, self.all_but_last, self.bn_eval = (
            groups or [],
            patterns or [],
            all_but_last,
            bn_eval,
        )
        self.all_but_head = all_but_head

    def frozen_names(self, model: Any) -> set[str]:
        field = "techniques: freeze"
        names = freezing.names_in_groups(model, self.groups, f"{field}.groups")
        names |= freezing.names_matching(model, self.patterns, f"{field}.patterns")
        if self.all_but_last is not None:
            names |= freezing.names_below_last_blocks(model, self.all_but_last, f"{field}.all_but_last")
        if self.all_but_head:
            names |= {
                n for n, _ in freezing.unwrap(model).named_parameters() if n not in freezing.unwrap(model).head_params
            }
        return names

    def check(self, recipe: Any, model: Any) -> None:
        everything = {n for n, _ in model.named_parameters()}
        if self.frozen_names(model) >= everything:
            raise HonedError(
                "techniques: freeze would freeze every parameter, so nothing would train; leave the head out"
            )

    def on_fit_start(self, state: Any) -> None:
        freezing.set_trainable(
            state.model, self.frozen_names(freezing.unwrap(state.accelerator.unwrap_model(state.model))), False
        )

    def on_epoch_start(self, state: Any) -> None:
        if self.bn_eval:
            freezing.frozen_modules_to_eval(state.accelerator.unwrap_model(state.model))


TECHNIQUES.register("freeze")(Freeze)
