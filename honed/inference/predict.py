"""`honed predict`: a saved model's or ensemble's predicted label and class probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from honed.inference.base import load_predictor
from honed.inference.calibration import scale_probs
from honed.inference.frames import output_frame, unlabelled_frame


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
