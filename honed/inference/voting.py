"""Voting: average the members' class probabilities (soft) or count their predicted classes (hard); for
regression, the weighted mean (mean) or the median (median) of their predicted values.

Inputs are stacked member probabilities of shape (members, rows, classes), every member's columns
in the same class order. Both return probabilities, so hard voting still has a predict_proba: the
weighted share of votes per class (ties broken by the soft average, not by class order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from honed.errors import HonedError


def normalised_weights(weights: Sequence[float] | None, members: int) -> np.ndarray:
    """Weights summing to one; None means equal weights."""
    if weights is None:
        return np.full(members, 1.0 / members)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (members,):
        raise HonedError(f"ensemble.weights: {len(w)} weights given for {members} members; give one per member")
    if (w < 0).any() or w.sum() <= 0:
        raise HonedError("ensemble.weights: weights must be >= 0 with a positive sum")
    return w / w.sum()


def soft_vote(probs: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of the members' probabilities, (rows, classes)."""
    w = normalised_weights(weights, probs.shape[0])
    return np.tensordot(w, probs, axes=1)


def hard_vote(probs: np.ndarray, weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted share of member votes per class, (rows, classes); a tie goes to the class with the
    higher soft average."""
    w = normalised_weights(weights, probs.shape[0])
    members, rows, classes = probs.shape
    votes = np.zeros((rows, classes))
    picks = probs.argmax(axis=2)
    for m in range(members):
        votes[np.arange(rows), picks[m]] += w[m]
    soft = np.tensordot(w, probs, axes=1)
    winner = (votes + 1e-9 * soft).argmax(axis=1)  # tie-break only
    shares = votes.copy()
    shares[np.arange(rows), winner] += 1e-9  # keep argmax(shares) == winner
    return shares / shares.sum(axis=1, keepdims=True)


def median_vote(values: np.ndarray) -> np.ndarray:
    """The members' median per row and target, (rows, targets): regression's vote, robust to one member
    far off (unweighted: a weighted median has no single accepted definition)."""
    return np.median(values, axis=0)
