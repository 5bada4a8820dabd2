"""Ensemble selection (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004).

Greedy forward selection with replacement from a pool of members on validation data: start from
the best single member, then for `rounds` steps add the member (possibly one already chosen) whose
addition gives the best validation score of the averaged probabilities. A member's weight is how
often it was picked, so a large pool yields a small, weighted soft vote; with replacement the score
cannot get worse by more than one step's noise and the selection does not overfit the way free
weight optimisation does.
"""

from __future__ import annotations

import numpy as np

from honed.metrics import probability_log_loss


def score(probs: np.ndarray, y: np.ndarray, metric: str) -> tuple[float, float]:
    """(primary, tie-break), larger is better: accuracy then -log-loss, or -log-loss alone."""
    nll = probability_log_loss(probs, y)
    if metric == "log_loss":
        return -nll, 0.0
    return float(np.mean(probs.argmax(axis=1) == y)), -nll


def greedy_selection(probs: np.ndarray, y: np.ndarray, rounds: int = 20, metric: str = "accuracy") -> np.ndarray:
    """Weights (members,) summing to one, from `probs` (members, rows, classes) and true classes `y`."""
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
