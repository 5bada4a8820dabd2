"""L1 penalty: add `strength * sum(|w|)` over chosen weights to the loss, pushing them towards zero.

Weight decay (L2, decoupled in AdamW) shrinks weights proportionally; an L1 term shrinks them by a
constant amount and so drives small ones to exactly zero (sparser, often more robust heads). The
weights are chosen by layer group (`groups: [head]`) and/or glob `patterns`, all by default;
biases and norm weights are left out unless `include_bias: true`, as for weight decay.
"""

from __future__ import annotations

from typing import Any

import torch

from honed.proposals import Change, Situation, proposes
from honed.techniques import TECHNIQUES
from honed.train import freezing
from honed.train.events import Technique
from honed.train.optim import no_decay, short

FIELD = "techniques: l1"


def l1_penalty(params: list[torch.Tensor]) -> torch.Tensor:
    """sum(|w|) over `params` (0 when empty)."""
    if not params:
        return torch.zeros(())
    return torch.stack([p.abs().sum() for p in params]).sum()


class L1Penalty(Technique):
    acts_on_head_only = True

    def __init__(
        self,
        strength: float = 1e-5,
        groups: list[str] | None = None,
        patterns: list[str] | None = None,
        include_bias: bool = False,
    ) -> None:
        if strength < 0:
            raise ValueError("strength must be >= 0")
        self.strength, self.groups, self.patterns, self.include_bias = (
            float(strength),
            groups or [],
            patterns or [],
            include_bias,
        )
        self.params: list[torch.nn.Parameter] = []

    def names(self, model: Any) -> set[str]:
        """The penalised parameter names (unknown groups and patterns matching nothing are errors)."""
        model = freezing.unwrap(model)
        named = dict(model.named_parameters())
        if self.groups or self.patterns:
            chosen = freezing.names_in_groups(model, self.groups, f"{FIELD}.groups")
            chosen |= freezing.names_matching(model, self.patterns, f"{FIELD}.patterns")
        else:
            chosen = set(named)
        return {n for n in chosen if self.include_bias or not no_decay(n, named[n], ["bias", "norm"])}

    def check(self, recipe: Any, model: Any) -> None:
        self.names(model)

    def on_fit_start(self, state: Any) -> None:
        model = freezing.unwrap(state.accelerator.unwrap_model(state.model))
        chosen = self.names(model)
        self.params = [p for n, p in model.named_parameters() if n in chosen]

    def on_after_loss(self, state: Any) -> None:
        """Penalise the weights that train now (gradual unfreezing may add some later)."""
        if self.strength:
            penalty = l1_penalty([p for p in self.params if p.requires_grad])
            state.loss = state.loss + self.strength * penalty.to(state.loss.device)


TECHNIQUES.register("l1")(L1Penalty)


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """A mild L1 term on the head's weights (on every weight it would swamp the task loss's gradients)."""
    if s.has_technique("l1"):
        return []
    strength = 1e-4
    return [Change(f"l1 head {short(strength)}", techniques=[{"name": "l1", "strength": strength, "groups": ["head"]}],
                   group="l1", why="pushes the head's small weights to zero: a sparser head leaning on fewer features")]
