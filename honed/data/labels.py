"""The label map: what a model's outputs mean, saved with every model.

`LabelMap` is classification's (class names <-> integer ids); `TargetMap` is regression's (target names,
standardised with the training mean/std); `MultiLabelMap` is multi-label's (label names, one sigmoid output
and one decision threshold each). All answer the same contract, so callers never ask the task: `len()` is
the number of model outputs (the head's size), `has_labels`/`encode_frame` turn a standard frame's labels
into what the loss takes, `scale()` is what the task's metrics need, `class_counts` feeds class-weighted
losses, `probabilities` turns logits into what a Predictor returns, and `tuned_on_val` is what the map
learns from the trained model's val outputs (multi-label: its thresholds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from honed.errors import HonedError
from honed.rundir import LOG

TARGET = "target:"  # standard-frame prefix of a regression target column
TARGETS_FILE = "targets.json"
LABELS = "labels"  # standard-frame column of a multi-label row's label set (a tuple of names, maybe empty)
THRESHOLDS_FILE = "thresholds.json"


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

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """What a Predictor returns for these logits: class probabilities (softmax)."""
        return torch.softmax(logits, dim=-1)

    def logits_of(self, probs: torch.Tensor) -> torch.Tensor:
        """Logits whose `probabilities` are `probs` (test-time augmentation averages probabilities)."""
        return torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny))

    def decide(self, probs: np.ndarray) -> list[str]:
        """Each row's prediction from its probabilities: the most probable class."""
        return [self.names[i] for i in np.asarray(probs).argmax(axis=1)]

    def tuned_on_val(self, outputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> LabelMap:
        """The map after training, given the final (logits, labels) per split: a class map learns nothing."""
        return self

    def save(self, folder: Path) -> None:
        (folder / "labels.json").write_text(json.dumps(list(self.names), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> LabelMap:
        """The saved map: a TargetMap when targets.json is there (a regression model), a MultiLabelMap when
        thresholds.json is (a multi-label model), else the classes."""
        for name, kind in SAVED_MAPS.items():
            if (folder / name).is_file():
                return kind.read(folder)
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


@dataclass(frozen=True)
class MultiLabelMap(LabelMap):
    """The label map of a multi-label model: label names (one sigmoid output each), each label's decision
    threshold (0.5 until tuned on val after training) and the delimiter a predicted set is joined with."""

    thresholds: tuple[float, ...] = ()
    delimiter: str = "|"
    tuned_on: str = ""  # where the thresholds came from ("val, N rows"); empty: the default 0.5
    task: ClassVar[str] = "multilabel"
    noun: ClassVar[str] = "labels"

    def __post_init__(self) -> None:
        if not self.thresholds:
            object.__setattr__(self, "thresholds", (0.5,) * len(self.names))

    def has_labels(self, frame: pd.DataFrame) -> bool:
        return LABELS in frame

    def multi_hot(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, labels) float32: 1 where the row's set holds the label."""
        index, out = self.index, np.zeros((len(frame), len(self.names)), dtype=np.float32)
        for i, labels in enumerate(frame[LABELS]):
            out[i, [index[label] for label in labels]] = 1.0
        return out

    def encode_frame(self, frame: pd.DataFrame) -> list[Any]:
        """Each row's multi-hot float32 vector (NaN when the frame is unlabelled)."""
        if not self.has_labels(frame):
            return [torch.full((len(self.names),), float("nan"))] * len(frame)
        return list(torch.from_numpy(self.multi_hot(frame)))

    def scale(self) -> dict[str, Any]:
        return {"names": self.names, "thresholds": self.thresholds}

    def class_counts(self, frame: pd.DataFrame) -> tuple[int, ...]:
        """Training rows holding each label (positives per label), in label order."""
        return tuple(int(c) for c in self.multi_hot(frame).sum(axis=0))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def logits_of(self, probs: torch.Tensor) -> torch.Tensor:
        eps = torch.finfo(torch.float32).eps
        return torch.logit(probs.clamp(eps, 1 - eps))

    def decide(self, probs: np.ndarray) -> list[str]:
        """Each row's labels at or above their thresholds, joined with the delimiter ('' for none)."""
        chosen = np.asarray(probs) >= np.asarray(self.thresholds)
        return [self.delimiter.join(n for n, on in zip(self.names, row) if on) for row in chosen]

    def tuned_on_val(self, outputs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> MultiLabelMap:
        """Each label's threshold maximising its F1 on the val outputs (0.5 where val has no positive)."""
        from honed.metrics import best_thresholds

        if "val" not in outputs or not len(outputs["val"][1]):
            return self
        logits, targets = outputs["val"]
        tuned = best_thresholds(torch.sigmoid(logits.double()).numpy(), targets.numpy())
        LOG.info("decision thresholds tuned on val (%d rows): %s", len(targets),
                 ", ".join(f"{name} {t:.2f}" for name, t in zip(self.names, tuned)))
        return replace(self, thresholds=tuned, tuned_on=f"val, {len(targets)} rows")

    def save(self, folder: Path) -> None:
        super().save(folder)
        meta = {"task": self.task, "names": list(self.names), "thresholds": list(self.thresholds),
                "delimiter": self.delimiter, "tuned_on": self.tuned_on or None}  # None: the default 0.5
        (folder / THRESHOLDS_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> MultiLabelMap:
        path = folder / THRESHOLDS_FILE
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
            mapped = cls(tuple(map(str, meta["names"])), tuple(map(float, meta["thresholds"])),
                         str(meta.get("delimiter", "|")), str(meta.get("tuned_on") or ""))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise HonedError(f"model '{folder}': {THRESHOLDS_FILE} is damaged ({type(exc).__name__}); "
                             "retrain or restore it") from exc
        if len(mapped.thresholds) != len(mapped.names) or not all(0.0 < t < 1.0 for t in mapped.thresholds):
            raise HonedError(f"model '{folder}': {THRESHOLDS_FILE} must hold one threshold in (0, 1) per label; "
                             "fix or restore it")
        return mapped


# The label map a saved model folder holds, by the file that marks it (else the classes of labels.json).
SAVED_MAPS: dict[str, Any] = {TARGETS_FILE: TargetMap, THRESHOLDS_FILE: MultiLabelMap}
