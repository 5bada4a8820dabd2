"""What an ensemble combines from each member, per task: class probabilities (classification), one sigmoid
probability per label (multilabel) or predicted values in the targets' units (regression), always with the
columns in the ensemble's order. `honed ensemble` (its members) and a saved ensemble folder read members
through `outputs_in`, so neither asks which task it is combining."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from honed.inference.base import Predictor


def _values_in(predictor: Predictor, frame: pd.DataFrame, order: tuple[str, ...]) -> np.ndarray:
    """predict_values with its columns in `order` (target names)."""
    values = predictor.predict_values(frame)
    names = tuple(predictor.labels)
    return values if tuple(order) == names else values[:, [names.index(name) for name in order]]


@dataclass(frozen=True)
class TaskOutputs:
    """How a member's outputs are read for one task, and whether they are probabilities (what predict_proba
    returns) or values (what predict_values returns)."""

    read: Callable[[Predictor, pd.DataFrame, tuple[str, ...]], np.ndarray]
    probabilities: bool


TASK_OUTPUTS: dict[str, TaskOutputs] = {
    "classification": TaskOutputs(lambda p, frame, order: p.proba_in(frame, order), True),
    "multilabel": TaskOutputs(lambda p, frame, order: p.proba_in(frame, order), True),
    "regression": TaskOutputs(_values_in, False),
}


def outputs_in(predictor: Predictor, frame: pd.DataFrame, order: tuple[str, ...], task: str) -> np.ndarray:
    """(rows, columns) outputs of `predictor` as an ensemble of `task` combines them, columns in `order`."""
    return TASK_OUTPUTS[task].read(predictor, frame, tuple(order))
