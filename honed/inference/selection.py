"""Ensemble selection (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004).

Greedy forward selection with replacement from a pool of members on validation data: start from
the best single member, then for `rounds` steps add the member (possibly one already chosen) whose
addition gives the best validation score of the averaged outputs. A member's weight is how often it
was picked, so a large pool yields a small, weighted average; with replacement the score cannot get
worse by more than one step's noise and the selection does not overfit the way free weight
optimisation does.

The outputs averaged are class probabilities, per-label probabilities or predicted values; the
metric (SELECTION_METRICS) says which, by the tasks it declares: accuracy and log_loss score classes,
rmse and mae values (both minimised), map and bce label sets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from honed.metrics import probability_bce, probability_log_loss


@dataclass(frozen=True)
class SelectionMetric:
    """A score of averaged outputs against the truth as (primary, tie-break), larger is better, and the
    tasks whose outputs it reads."""

    score: Callable[[np.ndarray, np.ndarray], tuple[float, float]]
    tasks: tuple[str, ...]


def _accuracy(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float(np.mean(probs.argmax(axis=1) == y)), -probability_log_loss(probs, y)


def _rmse(values: np.ndarray, y: np.ndarray) -> float:
    """RMSE per target, averaged over the targets (as honed.metrics.regression_metrics averages them)."""
    return float(np.mean(np.sqrt(np.mean((values - y) ** 2, axis=0))))


def _mae(values: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(values - y)))


def _mean_ap(probs: np.ndarray, y: np.ndarray) -> float:
    """mAP: average precision per label with a positive row, averaged (as honed.metrics.label_set_metrics)."""
    from sklearn.metrics import average_precision_score

    true = np.asarray(y) > 0.5
    aps = [average_precision_score(true[:, j], probs[:, j]) for j in range(true.shape[1]) if true[:, j].any()]
    return float(np.mean(aps)) if aps else 0.0


SELECTION_METRICS: dict[str, SelectionMetric] = {
    "accuracy": SelectionMetric(_accuracy, ("classification",)),
    "log_loss": SelectionMetric(lambda p, y: (-probability_log_loss(p, y), 0.0), ("classification",)),
    "rmse": SelectionMetric(lambda v, y: (-_rmse(v, y), -_mae(v, y)), ("regression",)),
    "mae": SelectionMetric(lambda v, y: (-_mae(v, y), -_rmse(v, y)), ("regression",)),
    "map": SelectionMetric(lambda p, y: (_mean_ap(p, y), -probability_bce(p, y)), ("multilabel",)),
    "bce": SelectionMetric(lambda p, y: (-probability_bce(p, y), 0.0), ("multilabel",)),
}


def score(probs: np.ndarray, y: np.ndarray, metric: str) -> tuple[float, float]:
    """(primary, tie-break), larger is better: e.g. accuracy then -log-loss, or -log-loss alone."""
    return SELECTION_METRICS[metric].score(probs, y)


def greedy_selection(probs: np.ndarray, y: np.ndarray, rounds: int = 20, metric: str = "accuracy") -> np.ndarray:
    """Weights (members,) summing to one, from member outputs `probs` (members, rows, columns) and the
    truth `y` (class indices, target values or multi-hot rows, as `metric` reads them)."""
    members = probs.shape[0]
    counts = np.zeros(members)
    first = max(range(members), key=lambda m: score(probs[m], y, metric))
    counts[first] = 1
    total = probs[first].copy()
    for _ in range(rounds - 1):
        n = counts.sum()
        best = max(range(members), key=lambda m: score((total + probs[m]) / (n + 1), y, metric))
        counts[best] += 1
        total += probs[best]
    return counts / counts.sum()
