"""`EnsembleClassifier`: voting, selection, stacking and bagging of sklearn-style classifiers
(FineTuneClassifier members, or any classifier with predict_proba), in scikit-learn's manner.

    EnsembleClassifier([("a", FineTuneClassifier(lr=3e-5)), ("b", FineTuneClassifier(lr=1e-4))],
                       method="stacking", folds=3).fit(X, y).predict(X_new)

Members are cloned before fitting (the given ones stay untouched) unless `prefit=True`, which uses
them as already fitted; fitted members live in `members_`, weights in `weights_`, a stacking
meta-learner in `meta_`, bagging's out-of-bag accuracy in `oob_score_`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from honed.ensemble.bagging import bag_rows, oob_estimate, out_of_bag
from honed.ensemble.selection import greedy_selection
from honed.ensemble.stacking import (
    check_stacking,
    meta_learner,
    meta_probs,
    out_of_fold,
)
from honed.ensemble.voting import VOTES, normalised_weights
from honed.errors import HonedError

METHODS = ("soft", "hard", "selection", "stacking", "bagging")


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """An ensemble of classifiers given as [(name, estimator), ...]."""

    def __init__(self, estimators: list[tuple[str, Any]], *, method: str = "soft", weights: list[float] | None = None,
                 meta: str = "logistic_regression", meta_params: dict[str, Any] | None = None, folds: int = 5,
                 rounds: int = 20, val_fraction: float = 0.2, bootstrap: bool = True, max_samples: float = 1.0,
                 prefit: bool = False, seed: int = 0) -> None:
        self.estimators = estimators
        self.method = method
        self.weights = weights
        self.meta = meta
        self.meta_params = meta_params
        self.folds = folds
        self.rounds = rounds
        self.val_fraction = val_fraction
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.prefit = prefit
        self.seed = seed

    def fit(self, X: Any, y: Any) -> EnsembleClassifier:
        """Fit (or, with prefit, only combine) the members on X, y; returns self."""
        if self.method not in METHODS:
            raise HonedError(f"EnsembleClassifier: method='{self.method}' is not one of {', '.join(METHODS)}")
        if len(self.estimators) < 2:
            raise HonedError(f"EnsembleClassifier: an ensemble needs at least 2 estimators, got {len(self.estimators)}")
        X, y = _rows(X), np.asarray(y)
        self.classes_ = np.unique(y)
        codes = np.searchsorted(self.classes_, y)
        if self.method == "stacking":
            check_stacking(self.folds, len(self.estimators))
            self._fit_stacking(X, y, codes)
        elif self.method == "selection":
            self._fit_selection(X, y, codes)
        elif self.method == "bagging":
            self._fit_bagging(X, y, codes)
        else:
            self.members_ = self._fitted(X, y)
            self.weights_ = normalised_weights(self.weights, len(self.members_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "members_")
        probs = self._member_probs(self.members_, _rows(X))
        if self.method == "stacking":
            return meta_probs(self.meta_, probs, len(self.classes_))
        return VOTES["hard" if self.method == "hard" else "soft"](probs, self.weights_)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _fitted(self, X: list[Any], y: np.ndarray) -> list[tuple[str, Any]]:
        if self.prefit:
            return list(self.estimators)
        return [(name, clone(est).fit(X, y)) for name, est in self.estimators]

    def _member_probs(self, members: list[tuple[str, Any]], X: list[Any]) -> np.ndarray:
        """(members, rows, classes) in the order of classes_, whatever each member saw."""
        out = np.zeros((len(members), len(X), len(self.classes_)))
        for m, (_, est) in enumerate(members):
            columns = np.searchsorted(self.classes_, est.classes_)
            out[m][:, columns] = est.predict_proba(X)
        return out

    def _fit_selection(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> None:
        """Members on a stratified part of X (all of it if prefit), weights by selection on the rest."""
        if self.prefit:
            self.members_, val_x, val_y = list(self.estimators), X, codes
        else:
            fit_i, val_i = train_test_split(np.arange(len(X)), test_size=self.val_fraction, stratify=codes, random_state=self.seed)
            self.members_ = self._fitted([X[i] for i in fit_i], y[fit_i])
            val_x, val_y = [X[i] for i in val_i], codes[val_i]
        self.weights_ = greedy_selection(self._member_probs(self.members_, val_x), val_y, self.rounds)

    def _fit_stacking(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> None:
        """Out-of-fold probabilities from clones fitted on k-1 folds; the meta-learner on those."""
        meta = meta_learner(self.meta, self.meta_params)
        frame = pd.DataFrame({"x": pd.Series(X, dtype=object), "label": codes})
        oof = np.stack([out_of_fold(frame, self.folds, self.seed, self._fold_fitter(est), len(self.classes_))
                        for _, est in self.estimators])
        self.meta_ = meta.fit(np.concatenate(list(oof), axis=1), codes)
        self.members_ = self._fitted(X, y)
        self.weights_ = normalised_weights(None, len(self.members_))

    def _fold_fitter(self, estimator: Any) -> Any:
        def fit_predict(fold: int, part: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
            fitted = clone(estimator).fit(list(part["x"]), self.classes_[part["label"].to_numpy()])
            return self._member_probs([("fold", fitted)], list(held["x"]))[0]

        return fit_predict

    def _fit_bagging(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> None:
        """Each member on its own bootstrap sample (or subset); the out-of-bag accuracy as oob_score_."""
        bags = bag_rows(len(X), len(self.estimators), self.bootstrap, self.max_samples, self.seed)
        self.members_ = [(n, clone(e).fit([X[i] for i in bag], y[bag])) for (n, e), bag in zip(self.estimators, bags, strict=True)]
        oob = [(rows, self._member_probs([member], [X[i] for i in rows])[0])
               for member, rows in zip(self.members_, out_of_bag(bags, len(X)), strict=True) if len(rows)]
        self.oob_score_ = oob_estimate(oob, codes, len(self.classes_))["oob_accuracy"]
        self.weights_ = normalised_weights(None, len(self.members_))


def _rows(X: Any) -> list[Any]:
    return list(X) if not isinstance(X, np.ndarray) or X.ndim == 1 else [row for row in X]
