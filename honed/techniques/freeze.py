"""Freeze parts of the model for the whole run: by layer group, by glob pattern over parameter
names, everything but the last k blocks (and the head), or everything but the head (a linear probe).
Frozen batch-norm layers can keep their pretrained running statistics (eval mode), as fastai does
for frozen CNN bodies."""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError
from honed.models.candidates import block_count
from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES, technique_classes
from honed.train import freezing
from honed.train.events import Technique, capable


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


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """The lower half of the blocks (and the embeddings) frozen for the whole run."""
    if any(s.has_technique(t) for t in ("freeze", "gradual_unfreezing", "head_warmup")):
        return []
    blocks = block_count(s.recipe)
    if not blocks or blocks < 2:
        return []
    frozen = blocks // 2
    return [Change(f"freeze lower {frozen} of {blocks} blocks",
                   techniques=[{"name": "freeze", "all_but_last": blocks - frozen}], group="freezing", cost=0.8,
                   why="the lower layers keep their general pretrained features; fewer weights fit the little data")]


@proposes("model")
def _linear_probe(s: Situation) -> list[Change]:
    """A linear probe: the backbone frozen, its features computed once (train.cache_frozen_features) and only
    the head trained, at a head-sized LR for more (now cheap) epochs. Refused while a technique that needs
    the full model in the loop is in the recipe; augmentation is switched off (cached inputs are fixed)."""
    recipe = s.recipe
    if recipe.train.cache_frozen_features or recipe.data.truncation == "sliding":  # the cache: one row per text
        return []
    if any(name != "freeze" and not capable(cls, "acts_on_head_only") for name, cls in technique_classes(recipe)):
        return []
    overrides: dict[str, Any] = {"train.cache_frozen_features": True, "train.epochs": max(recipe.train.epochs, 10),
                       "optim.lr": max(recipe.optim.lr, 1e-3)}
    overrides.update({f"augment.{k}": [] for k in ("text", "image") if getattr(recipe.augment, k)})
    return [Change("linear probe (frozen features)", overrides, [{"name": "freeze", "all_but_head": True}],
                   group="probe", cost=0.3,
                   why="only a new head on the frozen pretrained features: the cheap baseline a fine-tune must beat")]
