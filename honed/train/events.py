"""The named events of the training loop and how techniques hook them.

A technique is any object with methods named after events (`on_epoch_end(state)` ...); hooks are
duck-typed. A technique stops training by raising `StopTraining`; one that holds state offers
`state_dict()` / `load_state_dict()` and is saved with the checkpoint. An optional
`check(recipe, model)` raises HonedError for impossible settings before the run folder exists, and
a technique that changes which parameters train sets `changes_trainable = True` (DDP then allows
parameters without gradients).

`on_fit_start` fires before the optimizer is built (and after a resume restored technique state),
so freezing techniques decide which parameters the optimizer starts with.
"""

from __future__ import annotations

from typing import Any

EVENTS = (
    "on_fit_start",
    "on_epoch_start",
    "on_batch_start",
    "on_after_forward",
    "on_after_loss",
    "on_before_optimizer_step",
    "on_after_optimizer_step",
    "on_evaluate_start",
    "on_evaluate_end",
    "on_epoch_end",
    "on_fit_end",
)


class StopTraining(Exception):
    """Raised by a technique to end training after the current step; best weights still win."""


class Hooks:
    """Calls each technique's handler for an event, in recipe order."""

    def __init__(self, techniques: list[Any]) -> None:
        self.techniques = techniques
        self._table = {e: [getattr(t, e) for t in techniques if callable(getattr(t, e, None))] for e in EVENTS}

    def fire(self, event: str, state: Any) -> None:
        """Every handler runs even after one asks to stop (so paired hooks such as a weight swap
        finish); the first StopTraining is raised afterwards."""
        stop: StopTraining | None = None
        for handler in self._table[event]:
            try:
                handler(state)
            except StopTraining as exc:
                stop = stop or exc
        if stop is not None:
            raise stop

    def check(self, recipe: Any, model: Any) -> None:
        for technique in self.techniques:
            if callable(getattr(technique, "check", None)):
                technique.check(recipe, model)

    @property
    def changes_trainable(self) -> bool:
        return any(getattr(t, "changes_trainable", False) for t in self.techniques)

    def state_dict(self) -> list[Any]:
        return [t.state_dict() if hasattr(t, "state_dict") else None for t in self.techniques]

    def load_state_dict(self, states: list[Any]) -> None:
        for technique, state in zip(self.techniques, states, strict=True):
            if state is not None and hasattr(technique, "load_state_dict"):
                technique.load_state_dict(state)
