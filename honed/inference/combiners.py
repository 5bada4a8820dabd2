"""Ensemble combiners: how members' probabilities (members, rows, classes) become the ensemble's
(rows, classes). One registry, named by rule, used by `honed ensemble`, `EnsembleClassifier` and
the saved ensemble folder alike:

    soft       weighted mean of the probabilities
    hard       weighted share of the members' votes
    selection  a soft vote whose weights are fitted by greedy ensemble selection on held-out rows
    stacking   a scikit-learn meta-learner applied to the members' probabilities side by side

`fit(probs, y)` learns from held-out member probabilities what the rule needs (selection's
weights, stacking's meta-learner); `rule` is the name the saved folder records (selection saves as
soft), so `COMBINERS.build(rule, weights=..., meta=...)` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from honed.inference.selection import greedy_selection
from honed.inference.voting import hard_vote, normalised_weights, soft_vote
from honed.registry import Registry


def features(probs: np.ndarray) -> np.ndarray:
    """Meta-learner inputs from (members, rows, classes): each member's probabilities side by side."""
    return np.concatenate(list(probs), axis=1)


def meta_probs(meta: Any, probs: np.ndarray, classes: int) -> np.ndarray:
    """The meta-learner's probabilities, one column per class even if it never saw a class."""
    out = np.zeros((probs.shape[1], classes))
    out[:, np.asarray(meta.classes_, dtype=int)] = meta.predict_proba(features(probs))
    return out


class Combiner:
    """A rule with member weights (None: equal) and, for stacking, a meta-learner."""

    rule = "soft"

    def __init__(self, weights: Sequence[float] | None = None, meta: Any = None) -> None:
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.meta = meta

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        """Learn from held-out member probabilities; a fixed rule only settles its weights."""
        self.weights = normalised_weights(self.weights, probs.shape[0])
        return self

    def member_weights(self, members: int) -> np.ndarray:
        """Weights summing to one, one per member (equal when none were given)."""
        return normalised_weights(self.weights, members)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return soft_vote(probs, self.weights)


COMBINERS: Registry[Combiner] = Registry("ensemble combiner")
COMBINERS.register("soft")(Combiner)


@COMBINERS.register("hard")
class HardVote(Combiner):
    rule = "hard"

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return hard_vote(probs, self.weights)


@COMBINERS.register("selection")
class Selection(Combiner):
    """Soft voting with weights from greedy forward selection (Caruana et al. 2004)."""

    def __init__(
        self, weights: Sequence[float] | None = None, meta: Any = None, rounds: int = 20, metric: str = "accuracy"
    ) -> None:
        super().__init__(weights, meta)
        self.rounds, self.metric = rounds, metric

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        self.weights = greedy_selection(probs, y, self.rounds, self.metric)
        return self


@COMBINERS.register("stacking")
class Stacking(Combiner):
    """A meta-learner on the members' probabilities; `fit` takes out-of-fold probabilities."""

    rule = "stacking"

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        self.meta = self.meta.fit(features(probs), y)
        self.weights = normalised_weights(None, probs.shape[0])
        return self

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return meta_probs(self.meta, probs, probs.shape[2])
