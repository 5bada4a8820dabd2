"""Everything the loop and the techniques share while training."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from honed.recipe import Recipe


@dataclass
class TrainState:
    recipe: Recipe
    run_dir: Path
    model: torch.nn.Module
    optimizer: Any  # AcceleratedOptimizer; None until on_fit_start has decided what trains
    accelerator: Any
    total_steps: int
    steps_per_epoch: int
    labels: tuple[str, ...] = ()
    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    lr: float = 0.0
    batch: dict[str, torch.Tensor] | None = None
    batch_index: torch.Tensor | None = (
        None  # the batch rows' positions in frames["train"] (techniques look rows up by it)
    )
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    epoch_record: dict[str, Any] = field(default_factory=dict)  # the last epoch's line of metrics.jsonl
    best_value: float | None = None
    best_epoch: int | None = None
    samples_seen: int = 0
    train_seconds: float = 0.0
    bad_steps: int = 0  # optimizer steps dropped for non-finite gradients (train.max_bad_steps bounds them)
    scaler_skips: int = 0  # fp16: steps the grad scaler skipped on overflow
    stop_reason: str = ""
    train_loader: Any = None  # for techniques that need another pass (SWA's batch-norm statistics)
    class_counts: tuple[int, ...] = ()
    frames: dict[str, Any] | None = None  # the standard frames per split (distillation looks up its teacher's rows)
    scale: dict[str, Any] = field(default_factory=dict)  # the task's metrics' extra arguments (regression: mean/std)
    label_map: Any = None  # the run's LabelMap (a regression one holds the targets' mean/std), for models saved mid-run

    def progress(self) -> dict[str, Any]:
        """The scalars a checkpoint needs to continue exactly here."""
        keys = (
            "epoch",
            "step",
            "batch_in_epoch",
            "best_value",
            "best_epoch",
            "samples_seen",
            "train_seconds",
            "bad_steps",
            "scaler_skips",
        )
        return {k: getattr(self, k) for k in keys}

    def restore(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            setattr(self, key, value)
