"""Snapshot ensembles (Huang et al. 2017): save the model at the end of each cosine cycle.

With `schedule: {name: cosine, cycles: C}` the learning rate restarts C times; each cycle ends in
a different low-loss minimum, and the models saved there (RUN_DIR/snapshots/cycle1..C, each a normal
model folder) make an ensemble for the price of one run (`ensemble: {snapshots: {cycles: C}}`).
"""

from __future__ import annotations

from typing import Any

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.techniques import TECHNIQUES
from honed.train.events import Technique
from honed.train.schedules import warmup_steps


class Snapshots(Technique):
    """Saves RUN_DIR/snapshots/cycle{i} after the last optimizer step of cycle i."""

    tasks = ("classification", "regression")  # saved with the run's label map (a regression one: its targets'
    # mean/std); a multi-label map's thresholds are only tuned after training, so a snapshot would have none

    def __init__(self, cycles: int = 3) -> None:
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
            raise ValueError(f"cycles must be an integer >= 1, got {cycles!r}")
        self.cycles = cycles

    def check(self, recipe: Any, model: Any) -> None:
        extra = recipe.schedule.model_extra or {}
        if recipe.schedule.name != "cosine" or int(extra.get("cycles", 1)) != self.cycles:
            raise HonedError(
                f"techniques: snapshots with cycles={self.cycles} needs schedule.name=cosine and "
                f"schedule.cycles={self.cycles}, so each snapshot ends a cycle"
            )

    def ends(self, total: int, warmup: int) -> list[int]:
        """Optimizer steps after which each cycle is complete (cycles span the steps after warmup,
        as in honed.train.schedules.cosine)."""
        span = total - warmup
        return [warmup + -(-span * i // self.cycles) for i in range(1, self.cycles + 1)]

    def on_after_optimizer_step(self, state: Any) -> None:
        spec = state.recipe.schedule
        ends = self.ends(state.total_steps, warmup_steps(state.total_steps, spec.warmup_ratio, spec.warmup_steps))
        if state.step in ends:
            self.save(state, ends.index(state.step) + 1)

    def save(self, state: Any, cycle: int) -> None:
        from honed.models.build import save_model

        acc = state.accelerator
        if acc.is_main_process:
            model = acc.unwrap_model(state.model)
            save_model(
                model,
                state.label_map if state.label_map is not None else LabelMap(tuple(state.labels)),
                state.run_dir / "snapshots" / f"cycle{cycle}",
                state.recipe.to_yaml(),
            )
        acc.wait_for_everyone()


TECHNIQUES.register("snapshots")(Snapshots)
