"""Scores from logits shared by training, inference and reports: loss, accuracy, macro-F1.

A bottom-layer module (no honed imports) so the training loop can score val without importing
the evaluate layer above it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    logits = logits.float()
    predicted = logits.argmax(dim=-1)
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((predicted == labels).float().mean()),
        "macro_f1": float(f1_score(labels.numpy(), predicted.numpy(), average="macro", zero_division=0)),
    }


def improved(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def probability_log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-12)."""
    return -float(np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def probability_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of (rows, classes) probabilities against class indices, in float64
    (ensembles combine probabilities, not logits)."""
    predicted = probs.argmax(axis=1)
    return {"accuracy": float(np.mean(predicted == labels)),
            "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0))}
