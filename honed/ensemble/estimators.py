"""`EnsembleClassifier`: voting, selection, stacking and bagging of sklearn-style classifiers
(FineTuneClassifier members, or any classifier with predict_proba), in scikit-learn's manner.

    EnsembleClassifier([("a", FineTuneClassifier(lr=3e-5)), ("b", FineTuneClassifier(lr=1e-4))],
                       method="stacking", folds=3).fit(X, y).predict(X_new)

Members are cloned before fitting (the given ones stay untouched) unless `prefit=True`, which uses
them as already fitted; fitted members live in `members_`, weights in `weights_`, a stacking
meta-learner in `meta_`, bagging's out-of-bag accuracy in `oob_score_`, and the combiner (from the
registry shared with `honed ensemble` and the saved folder, honed/inference/combiners.py) in `combiner_`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from honed.ensemble.bagging import bag_rows, oob_estimate, out_of_bag
from honed.ensemble.stacking import check_stacking, meta_learner, out_of_fold
from honed.errors import HonedError
from honed.inference.combiners import COMBINERS, Combiner, Selection, Stacking

# method -> how its members are fitted (the name of the method that does it); combining is the combiner's job
FITTERS = {
    "soft": "_fit_voting",
    "hard": "_fit_voting",
    "selection": "_fit_selection",
    "stacking": "_fit_stacking",
    "bagging": "_fit_bagging",
}
METHODS = tuple(FITTERS)


class EnsembleClassifier(ClassifierMixin, BaseEstimator):
    """An ensemble of classifiers given as [(name, estimator), ...]."""

    def __init__(
        self,
        estimators: list[tuple[str, Any]],
        *,
        method: str = "soft",
        weights: list[float] | None = None,
        meta: str = "logistic_regression",
        meta_params: dict[str, Any] | None = None,
        folds: int = 5,
        rounds: int = 20,
        val_fraction: float = 0.2,
        bootstrap: bool = True,
        max_samples: float = 1.0,
        prefit: bool = False,
        seed: int = 0,
    ) -> None:
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
        self.combiner_ = getattr(self, FITTERS[self.method])(X, y, codes)
        self.weights_ = self.combiner_.member_weights(len(self.members_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "members_")
        return self.combiner_(self._member_probs(self.members_, _rows(X)))

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

    def _fit_voting(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> Combiner:
        """Members on all of X; the given weights (or equal ones)."""
        self.members_ = self._fitted(X, y)
        return COMBINERS.build(self.method, weights=self.weights)

    def _fit_selection(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> Combiner:
        """Members on a stratified part of X (all of it if prefit), weights by selection on the rest."""
        if self.prefit:
            self.members_, val_x, val_y = list(self.estimators), X, codes
        else:
            fit_i, val_i = train_test_split(
                np.arange(len(X)), test_size=self.val_fraction, stratify=codes, random_state=self.seed
            )
            self.members_ = self._fitted([X[i] for i in fit_i], y[fit_i])
            val_x, val_y = [X[i] for i in val_i], codes[val_i]
        return Selection(rounds=self.rounds).fit(self._member_probs(self.members_, val_x), val_y)

    def _fit_stacking(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> Combiner:
        """Out-of-fold probabilities from clones fitted on k-1 folds; the meta-learner on those."""
        check_stacking(self.folds, len(self.estimators))
        meta = meta_learner(self.meta, self.meta_params)
        frame = pd.DataFrame({"x": pd.Series(X, dtype=object), "label": codes})
        oof = np.stack(
            [
                out_of_fold(frame, self.folds, self.seed, self._fold_fitter(est), len(self.classes_))
                for _, est in self.estimators
            ]
        )
        combiner = Stacking(meta=meta).fit(oof, codes)
        self.meta_ = combiner.meta
        self.members_ = self._fitted(X, y)
        return combiner

    def _fold_fitter(self, estimator: Any) -> Any:
        def fit_predict(fold: int, part: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
            fitted = clone(estimator).fit(list(part["x"]), self.classes_[part["label"].to_numpy()])
            return self._member_probs([("fold", fitted)], list(held["x"]))[0]

        return fit_predict

    def _fit_bagging(self, X: list[Any], y: np.ndarray, codes: np.ndarray) -> Combiner:
        """Each member on its own bootstrap sample (or subset); the out-of-bag accuracy as oob_score_."""
        bags = bag_rows(len(X), len(self.estimators), self.bootstrap, self.max_samples, self.seed)
        self.members_ = [
            (n, clone(e).fit([X[i] for i in bag], y[bag])) for (n, e), bag in zip(self.estimators, bags, strict=True)
        ]
        oob = [
            (rows, self._member_probs([member], [X[i] for i in rows])[0])
            for member, rows in zip(self.members_, out_of_bag(bags, len(X)), strict=True)
            if len(rows)
        ]
        self.oob_score_ = oob_estimate(oob, codes, len(self.classes_))["oob_accuracy"]
        return COMBINERS.build("soft")


def _rows(X: Any) -> list[Any]:
    return list(X) if not isinstance(X, np.ndarray) or X.ndim == 1 else [row for row in X]
