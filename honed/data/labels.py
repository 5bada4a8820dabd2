"""The label map: what a model's outputs mean, saved with every model.

`LabelMap` is classification's (class names <-> integer ids); `TargetMap` is regression's (target names,
standardised with the training mean/std). Both answer the same contract, so callers never ask the task:
`len()` is the number of model outputs (the head's size), `has_labels`/`encode_frame` turn a standard
frame's labels into what the loss takes, `scale()` is what the task's metrics need, `class_counts` feeds
class-weighted losses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from honed.errors import HonedError

TARGET = "target:"  # standard-frame prefix of a regression target column
TARGETS_FILE = "targets.json"


@dataclass(frozen=True)
class LabelMap:
    names: tuple[str, ...]
    task: ClassVar[str] = "classification"
    noun: ClassVar[str] = "classes"

    @classmethod
    def from_labels(cls, labels: Iterable[str], order: list[str] | None = None) -> LabelMap:
        seen = set(labels)
        names = [n for n in order if n in seen] if order else sorted(seen)
        return cls(tuple(names))

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def encode(self, labels: Iterable[str]) -> list[int]:
        index = self.index
        return [index[label] for label in labels]

    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    def has_labels(self, frame: pd.DataFrame) -> bool:
        return "label" in frame

    def encode_frame(self, frame: pd.DataFrame) -> list[Any]:
        """Each row's class id (-1 when the frame is unlabelled)."""
        return self.encode(frame["label"]) if self.has_labels(frame) else [-1] * len(frame)

    def scale(self) -> dict[str, Any]:
        """Keyword arguments of the task's metrics (honed.metrics.TASKS) beyond outputs and labels."""
        return {}

    def class_counts(self, frame: pd.DataFrame) -> tuple[int, ...]:
        """Training rows per class in label order (class-weighted losses)."""
        return tuple(int(c) for c in frame["label"].value_counts().reindex(self.names).fillna(0))

    def save(self, folder: Path) -> None:
        (folder / "labels.json").write_text(json.dumps(list(self.names), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LabelMap:
        """The saved map: a TargetMap when targets.json is there (a regression model), else the classes."""
        if (folder / TARGETS_FILE).is_file():
            return TargetMap.read(folder)
        path = folder / "labels.json"
        if not path.is_file():
            raise HonedError(f"'{folder}' holds no labels.json; is it a model saved by honed?")
        return cls(tuple(json.loads(path.read_text(encoding="utf-8"))))


@dataclass(frozen=True)
class TargetMap(LabelMap):
    """The label map of a regression model: target names (one model output each) and their training
    mean/std. Rows are encoded standardised, outputs decoded back to the targets' units."""

    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    task: ClassVar[str] = "regression"
    noun: ClassVar[str] = "targets"

    @classmethod
    def fit(cls, train: pd.DataFrame, names: Sequence[str]) -> TargetMap:
        """Mean and std (population) of each target on the training rows; a constant target keeps std 1."""
        values = train[[TARGET + n for n in names]].to_numpy(dtype=np.float64)
        std = values.std(axis=0)
        return cls(tuple(names), tuple(float(m) for m in values.mean(axis=0)),
                   tuple(float(s) if s > 0 else 1.0 for s in std))

    def has_labels(self, frame: pd.DataFrame) -> bool:
        return all(TARGET + n in frame for n in self.names)

    def values(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, targets) float64 in the targets' units."""
        return frame[[TARGET + n for n in self.names]].to_numpy(dtype=np.float64)

    def encode_frame(self, frame: pd.DataFrame) -> list[Any]:
        """Each row's standardised targets as a float32 tensor (NaN when the frame has no targets)."""
        if not self.has_labels(frame):
            return [torch.full((len(self.names),), float("nan"))] * len(frame)
        scaled = torch.from_numpy(self.standardise(self.values(frame))).float()
        return list(scaled)

    def standardise(self, values: np.ndarray) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (standardised) in the targets' own units."""
        values = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
        return values * np.asarray(self.std) + np.asarray(self.mean)

    def scale(self) -> dict[str, Any]:
        return {"names": self.names, "mean": self.mean, "std": self.std}

    def class_counts(self, frame: pd.DataFrame) -> tuple[int, ...]:
        return ()

    def save(self, folder: Path) -> None:
        super().save(folder)
        meta = {"task": self.task, "names": list(self.names), "mean": list(self.mean), "std": list(self.std)}
        (folder / TARGETS_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> TargetMap:
        path = folder / TARGETS_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            mapped = cls(tuple(meta["names"]), tuple(map(float, meta["mean"])), tuple(map(float, meta["std"])))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise HonedError(f"model '{folder}': {TARGETS_FILE} is damaged ({type(exc).__name__}); "
                             "retrain or restore it") from exc
        if not (len(mapped.names) == len(mapped.mean) == len(mapped.std)) or not all(map(math.isfinite, mapped.std)):
            raise HonedError(f"model '{folder}': {TARGETS_FILE} does not hold one mean and std per target; "
                             "retrain or restore it")
        return mapped
