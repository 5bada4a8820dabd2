"""Ensembles: voting/selection/stacking/bagging maths, the ensemble folder, CLI, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from honed.cli import main
from honed.ensemble.bagging import bag_rows, oob_estimate, out_of_bag
from honed.ensemble.selection import greedy_selection
from honed.ensemble.stacking import meta_learner, out_of_fold
from honed.ensemble.voting import hard_vote, soft_vote
from honed.errors import HonedError
from tests.conftest import text_rows, tiny_recipe


def _probs(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=float)


def test_soft_and_hard_vote() -> None:
    a = _probs([[0.9, 0.1], [0.4, 0.6]])
    b = _probs([[0.4, 0.6], [0.45, 0.55]])
    c = _probs([[0.45, 0.55], [0.9, 0.1]])
    stack = np.stack([a, b, c])
    np.testing.assert_allclose(soft_vote(stack), (a + b + c) / 3)
    np.testing.assert_allclose(soft_vote(stack, [1, 0, 0]), a)
    assert hard_vote(stack).argmax(axis=1).tolist() == [1, 1]  # b and c vote class 1 on row 0 though a is surest
    assert soft_vote(stack).argmax(axis=1).tolist() == [0, 0]
    assert hard_vote(stack, [3, 1, 1]).argmax(axis=1).tolist() == [0, 1]
    np.testing.assert_allclose(hard_vote(stack).sum(axis=1), 1.0)


def test_weights_must_match_members() -> None:
    with pytest.raises(HonedError, match="ensemble.weights: 2 weights given for 3 members"):
        soft_vote(np.zeros((3, 2, 2)), [1, 1])


def test_selection_prefers_the_good_member_and_adds_a_complement() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good = np.eye(2)[y] * 0.6 + 0.2
    noise = rng.random((200, 2))
    noise /= noise.sum(axis=1, keepdims=True)
    wrong = np.eye(2)[1 - y] * 0.8 + 0.1
    weights = greedy_selection(np.stack([noise, good, wrong]), y, rounds=10)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[1] == weights.max() and weights[2] == 0.0


def test_out_of_fold_never_predicts_rows_it_trained_on() -> None:
    train = pd.DataFrame({"x": [f"r{i}" for i in range(30)], "label": ["a", "b", "c"] * 10})
    seen_by_fold: list[set[str]] = []

    def fit_predict(fold: int, part: pd.DataFrame, held: pd.DataFrame) -> np.ndarray:
        assert not set(part["x"]) & set(held["x"])
        seen_by_fold.append(set(held["x"]))
        return np.full((len(held), 3), fold, dtype=float)

    oof = out_of_fold(train, 3, 0, fit_predict, 3)
    assert not np.isnan(oof).any() and len(seen_by_fold) == 3
    assert set().union(*seen_by_fold) == set(train["x"])


def test_meta_learner_names_and_refusals() -> None:
    assert type(meta_learner("logistic_regression")).__name__ == "LogisticRegression"
    assert type(meta_learner("sklearn.ensemble:RandomForestClassifier", {"n_estimators": 5})).__name__ == "RandomForestClassifier"
    with pytest.raises(HonedError, match="'sklearn.linear_model:LinearRegression' is not a scikit-learn classifier"):
        meta_learner("sklearn.linear_model:LinearRegression")
    with pytest.raises(HonedError, match="did you mean 'logistic_regression'"):
        meta_learner("logistic_regresion")


def test_bagging_rows_and_out_of_bag() -> None:
    bags = bag_rows(100, 4, True, 1.0, seed=0)
    assert all(len(b) == 100 for b in bags) and all(len(np.unique(b)) < 100 for b in bags)  # with replacement
    left = out_of_bag(bags, 100)
    assert all(not set(b) & set(rest) for b, rest in zip(bags, left, strict=True))
    subsets = bag_rows(100, 2, False, 0.5, seed=0)
    assert all(len(np.unique(s)) == 50 for s in subsets)
    y = np.zeros(100, dtype=int)
    oob = oob_estimate([(rest, np.tile([0.9, 0.1], (len(rest), 1))) for rest in left], y, 2)
    assert oob["oob_accuracy"] == 1.0 and 0 < oob["oob_rows"] <= 100


def _ensemble_recipe(tiny_bert: str, tmp_path: Path, ensemble: dict, rows: int = 60, **extra: object) -> dict:
    data = tmp_path / "reviews.csv"
    if not data.exists():
        text_rows(rows).to_csv(data, index=False)
    recipe = tiny_recipe(tiny_bert, data, tmp_path / "ens", **extra)
    recipe["train"]["epochs"] = 1
    recipe["ensemble"] = ensemble
    return recipe


TWO = [{"name": "a", "overrides": {"optim.lr": 1e-3}}, {"name": "b", "overrides": {"seed": 1}}]


def test_voting_ensemble_folder_predicts_and_evaluates_like_a_model(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from honed.ensemble import build_ensemble, load_ensemble

    result = build_ensemble(_ensemble_recipe(tiny_bert, tmp_path, {"method": "voting", "weights": [3, 1], "members": TWO}), quiet=True)
    doc = json.loads((result.folder / "ensemble.json").read_text())
    assert [m["name"] for m in doc["members"]] == ["a", "b"] and doc["combine"] == "soft"
    assert [m["weight"] for m in doc["members"]] == [0.75, 0.25]
    assert (result.folder / "members" / "a" / "model" / "honed.json").is_file()
    assert (result.folder / "report.json").is_file()  # the error-analysis report of the ensemble
    saved = load_ensemble(result.folder)
    test = result.frames["test"]
    np.testing.assert_allclose(saved.predict_proba(test), 0.75 * result.probs["test"][0] + 0.25 * result.probs["test"][1], atol=1e-6)
    # `honed predict` / `honed evaluate` accept the folder like a single model
    source = tmp_path / "new.csv"
    pd.DataFrame({"text": test["x"], "label": test["label"]}).to_csv(source, index=False)
    assert main(["predict", str(result.folder), str(source), "-o", str(tmp_path / "pred.csv")]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["input", "predicted", "prob_neg", "prob_pos"] and len(pred) == len(test)
    assert main(["evaluate", str(result.folder), str(source), "--report", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    accuracy = float(next(line.split("\t")[1] for line in out.splitlines() if line.startswith("accuracy")))
    assert accuracy == pytest.approx(result.metrics["ensemble"]["test_accuracy"], abs=1e-4)
    assert (tmp_path / "rep" / "report.html").is_file()
    assert main(["evaluate", str(result.folder), str(source), "--calibrated"]) == 2
