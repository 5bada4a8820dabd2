"""`honed predict`: a saved model's or ensemble's predicted label and class probabilities."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from honed.inference.base import load_predictor
from honed.inference.calibration import scale_probs
from honed.inference.frames import input_chunks, output_frame, unlabelled_frame


def predict_frame(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                  calibrated: bool = False) -> pd.DataFrame:
    """Predicted label and per-class probabilities for every row of `source`; `overrides` go to the
    saved recipe (e.g. {"augment.tta": 4}); `calibrated` applies the temperature saved with the
    model (model/calibration.json)."""
    predictor = load_predictor(model_dir, overrides)
    temperature = predictor.require_temperature() if calibrated else None
    frame = unlabelled_frame(source, predictor.recipe)
    probs = predictor.predict_proba(frame)
    if temperature is not None:
        probs = scale_probs(probs, temperature)
    return output_frame(frame, predictor.labels, probs)


STREAM_ROWS = 10_000  # rows per chunk when streaming a table: memory is bounded by this, not the file


def predict_chunks(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                   calibrated: bool = False, rows: int = STREAM_ROWS) -> Iterator[pd.DataFrame]:
    """predict_frame's table in chunks of `rows` input rows, reading a table file as it goes (`honed
    predict` writes each chunk before reading the next), so peak memory does not grow with the file.
    With augment.tta the augmented views restart their random stream per chunk."""
    predictor = load_predictor(model_dir, overrides)
    temperature = predictor.require_temperature() if calibrated else None
    for frame in input_chunks(source, predictor.recipe, rows):
        probs = predictor.predict_proba(frame)
        if temperature is not None:
            probs = scale_probs(probs, temperature)
        yield output_frame(frame, predictor.labels, probs)
