"""Ensemble combiners: how members' outputs (members, rows, columns) become the ensemble's (rows, columns).
One registry, named by rule, used by `honed ensemble`, `EnsembleClassifier` and the saved ensemble folder
alike:

    soft            weighted mean of class or per-label probabilities
    hard            weighted share of the members' class votes
    mean            weighted mean of predicted values (regression)
    median          median of predicted values (regression)
    selection       a weighted mean whose weights are fitted by greedy ensemble selection on held-out rows
    stacking        a scikit-learn classifier applied to the members' class probabilities side by side
    value_stacking  a scikit-learn regressor applied to the members' predicted values side by side

Each combiner declares what it can combine: `tasks` (the tasks whose outputs it reads: class or label
probabilities, or values) and `family` (the `ensemble.method` that picks it: voting by `ensemble.voting`,
selection, stacking), so `honed ensemble` chooses and refuses combiners by these, never by task name.
`fit(outputs, y)` learns from held-out member outputs what the rule needs (selection's weights,
stacking's meta-learner); `rule` is the name the saved folder records (selection saves as its weighted
mean), so `COMBINERS.build(rule, weights=..., meta=...)` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from honed.errors import HonedError
from honed.inference.selection import greedy_selection
from honed.inference.voting import hard_vote, median_vote, normalised_weights, soft_vote
from honed.registry import Registry

ALL_TASKS = ("classification", "regression", "multilabel")


def features(probs: np.ndarray) -> np.ndarray:
    """Meta-learner inputs from (members, rows, columns): each member's outputs side by side."""
    return np.concatenate(list(probs), axis=1)


def meta_probs(meta: Any, probs: np.ndarray, classes: int) -> np.ndarray:
    """The meta-learner's probabilities, one column per class even if it never saw a class."""
    out = np.zeros((probs.shape[1], classes))
    out[:, np.asarray(meta.classes_, dtype=int)] = meta.predict_proba(features(probs))
    return out


class Combiner:
    """A rule with member weights (None: equal) and, for stacking, a meta-learner."""

    rule = "soft"
    family = "voting"  # the ensemble.method that picks it (voting and bagging pick by ensemble.voting)
    tasks: tuple[str, ...] = ("classification", "multilabel")  # a weighted mean of probabilities stays one
    needs_meta = False  # stacking: the saved folder must hold its meta-learner
    weighted = True  # whether ensemble.weights mean anything to it

    def __init__(self, weights: Sequence[float] | None = None, meta: Any = None) -> None:
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.meta = meta

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        """Learn from held-out member outputs; a fixed rule only settles its weights."""
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
    tasks = ("classification",)  # a majority of class votes: values and label sets have no single vote

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return hard_vote(probs, self.weights)


@COMBINERS.register("mean")
class MeanVote(Combiner):
    """The weighted mean of the members' predicted values (soft voting's arithmetic, on values)."""

    rule = "mean"
    tasks = ("regression",)


@COMBINERS.register("median")
class MedianVote(Combiner):
    """The median of the members' predicted values; it takes no weights."""

    rule = "median"
    tasks = ("regression",)
    weighted = False

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return median_vote(probs)


@COMBINERS.register("selection")
class Selection(Combiner):
    """A weighted mean with weights from greedy forward selection (Caruana et al. 2004); it is saved as
    `rule`, the task's weighted mean (soft for probabilities, mean for values)."""

    family = "selection"
    tasks = ALL_TASKS

    def __init__(self, weights: Sequence[float] | None = None, meta: Any = None, rounds: int = 20,
                 metric: str = "accuracy", rule: str = "soft") -> None:
        super().__init__(weights, meta)
        self.rounds, self.metric, self.rule = rounds, metric, rule

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        self.weights = greedy_selection(probs, y, self.rounds, self.metric)
        return self


@COMBINERS.register("stacking")
class Stacking(Combiner):
    """A meta-learner on the members' probabilities; `fit` takes out-of-fold probabilities."""

    rule = "stacking"
    family = "stacking"
    tasks = ("classification",)
    needs_meta = True

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        self.meta = self.meta.fit(features(probs), y)
        self.weights = normalised_weights(None, probs.shape[0])
        return self

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return meta_probs(self.meta, probs, probs.shape[2])


@COMBINERS.register("value_stacking")
class ValueStacking(Stacking):
    """A regressor on the members' predicted values side by side; `fit` takes out-of-fold values and the
    (rows, targets) truth (one target: fitted on a vector, as scikit-learn's single-output regressors need)."""

    rule = "value_stacking"
    tasks = ("regression",)

    def fit(self, probs: np.ndarray, y: np.ndarray) -> Combiner:
        y = np.asarray(y, dtype=np.float64)
        try:
            self.meta = self.meta.fit(features(probs), y[:, 0] if y.shape[1] == 1 else y)
        except ValueError as exc:  # e.g. a single-output regressor given several targets
            raise HonedError(f"ensemble.stacking.meta: {type(self.meta).__name__} could not be fitted ({exc})") from exc
        self.weights = normalised_weights(None, probs.shape[0])
        return self

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray(self.meta.predict(features(probs)), dtype=np.float64).reshape(probs.shape[1], -1)
