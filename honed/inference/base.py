"""The Predictor contract and the registry of saved kinds that `load_predictor` chooses from.

A Predictor is anything saved that turns a standard frame (column x, optional x2, optional label)
into class probabilities: one fine-tuned model, an ensemble of them, and later any new saved kind.
Callers (predict, evaluate, reports, ensemble members, distillation, pruning) hold a Predictor and
never ask which kind of folder it came from. A new saved kind is one class that says whether it
claims a folder and how to load it, plus one `SAVED_KINDS.register` line (honed/inference/__init__.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.recipe import Recipe
from honed.registry import Registry


class Predictor(ABC):
    """Class probabilities for a standard frame; `labels` names the columns of `predict_proba`."""

    labels: tuple[str, ...]
    recipe: Recipe  # the saved recipe: how inputs are read and prepared
    folder: Path | None = None
    task: str = "classification"
    priority = 0  # when several kinds claim a folder, the highest wins (an ensemble folder may hold a model/ too)

    @classmethod
    def claims(cls, folder: Path) -> bool:
        """Whether `folder` holds this kind (by its marker file); a kind that is never saved claims nothing."""
        return False

    @classmethod
    def load(cls, folder: Path, overrides: dict[str, Any] | None = None) -> Predictor:
        """The predictor saved in a folder this kind claims; `overrides` go to its saved recipe."""
        raise NotImplementedError(f"{cls.__name__} is not loaded from a folder")

    @abstractmethod
    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities in `labels` order, computed in batches."""

    def predict_values(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, targets) predicted values in the targets' own units (`labels` names the targets): what a
        regression predictor (task "regression") gives instead of probabilities."""
        raise HonedError(f"'{self.describe()}' is a {self.task} model: it predicts classes, not values")

    def predict(self, frame: pd.DataFrame) -> list[str]:
        """The most probable label per row (multi-label: each row's predicted set, joined)."""
        return self.decision_map().decide(self.predict_proba(frame))

    def decision_map(self) -> LabelMap:
        """The label map that turns this predictor's probabilities into predictions (a multi-label model's
        holds its tuned thresholds); a predictor without one decides by its class names."""
        saved = getattr(self, "label_map", None)
        return saved if isinstance(saved, LabelMap) else LabelMap(tuple(self.labels))

    def proba_in(self, frame: pd.DataFrame, order: tuple[str, ...]) -> np.ndarray:
        """predict_proba with its columns in `order` (another predictor's label order)."""
        probs = self.predict_proba(frame)
        if tuple(order) == self.labels:
            return probs
        return probs[:, [self.labels.index(name) for name in order]]

    def saved_temperature(self) -> float | None:
        """The calibration temperature saved with the predictor, None when it has none."""
        return None

    def require_temperature(self) -> float:
        """The saved temperature for `--calibrated`, or a one-line error saying why there is none."""
        raise HonedError(f"--calibrated: '{self.folder}' has no saved temperature; drop --calibrated")

    def describe(self) -> str:
        """A short name for titles (the folder it was loaded from)."""
        return str(self.folder)

    def reads_like(self, preprocess: Any) -> bool:
        """Whether collated batches made by another model's `preprocess` (tokenizer or image statistics)
        can be fed to this predictor as they are; kinds that cannot score batches say no."""
        return False

    def batch_proba(self, batch: dict[str, Any]) -> Any:
        """Probabilities for one collated batch of tensors (distillation scores augmented rows live);
        only kinds that run one model on tensors can, the others refuse in one line."""
        raise HonedError(
            f"'{self.describe()}' ({type(self).__name__}) cannot score collated batches; use a single saved model"
        )


SAVED_KINDS: Registry[Predictor] = Registry("saved predictor kind")


def load_predictor(folder: str | Path, overrides: dict[str, Any] | None = None, field: str | None = None) -> Predictor:
    """The predictor saved in `folder` (a model folder, a run folder or an ensemble folder): the
    registered kind that claims it loads it; none claiming it is a one-line error (prefixed by `field`)."""
    folder = Path(folder)
    claiming = [SAVED_KINDS.get(name) for name in SAVED_KINDS.names() if SAVED_KINDS.get(name).claims(folder)]
    if claiming:
        kind: Any = max(claiming, key=lambda k: k.priority)  # max keeps the first of equals: registry name order
        return kind.load(folder, overrides)
    where = f"{field}: " if field else ""
    if not folder.exists():
        raise HonedError(f"{where}model folder '{folder}' not found; train it first or fix the path")
    raise HonedError(
        f"{where}'{folder}' is not a model folder saved by honed (no honed.json, ensemble.json "
        "or export.json); use RUN_DIR/model, an ensemble folder or an exported folder"
    )
