"""Bagging (Breiman 1996): members trained on bootstrap samples (or random subsets) of the
training rows, combined by voting; rows a member never saw give the out-of-bag estimate for free
(accuracy for classes; a regression or multi-label ensemble scores its averaged out-of-bag outputs
with its own metrics, honed/ensemble/tasks.py)."""

from __future__ import annotations

import numpy as np


def bag_rows(
    rows: int, members: int, bootstrap: bool, max_samples: float, seed: int, labels: np.ndarray | None = None
) -> list[np.ndarray]:
    """Per member, the training row positions it trains on (with replacement when `bootstrap`); with
    `labels`, drawn per class (stratified), so every member sees every class and shares the label set."""
    rng = np.random.default_rng(seed)
    if labels is None:
        size = max(2, round(rows * max_samples))
        return [np.sort(rng.choice(rows, size=size, replace=bootstrap)) for _ in range(members)]
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return [
        np.sort(
            np.concatenate([rng.choice(g, size=max(1, round(len(g) * max_samples)), replace=bootstrap) for g in groups])
        )
        for _ in range(members)
    ]


def out_of_bag(bags: list[np.ndarray], rows: int) -> list[np.ndarray]:
    """Per member, the training row positions it did not see."""
    return [np.setdiff1d(np.arange(rows), bag) for bag in bags]


def oob_average(
    oob_outputs: list[tuple[np.ndarray, np.ndarray]], rows: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """The out-of-bag outputs averaged per row, (rows, width), from (positions, outputs) per member, and
    which rows some member left out (the others stay 0 and are not to be scored)."""
    total, counts = np.zeros((rows, width)), np.zeros(rows)
    for positions, outputs in oob_outputs:
        total[positions] += outputs
        counts[positions] += 1
    seen = counts > 0
    total[seen] /= counts[seen, None]
    return total, seen


def oob_estimate(oob_probs: list[tuple[np.ndarray, np.ndarray]], y: np.ndarray, classes: int) -> dict[str, float]:
    """Accuracy of the averaged out-of-bag probabilities: (positions, probs) per member; rows left
    out by no member are not counted."""
    mean, seen = oob_average(oob_probs, len(y), classes)
    if not seen.any():
        return {"oob_accuracy": float("nan"), "oob_rows": 0}
    accuracy = float(np.mean(mean[seen].argmax(axis=1) == y[seen]))
    return {"oob_accuracy": accuracy, "oob_rows": int(seen.sum())}
