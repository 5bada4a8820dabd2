"""The named events of the training loop, how techniques hook them, and what they declare.

A technique is any object with methods named after events (`on_epoch_end(state)` ...); hooks are
duck-typed. A technique stops training by raising `StopTraining`; one that holds state offers
`state_dict()` / `load_state_dict()` and is saved with the checkpoint. An optional
`check(recipe, model)` raises HonedError for impossible settings before the run folder exists.

What a technique does that others must know about is declared as class attributes (composer's
capability flags), read through `Hooks` or `capable`, never by asking a technique's name; see
`Technique`. Start events fire in recipe order, then the run-time callbacks; "after" events fire in
reverse, so paired hooks nest (A swaps in, B swaps in, B swaps out, A swaps out); a technique that
watches the result of the others' after-work (a recorder of weights, snapshot saving) is listed first,
and `on_after_loss` terms compose from the last technique to the first.

`on_fit_start` fires before the optimizer is built (and after a resume restored technique state),
so freezing techniques decide which parameters the optimizer starts with.
"""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError

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


class CancelFit(Exception):
    """Raised by a run-time callback to abandon the fit at once (fastai's CancelFitException): the
    loop does not catch it, so no final evaluation or model save follows; its caller catches it
    (e.g. the LR range test, which only wanted the losses along the way)."""


# Events that close what an earlier event opened: their handlers run in reverse order.
AFTER_EVENTS = frozenset({"on_after_forward", "on_after_loss", "on_after_optimizer_step", "on_evaluate_end",
                          "on_epoch_end", "on_fit_end"})


class Technique:
    """Optional base class: the capability flags a technique may declare (all off by default).

    changes_trainable      which parameters train changes during the run (DDP must allow unused ones)
    swaps_weights_for_eval evaluation runs on other weights than the live ones (EMA, SWA); two of
                           these cannot share a run, and their weights are not the ones a mask keeps sparse
    mixes_batches          batch rows are blended with each other (mixup, cutmix)
    augments_inputs        rows reach the model changed from how they are stored
    needs_row_index        reads `state.batch_index` to look rows up
    acts_on_head_only      works unchanged when only the head runs, on cached frozen features
    keeps_weights_sparse   holds pruning masks that averaged or refilled weights would undo

    `tasks` names the tasks a technique can train (None: any); a recipe of another task is refused
    before the run folder exists (distillation matches class probabilities: classification only).
    `uses` names run-time services the fit hands in before `check` (see Hooks.provide).
    """

    changes_trainable = False
    swaps_weights_for_eval = False
    mixes_batches = False
    augments_inputs = False
    needs_row_index = False
    acts_on_head_only = False
    keeps_weights_sparse = False
    tasks: tuple[str, ...] | None = None
    uses: tuple[str, ...] = ()


def capable(technique: Any, flag: str) -> bool:
    """Whether a technique (a Technique subclass or any duck-typed object) declares `flag`."""
    return bool(getattr(technique, flag, False))


class Hooks:
    """Calls each technique's and run-time callback's handler for an event.

    `techniques` come from the recipe and are saved with checkpoints; `callbacks` are run-time
    objects (a live Optuna trial, a tracker) fired the same way but never saved or serialised."""

    def __init__(self, techniques: list[Any], callbacks: list[Any] | None = None) -> None:
        self.techniques = list(techniques)
        self.callbacks = list(callbacks or ())
        everyone = self.techniques + self.callbacks
        self._table = {e: [getattr(t, e) for t in everyone if callable(getattr(t, e, None))] for e in EVENTS}
        for event in AFTER_EVENTS:
            self._table[event].reverse()

    @property
    def everyone(self) -> list[Any]:
        return self.techniques + self.callbacks

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

    def provide(self, **services: Any) -> None:
        """Hand run-time services from the layers above (e.g. the inference layer's `load_predictor`)
        to the techniques that declare them in `uses`; techniques never import those layers."""
        for technique in self.everyone:
            for name in getattr(technique, "uses", ()):
                if name in services:
                    setattr(technique, name, services[name])

    def check(self, recipe: Any, model: Any) -> None:
        for technique in self.everyone:
            tasks = getattr(technique, "tasks", None)
            if tasks is not None and recipe.task not in tasks:
                name = getattr(technique, "name", type(technique).__name__)
                raise HonedError(f"techniques: {name} trains {', '.join(tasks)} only, not task {recipe.task}; "
                                 "remove it from techniques")
            if callable(getattr(technique, "check", None)):
                technique.check(recipe, model)

    def any(self, flag: str) -> bool:
        return any(capable(t, flag) for t in self.everyone)

    @property
    def changes_trainable(self) -> bool:
        return self.any("changes_trainable")

    def state_dict(self) -> list[Any]:
        return [t.state_dict() if hasattr(t, "state_dict") else None for t in self.techniques]

    def load_state_dict(self, states: list[Any]) -> None:
        for technique, state in zip(self.techniques, states, strict=True):
            if state is not None and hasattr(technique, "load_state_dict"):
                technique.load_state_dict(state)
