"""honed tune and honed cv on regression and multi-label recipes (issue 14): the study's direction follows the
metric (rmse minimised, micro-F1 and mAP maximised), the best trial is the best of the trials the study holds,
pruning judges an rmse as lower-is-better, cv folds are plain (group) k-fold and every reported fold score is
recomputed from the saved out-of-fold outputs, and a metric of another task is one line before any training.
All on the tiny random BERT of conftest.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm
from sklearn.model_selection import KFold

from honed.cli import main
from tests.conftest import tiny_recipe
from tests.test_multilabel import LABELS, label_rows, multi_hot
from tests.test_regression import regression_rows

LR_GRID = {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "grid": [1e-3, 1e-2]}}


def reg_tree(tiny_bert: str, tmp_path: Path, out: Path, rows: int = 40, epochs: int = 1, **extra: Any) -> dict:
    """A regression recipe on `rows` synthetic rows; `task` is left to `auto` (float targets with many values)."""
    csv = tmp_path / "scores.csv"
    regression_rows(rows).to_csv(csv, index=False)
    tree = tiny_recipe(tiny_bert, csv, out, train__epochs=epochs, **extra)
    tree["data"]["label_column"] = "y"
    tree["report"] = {"enabled": False}
    return tree


def ml_tree(tiny_bert: str, tmp_path: Path, out: Path, rows: int = 40, **extra: Any) -> dict:
    csv = tmp_path / "tags.csv"
    label_rows(rows).to_csv(csv, index=False)
    tree = tiny_recipe(tiny_bert, csv, out, task="multilabel", train__epochs=1, **extra)
    tree["data"]["label_column"] = "tags"
    tree["report"] = {"enabled": False}
    return tree


def write(tmp_path: Path, tree: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree), encoding="utf-8")
    return str(path)


def completed(out: Path, name: str = "tiny") -> tuple[optuna.Study, list[optuna.trial.FrozenTrial]]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")
    return study, [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def val_rmse_of(trial_dir: Path) -> float:
    """A trial's val RMSE recomputed outside the code that reported it: the val split rebuilt from the trial's
    saved (seeded) recipe, its saved model's predictions in the targets' units, scored by scikit-learn."""
    from honed.data.build import load_tables
    from honed.inference.model import ModelPredictor
    from honed.recipe import load_recipe

    recipe = load_recipe(yaml.safe_load((trial_dir / "recipe.yaml").read_text()))
    val = load_tables(recipe).frames["val"]
    predicted = ModelPredictor.load(trial_dir / "model").predict_values(val)[:, 0]
    return float(np.sqrt(skm.mean_squared_error(val["target:y"], predicted)))


# ---------------------------------------------------------------- tune


def test_regression_tune_minimises_val_rmse(tiny_bert: str, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    tree = reg_tree(tiny_bert, tmp_path, out)
    tree["search"] = {"params": LR_GRID, "sampler": "grid"}  # no metric: the recipe's train.metric, rmse
    assert main(["tune", write(tmp_path, tree), "--quiet"]) == 0
    study, trials = completed(out)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and study.user_attrs["metric"] == "rmse"
    assert len(trials) == 2 and len({t.value for t in trials}) == 2
    best = min(trials, key=lambda t: t.value)
    assert study.best_trial.number == best.number
    for trial in trials:  # each value is its model's val RMSE, recomputed from the saved model
        assert trial.value == trial.user_attrs["val_rmse"]
        assert trial.value == pytest.approx(val_rmse_of(out / "trials" / f"trial-{trial.number}"), rel=1e-4)
        assert {"val_mae", "val_r2", "test_rmse", "test_spearman"} <= set(trial.user_attrs)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["metric"], summary["direction"]) == ("val_rmse", "minimize")
    assert (summary["best_trial"], summary["best_value"]) == (best.number, best.value)
    assert summary["best_test"]["test_rmse"] == best.user_attrs["test_rmse"]
    recipe = yaml.safe_load((out / "best_recipe.yaml").read_text())
    assert recipe["task"] == "regression" and recipe["optim"]["lr"] == best.params["optim.lr"]
    assert (recipe["train"]["metric"], recipe["train"]["mode"]) == ("rmse", "min")
    top = json.loads((out / "top_trials.json").read_text())
    assert [t["number"] for t in top] == [t.number for t in sorted(trials, key=lambda t: t.value)]
    table = pd.read_csv(out / "trials.csv")
    assert sorted(table["user_attrs_val_rmse"]) == sorted(t.value for t in trials)


def test_multilabel_tune_maximises_the_search_metric(tiny_bert: str, tmp_path: Path) -> None:
    out = tmp_path / "tune"
    tree = ml_tree(tiny_bert, tmp_path, out)
    tree["search"] = {"params": LR_GRID, "sampler": "grid", "metric": "map"}  # not train.metric (micro_f1)
    assert main(["tune", write(tmp_path, tree), "--quiet"]) == 0
    study, trials = completed(out)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE and study.user_attrs["metric"] == "map"
    assert len(trials) == 2 and all(t.value == t.user_attrs["val_map"] for t in trials)
    assert {"val_micro_f1", "val_macro_f1", "val_loss", "test_map"} <= set(trials[0].user_attrs)
    assert study.best_trial.number == max(trials, key=lambda t: t.value).number
    recipe = yaml.safe_load((out / "best_recipe.yaml").read_text())
    assert (recipe["train"]["metric"], recipe["train"]["mode"]) == ("map", "max")


def test_regression_tune_can_minimise_the_cv_mean_rmse(tiny_bert: str, tmp_path: Path) -> None:
    from honed.tune import tune

    out = tmp_path / "tune"
    tree = reg_tree(tiny_bert, tmp_path, out)
    tree["search"] = {"params": LR_GRID, "sampler": "random", "n_trials": 1, "cv_folds": 2}
    result = tune(tree)
    cv = json.loads((out / "trials" / "trial-0" / "cv.json").read_text())
    rmse = [f["rmse"] for f in cv["per_fold"]]
    assert cv["task"] == "regression" and result.summary["metric"] == "val_rmse"
    assert result.best_value == pytest.approx(np.mean(rmse)) == cv["metrics_mean"]["rmse"]
    _, trials = completed(out)
    assert trials[0].user_attrs["cv_std"] == pytest.approx(np.std(rmse, ddof=1))


@pytest.mark.parametrize("earlier", [0.0, 1e9], ids=["beaten", "beating"])
def test_median_pruning_reads_rmse_as_lower_is_better(earlier: float, tiny_bert: str, tmp_path: Path) -> None:
    """After one finished trial whose epoch-1 RMSE was `earlier`: 0.0 beats any real trial, so the next is
    pruned after epoch 1 (in a maximised study it would be the best and run on); 1e9 beats none."""
    from honed.tune.objective import Objective
    from honed.tune.spec import parse_search
    from honed.tune.study import PRUNERS

    spec = parse_search({"params": LR_GRID, "sampler": "random", "pruner": "median", "startup_trials": 1,
                         "metric": "rmse"})
    assert spec.direction == "minimize" and spec.mode == "min"
    study = optuna.create_study(direction=spec.direction, pruner=PRUNERS[spec.pruner](spec, 2))
    study.add_trial(optuna.trial.create_trial(value=earlier, intermediate_values={1: earlier, 2: earlier}))
    tree = reg_tree(tiny_bert, tmp_path, tmp_path / "p", epochs=2, task="regression")
    study.optimize(Objective(tree, spec, tmp_path / "p"), n_trials=1)
    trial = study.trials[-1]
    if earlier == 0.0:
        assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
    else:
        assert trial.state == optuna.trial.TrialState.COMPLETE and list(trial.intermediate_values) == [1, 2]
        assert trial.value == trial.user_attrs["val_rmse"]


@pytest.mark.parametrize(
    ("make", "search", "message"),
    [
        ("reg", {"metric": "accuracy"}, "search.metric: 'accuracy' is not a regression metric; use one of rmse"),
        ("reg", {"metric": "rmsee"}, "search.metric: unknown metric 'rmsee' (did you mean 'rmse'?)"),
        ("reg", {"metric": "r2", "direction": "minimize"}, "direction minimize contradicts metric r2"),
        ("ml", {"metric": "rmse"}, "search.metric: 'rmse' is not a multilabel metric; use one of micro_f1"),
    ],
)
def test_a_metric_of_another_task_is_one_line_before_any_trial(
    make: str, search: dict, message: str, tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tune"
    tree = (reg_tree if make == "reg" else ml_tree)(tiny_bert, tmp_path, out)
    tree["search"] = {"params": LR_GRID, "sampler": "grid", **search}
    capsys.readouterr()
    assert main(["tune", write(tmp_path, tree)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # nothing trained, no study


# ---------------------------------------------------------------- cv


def test_regression_cv_keeps_groups_apart_and_reports_recomputable_folds(
    tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cv"
    tree = reg_tree(tiny_bert, tmp_path, out, rows=60, data__group_column="movie")  # 4 movies
    assert main(["cv", write(tmp_path, tree), "--folds", "3", "--quiet"]) == 0
    assert "out-of-fold predictions" in capsys.readouterr().out
    cv = json.loads((out / "cv.json").read_text())
    oof = pd.read_csv(out / "oof.csv").merge(pd.read_csv(out / "fold_rows.csv"), on="row")
    source = pd.read_csv(tmp_path / "scores.csv")
    assert cv["task"] == "regression" and cv["folds"] == 3 and list(oof.columns) == ["row", "y", "pred_y", "fold"]
    assert len(oof) == cv["rows"] == 48 and np.allclose(oof["y"], source.loc[oof["row"], "y"])  # train + carved val
    movies = source.loc[oof["row"], "movie"].to_numpy()
    assert all(len(set(oof["fold"][movies == m])) == 1 for m in set(movies))  # one movie, one fold
    from honed.inference import predict_frame

    for fold in cv["per_fold"]:
        rows = oof[oof["fold"] == fold["fold"]]
        assert fold["val_rows"] == len(rows) and fold["train_rows"] == len(oof) - len(rows)
        model = out / "folds" / f"fold-{fold['fold']}" / "model"
        saved = predict_frame(model, source.loc[rows["row"], "text"].tolist())
        assert np.allclose(saved["predicted"], rows["pred_y"], atol=1e-5)  # oof.csv holds the saved model's outputs
        assert fold["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(rows["y"], rows["pred_y"])), rel=1e-5)
        assert fold["mae"] == pytest.approx(skm.mean_absolute_error(rows["y"], rows["pred_y"]), rel=1e-5)
        assert fold["r2"] == pytest.approx(skm.r2_score(rows["y"], rows["pred_y"]), rel=1e-5, abs=1e-6)
    for name in ("rmse", "mae", "r2", "pearson", "spearman", "loss"):
        values = [f[name] for f in cv["per_fold"]]
        assert cv["metrics_mean"][name] == pytest.approx(np.mean(values))
        assert cv["metrics_std"][name] == pytest.approx(np.std(values, ddof=1))
    assert "accuracy" not in cv["metrics_mean"]


def test_multilabel_cv_is_plain_kfold_scored_with_each_folds_thresholds(tiny_bert: str, tmp_path: Path) -> None:
    import honed

    out = tmp_path / "cv"
    result = honed.cross_validate(ml_tree(tiny_bert, tmp_path, out), folds=2)
    assert result.task == "multilabel" and result.labels == list(LABELS) and result.oof_probs.shape == (32, 4)
    expected = KFold(n_splits=2, shuffle=True, random_state=0).split(np.zeros(len(result.frame)))
    for i, (_, val) in enumerate(expected):  # plain k-fold on the cross-validated rows
        assert (np.flatnonzero(result.fold_of_row == i) == val).all()
    oof = pd.read_csv(out / "oof.csv", keep_default_na=False)
    source = pd.read_csv(tmp_path / "tags.csv", keep_default_na=False)
    true = multi_hot(source.loc[oof["row"], "tags"].reset_index(drop=True))
    assert list(oof.columns) == ["row", "label", *(f"p_{n}" for n in LABELS)]
    assert (multi_hot(oof["label"]) == true).all()
    probs = oof[[f"p_{n}" for n in LABELS]].to_numpy()
    for fold in result.per_fold:
        rows = result.fold_of_row == fold["fold"]
        saved = json.loads((out / "folds" / f"fold-{fold['fold']}" / "model" / "thresholds.json").read_text())
        predicted = probs[rows] >= np.asarray(saved["thresholds"])
        assert fold["micro_f1"] == pytest.approx(skm.f1_score(true[rows], predicted, average="micro", zero_division=0))
        assert fold["macro_f1"] == pytest.approx(skm.f1_score(true[rows], predicted, average="macro", zero_division=0))
        aps = [skm.average_precision_score(true[rows, j], probs[rows, j]) for j in range(4) if true[rows, j].any()]
        assert fold["map"] == pytest.approx(np.mean(aps), rel=1e-5)
    for name in ("micro_f1", "macro_f1", "map", "loss"):
        assert result.metrics_mean[name] == pytest.approx(np.mean([f[name] for f in result.per_fold]))


def test_fold_splits_per_task() -> None:
    from honed.cv import fold_indices
    from honed.errors import HonedError

    frame = pd.DataFrame({"x": [f"t{i}" for i in range(30)], "target:y": np.linspace(0, 1, 30),
                          "group": [f"g{i % 7}" for i in range(30)]})
    folds = fold_indices(frame, 3, seed=1, task="regression")
    assert sorted(np.concatenate([val for _, val in folds])) == list(range(30))
    for train, val in folds:
        assert not set(frame["group"].iloc[train]) & set(frame["group"].iloc[val])
    plain = fold_indices(frame.drop(columns="group"), 3, seed=1, task="regression")
    for (_, got), (_, want) in zip(plain, KFold(3, shuffle=True, random_state=1).split(frame)):
        assert (got == want).all()
    with pytest.raises(HonedError, match="data.group_column has only 7 groups; use fewer folds"):
        fold_indices(frame, 8, seed=1, task="regression")
    sets = pd.DataFrame({"x": list("abcdef"), "labels": [("a",), ("a", "b"), ("a",), (), ("a",), ("b",)]})
    assert len(fold_indices(sets, 6, seed=0, task="multilabel")) == 6  # leave-one-out: 'b' always left in training
    sets.loc[5, "labels"] = ("a",)
    with pytest.raises(HonedError, match=r"no training row of fold \d holds label 'b' \(it is on 1 of 6 rows\)"):
        fold_indices(sets, 2, seed=0, task="multilabel")  # whichever fold holds out its one row
