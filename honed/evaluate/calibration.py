"""Calibration: expected calibration error, reliability bins and temperature scaling.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar T > 0 fitted by minimising
the negative log-likelihood of the validation logits. It never changes which class is predicted
(accuracy is unchanged), only how confident the probabilities are. The fitted T is saved beside the
model as `calibration.json`; `honed predict --calibrated` applies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from honed.errors import HonedError
from honed.inference.calibration import CALIBRATION_FILE, load_temperature

__all__ = [
    "CALIBRATION_FILE",
    "apply_temperature",
    "calibration_summary",
    "fit_temperature",
    "load_temperature",
    "save_calibration",
]

BINS = 15


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = BINS) -> list[dict[str, float]]:
    """Equal-width confidence bins: each bin's mean confidence, accuracy and row count."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        out.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[mask].mean()) if count else None,
                "accuracy": float(correct[mask].mean()) if count else None,
            }
        )
    return out


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = BINS) -> float:
    """ECE: the row-weighted mean gap between confidence and accuracy over equal-width bins."""
    total = len(y_true)
    if total == 0:
        return float("nan")
    return float(
        sum(
            b["count"] / total * abs(b["confidence"] - b["accuracy"])
            for b in reliability_bins(probs, y_true, bins)
            if b["count"]
        )
    )


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    return float(
        F.cross_entropy(
            torch.as_tensor(logits, dtype=torch.float64) / temperature, torch.as_tensor(y_true, dtype=torch.long)
        )
    )


def fit_temperature(logits: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, max_iter: int = 100) -> float:
    """The T > 0 minimising NLL(softmax(logits / T), labels): LBFGS on log T (so T stays positive)."""
    logits = torch.as_tensor(logits, dtype=torch.float64)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0:
        raise HonedError("calibration: no validation rows to fit a temperature on; give data.val or data.split.val > 0")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return float(np.clip(temperature, 1e-2, 1e2))


def apply_temperature(logits: np.ndarray | torch.Tensor, temperature: float) -> torch.Tensor:
    """Calibrated probabilities softmax(logits / T)."""
    return torch.softmax(torch.as_tensor(logits).float() / temperature, dim=-1)


def calibration_summary(logits: np.ndarray, y_true: np.ndarray, temperature: float | None) -> dict[str, Any]:
    """ECE, NLL and reliability bins of `logits` before and (given T) after temperature scaling."""
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float64), dim=-1).numpy()
    out: dict[str, Any] = {
        "bins": BINS,
        "ece": expected_calibration_error(probs, y_true),
        "nll": nll(logits, y_true),
        "reliability": reliability_bins(probs, y_true),
        "temperature": temperature,
    }
    if temperature is not None:
        scaled = apply_temperature(torch.as_tensor(logits, dtype=torch.float64), temperature).numpy()
        out.update(
            ece_calibrated=expected_calibration_error(scaled, y_true),
            nll_calibrated=nll(logits, y_true, temperature),
            reliability_calibrated=reliability_bins(scaled, y_true),
        )
    return out


def save_calibration(model_dir: str | Path, temperature: float, fitted_on: str, rows: int) -> Path:
    path = Path(model_dir) / CALIBRATION_FILE
    path.write_text(
        json.dumps(
            {"method": "temperature", "temperature": temperature, "fitted_on": fitted_on, "rows": rows}, indent=1
        ),
        encoding="utf-8",
    )
    return path
