"""Reading the temperature saved beside a model (calibration.json, written by the evaluate layer's
temperature scaling), so a predictor can apply it without importing the layer above."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from honed.errors import HonedError

CALIBRATION_FILE = "calibration.json"


def load_temperature(model_dir: str | Path) -> float:
    """The saved temperature, or a one-line error when the model was saved without calibration."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        raise HonedError(
            f"--calibrated: model '{model_dir}' was saved without calibration (no {CALIBRATION_FILE}); "
            "train it with report.calibrate=true and a validation split, or drop --calibrated"
        )
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise HonedError(f"--calibrated: '{path}' is not a valid calibration file; retrain or remove it") from exc


def saved_temperature(model_dir: str | Path) -> float | None:
    """The saved temperature, or None when the model has none."""
    return load_temperature(model_dir) if (Path(model_dir) / CALIBRATION_FILE).is_file() else None


def scale_probs(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(probs) / T): temperature scaling of probabilities (equal to softmax(logits / T))."""
    scaled = np.log(np.clip(probs, 1e-300, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    out = np.exp(scaled)
    return out / out.sum(axis=1, keepdims=True)
