"""The named events of the training loop and how techniques hook them.

A technique is any object with methods named after events (`on_epoch_end(state)` ...); hooks are
duck-typed. A technique stops training by raising `StopTraining`; one that holds state offers
`state_dict()` / `load_state_dict()` and is saved with the checkpoint.
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
        for handler in self._table[event]:
            handler(state)

    def state_dict(self) -> list[Any]:
        return [t.state_dict() if hasattr(t, "state_dict") else None for t in self.techniques]

    def load_state_dict(self, states: list[Any]) -> None:
        for technique, state in zip(self.techniques, states, strict=True):
            if state is not None and hasattr(technique, "load_state_dict"):
                technique.load_state_dict(state)
