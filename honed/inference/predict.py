"""`honed predict`: a saved model's or ensemble's predicted label and class probabilities (a regression
model's values; a multi-label model's label set and per-label probabilities)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from honed.inference.base import Predictor, load_predictor
from honed.inference.calibration import scale_probs
from honed.inference.frames import input_chunks, output_frame, unlabelled_frame, values_frame


def _class_rows(predictor: Predictor, frame: pd.DataFrame, temperature: float | None) -> pd.DataFrame:
    """Predicted label and one probability column per class (temperature-scaled when given)."""
    probs = predictor.predict_proba(frame)
    if temperature is not None:
        probs = scale_probs(probs, temperature)
    return output_frame(frame, predictor.labels, probs)


def _value_rows(predictor: Predictor, frame: pd.DataFrame, temperature: float | None) -> pd.DataFrame:
    """Predicted values per target (regression has no temperature: `--calibrated` fails before this)."""
    return values_frame(frame, predictor.labels, predictor.predict_values(frame))


def _label_set_rows(predictor: Predictor, frame: pd.DataFrame, temperature: float | None) -> pd.DataFrame:
    """The predicted label set (labels at or above their saved thresholds, joined by data.label_delimiter)
    and one probability column per label (multi-label saves no temperature: `--calibrated` fails before)."""
    probs = predictor.predict_proba(frame)
    out = output_frame(frame, predictor.labels, probs)
    out["predicted"] = predictor.decision_map().decide(probs)
    return out


# What `honed predict` writes for each task's predictor.
PREDICTED_ROWS = {"classification": _class_rows, "regression": _value_rows, "multilabel": _label_set_rows}


def predict_frame(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                  calibrated: bool = False) -> pd.DataFrame:
    """Predicted label and per-class probabilities for every row of `source`; `overrides` go to the
    saved recipe (e.g. {"augment.tta": 4}); `calibrated` applies the temperature saved with the
    model (model/calibration.json)."""
    predictor = load_predictor(model_dir, overrides)
    temperature = predictor.require_temperature() if calibrated else None
    return PREDICTED_ROWS[predictor.task](predictor, unlabelled_frame(source, predictor.recipe), temperature)


STREAM_ROWS = 10_000  # rows per chunk when streaming a table: memory is bounded by this, not the file


def predict_chunks(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                   calibrated: bool = False, rows: int = STREAM_ROWS) -> Iterator[pd.DataFrame]:
    """predict_frame's table in chunks of `rows` input rows, reading a table file as it goes (`honed
    predict` writes each chunk before reading the next), so peak memory does not grow with the file.
    With augment.tta the augmented views restart their random stream per chunk."""
    predictor = load_predictor(model_dir, overrides)
    temperature = predictor.require_temperature() if calibrated else None
    for frame in input_chunks(source, predictor.recipe, rows):
        yield PREDICTED_ROWS[predictor.task](predictor, frame, temperature)
