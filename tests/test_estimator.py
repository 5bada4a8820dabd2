"""FineTuneClassifier: sklearn's estimator contract, label round-trips, sklearn tooling, bad input.

The tiny random BERT only leaves chance after ~48 optimizer steps at lr 3e-3 (fewer steps or a
higher lr often collapse to one class), so the two accuracy checks train that long (~3 s each);
the tests that only check plumbing train one epoch.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.ensemble import VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from honed import FineTuneClassifier, HonedError
from honed.estimator import label_names
from tests.conftest import text_rows

LEARNS = {"epochs": 8, "lr": 3e-3, "batch_size": 8, "max_length": 16, "seed": 0, "val_fraction": 0.0}
QUICK = {"epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 16, "seed": 0, "val_fraction": 0.0}


def reviews(n: int, seed: int = 0) -> tuple[pd.Series, np.ndarray]:
    """Texts and 0/1 labels (1 = positive)."""
    rows = text_rows(n, seed)
    return rows["text"], (rows["label"] == "pos").to_numpy(dtype=int)


@pytest.fixture(scope="module")
def fitted(tiny_bert: str) -> FineTuneClassifier:
    X, y = reviews(48)
    est = FineTuneClassifier(model=tiny_bert, **LEARNS)
    assert est.fit(X, y) is est
    return est


def test_params_stored_unchanged_and_round_trip() -> None:
    recipe = {"schedule": {"name": "constant"}}
    est = FineTuneClassifier(model="some/model", lr=1e-4, recipe=recipe, output_dir="out", device="cpu")
    params = est.get_params()
    assert params["model"] == "some/model" and params["lr"] == 1e-4 and params["recipe"] is recipe
    assert params["output_dir"] == "out" and params["device"] == "cpu" and params["epochs"] == 2
    assert est.set_params(epochs=5, kind="image") is est
    assert est.epochs == 5 and est.kind == "image"
    assert FineTuneClassifier(**est.get_params()).get_params() == est.get_params()
    with pytest.raises(TypeError):
        FineTuneClassifier("positional/model")  # keyword-only, as sklearn expects


def test_clone_is_unfitted_with_equal_params(fitted: FineTuneClassifier) -> None:
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "classes_") and not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.predict(["a joy to watch"])


def test_integer_labels_learn_and_come_back_as_integers(fitted: FineTuneClassifier) -> None:
    X, y = reviews(48)
    assert fitted.classes_.tolist() == [0, 1] and fitted.classes_.dtype.kind == "i"
    assert fitted.class_names_ == ["0", "1"] and fitted.labels_.names == ("0", "1")
    predicted = fitted.predict(X)
    assert predicted.dtype.kind == "i" and set(predicted.tolist()) <= {0, 1}
    held_X, held_y = reviews(40, seed=99)
    assert fitted.score(X, y) > 0.8
    assert fitted.score(held_X, held_y) > 0.8
    assert fitted.run_.metrics["epochs_run"] == 8
    assert not fitted.run_.run_dir.exists()  # temporary run folder is removed after fit


def test_predict_proba_shape_sums_and_alignment(fitted: FineTuneClassifier) -> None:
    X, y = reviews(48)
    probs = fitted.predict_proba(list(X))
    assert probs.shape == (48, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs >= 0).all()
    np.testing.assert_array_equal(fitted.predict(X), fitted.classes_[probs.argmax(axis=1)])
    assert probs[y == 1, 1].mean() > probs[y == 0, 1].mean()  # column 1 is class 1
    assert not fitted.model_.training


def test_label_order_differs_from_str_order(tiny_bert: str) -> None:
    """9 < 10 as numbers but '10' < '9' as text: columns must follow classes_, not str order."""
    X, y01 = reviews(48)
    y = np.where(y01 == 1, 10, 9)
    est = FineTuneClassifier(model=tiny_bert, **LEARNS).fit(X, y)
    assert est.classes_.tolist() == [9, 10] and est.class_names_ == ["9", "10"]
    assert est.score(X, y) > 0.8
    assert est.predict_proba(X)[y == 10, 1].mean() > 0.5


def test_string_labels_val_split_recipe_and_output_dir(tiny_bert: str, tmp_path: Path) -> None:
    rows = text_rows(40)
    base = {"schedule": {"name": "constant"}, "optim": {"lr": 1.0}}
    params = {**QUICK, "val_fraction": 0.25}
    est = FineTuneClassifier(model=tiny_bert, recipe=base, output_dir=str(tmp_path / "run"), **params)
    assert est.fit(rows["text"].tolist(), rows["label"].tolist()) is est
    assert est.classes_.tolist() == ["neg", "pos"]
    assert set(est.predict(rows["text"]).tolist()) <= {"neg", "pos"}
    assert est.recipe_.schedule.name == "constant" and est.recipe_.optim.lr == QUICK["lr"]  # params win
    assert est.recipe_.data.split.val == 0.25 and "val_accuracy" in est.run_.metrics
    assert (tmp_path / "run" / "model" / "labels.json").is_file()
    assert est.score(rows["text"], rows["label"]) == accuracy_score(rows["label"], est.predict(rows["text"]))


def test_pickle_round_trip(fitted: FineTuneClassifier) -> None:
    X, _ = reviews(16)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_allclose(again.predict_proba(X), fitted.predict_proba(X), atol=1e-6)


def test_cross_val_score(tiny_bert: str) -> None:
    X, y = reviews(32)
    scores = cross_val_score(FineTuneClassifier(model=tiny_bert, **QUICK), X, y, cv=2, error_score="raise")
    by_hand = [
        clone(FineTuneClassifier(model=tiny_bert, **QUICK)).fit(X.iloc[a], y[a]).score(X.iloc[b], y[b])
        for a, b in StratifiedKFold(2).split(X, y)
    ]  # what cross_val_score does for a classifier, cv=2
    np.testing.assert_allclose(scores, by_hand, atol=1e-9)


def test_soft_voting_ensemble(tiny_bert: str) -> None:
    rows = text_rows(32)
    X, y = rows["text"], rows["label"]
    voter = VotingClassifier(
        [
            ("a", FineTuneClassifier(model=tiny_bert, **QUICK)),
            ("b", FineTuneClassifier(model=tiny_bert, **{**QUICK, "seed": 1})),
        ],
        voting="soft",
    )
    predicted = voter.fit(X, y).predict(X)
    assert len(predicted) == 32 and set(predicted.tolist()) <= {"neg", "pos"}
    np.testing.assert_allclose(voter.predict_proba(X).sum(axis=1), 1.0, atol=1e-9)


@pytest.mark.parametrize(
    ("X", "y", "params", "message"),
    [
        (["a", "b", "c"], [0, 1], {}, "X has 3 rows but y has 2"),
        (["a", "b", "c"], [1, 1, 1], {}, "only one class"),
        (["a", "b", "c"], ["x", None, "y"], {}, "row 1 has a missing"),
        (["a", "b", "c"], [0.5, 1.25, 2.0], {}, "continuous"),
        (["a", "b", "c"], pd.Series(["x", 1, "y"], dtype=object), {}, "one sortable type"),
        ("abc", [0, 1, 0], {}, "single string"),
        ([], [], {}, "no rows"),
        (pd.DataFrame({"a": ["x", "y"], "b": ["x", "y"]}), [0, 1], {}, "one column"),
        (["a", "b", "c"], [[0], [1], [0]], {}, "1-D"),
        (["a", "b", "c"], [0, 1, 0], {"device": "gpu"}, "device='gpu'"),
        (["a", "b", "c"], [0, 1, 0], {"lr": -1.0}, "optim.lr"),
        (["a", "b", "c"], [0, 1, 0], {"kind": "audio"}, "data.kind"),
        (["a", "b", "c"], [0, 1, 0], {"val_fraction": 0.5}, "class '1' has one row"),
    ],
)
def test_bad_input_raises_honed_error(tiny_bert: str, X: Any, y: Any, params: dict[str, Any], message: str) -> None:
    with pytest.raises(HonedError, match=message):
        FineTuneClassifier(model=tiny_bert, **{**QUICK, **params}).fit(X, y)


def test_label_names_fall_back_when_texts_collide() -> None:
    assert label_names(np.array([1.0, 2.5])) == ["1", "2.5"]
    assert label_names(np.array(["a", " a"])) == ["class_0", "class_1"]
    assert label_names(np.array(["", "b"])) == ["class_0", "class_1"]
