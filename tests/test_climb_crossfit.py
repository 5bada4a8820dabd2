"""The climb's selection and stacking are scored on val rows their combiner never saw (cross-fitted), and the
saved ensemble is the combiner fitted on all of val."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from honed.climb.crossfit import FOLDS, cross_fitted
from honed.errors import HonedError
from honed.inference.combiners import COMBINERS


def _noise(rows: int = 200, members: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Members whose probabilities carry no signal about random labels."""
    rng = np.random.default_rng(seed)
    p = rng.random((members, rows))
    return np.stack([p, 1 - p], axis=-1), rng.integers(0, 2, rows)


def test_a_memorising_combiner_scores_chance_out_of_fold_and_perfect_in_sample() -> None:
    probs, y = _noise()

    def make():  # stacking with a 1-nearest-neighbour meta-learner: it memorises the rows it is fitted to
        return COMBINERS.build("stacking", meta=KNeighborsClassifier(n_neighbors=1))

    in_sample = (make().fit(probs, y)(probs).argmax(1) == y).mean()
    out, folds = cross_fitted(make, probs, y, seed=7)
    assert folds == FOLDS
    expected = np.zeros_like(out)  # the same folds, recomputed here
    for fit_rows, held in StratifiedKFold(FOLDS, shuffle=True, random_state=7).split(probs[0], y):
        expected[held] = make().fit(probs[:, fit_rows], y[fit_rows])(probs[:, held])
    assert in_sample == 1.0
    np.testing.assert_array_equal(out, expected)
    assert abs((out.argmax(1) == y).mean() - 0.5) < 0.1  # chance, as the labels are noise


def test_selection_finds_the_one_member_that_knows_on_every_fold() -> None:
    probs, y = _noise()
    probs[1] = np.eye(2)[y] * 0.8 + 0.1  # member 1 is right on every row
    out, _ = cross_fitted(lambda: COMBINERS.build("selection"), probs, y, seed=0)
    assert (out.argmax(1) == y).all()


def test_a_class_with_one_val_row_cannot_be_cross_fitted() -> None:
    probs, y = _noise(rows=20)
    y[:] = 0
    y[3] = 1
    with pytest.raises(HonedError, match="a class has a single val row"):
        cross_fitted(lambda: COMBINERS.build("selection"), probs, y, seed=0)
