"""Regression (issue 14 item 2): numeric targets standardised on train, MSE/Huber/L1, RMSE/MAE/R²/Pearson/
Spearman, best checkpoint on val RMSE, predict/evaluate of a saved model, FineTuneRegressor, bad input.
All on the tiny random BERT of conftest.py with synthetic targets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats
from sklearn import metrics as skm

from tests.conftest import REPO, tiny_recipe

SCORES = {"good": 1.0, "bad": -1.0, "great": 2.0, "awful": -2.0, "fine": 0.5, "dull": -0.5, "superb": 2.5, "poor": -1.5}


def regression_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """n three-word texts whose targets are sums of word scores: `y` near 3, `z` on another scale."""
    rng = np.random.default_rng(seed)
    words = list(SCORES)
    rows = []
    for i in range(n):
        chosen = list(rng.choice(words, 3))
        value = sum(SCORES[w] for w in chosen) + float(rng.normal(0, 0.1))
        rows.append({"text": " ".join(chosen), "y": 3.0 + value, "z": 10.0 * value + 5.0, "movie": f"m{i % 4}"})
    return pd.DataFrame(rows)


@pytest.fixture
def reg_csv(tmp_path: Path) -> Path:
    path = tmp_path / "scores.csv"
    regression_rows(96).to_csv(path, index=False)
    return path


def reg_recipe(tiny_bert: str, csv: Path, run_dir: Path, **extra: object) -> dict:
    """tiny_recipe on the regression rows (extra keys as there: `train__epochs=3`), target column y."""
    recipe = tiny_recipe(tiny_bert, csv, run_dir, **extra)
    recipe["data"].setdefault("label_column", "y")
    return recipe


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "honed.cli", *args], capture_output=True, text=True, cwd=REPO)


def _write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- pieces


def test_standardisation_round_trip(tmp_path: Path) -> None:
    from honed.data.labels import LabelMap, TargetMap
    from honed.data.targets import TARGET, target_map

    frame = pd.DataFrame({TARGET + "a": [1.0, 2.0, 3.0, 6.0], TARGET + "b": [10.0, 10.0, 10.0, 10.0]})
    targets = target_map({"train": frame}, ["a", "b"])
    assert targets.mean == (3.0, 10.0) and targets.std[1] == 1.0  # a constant target keeps std 1
    assert math.isclose(targets.std[0], float(np.std([1, 2, 3, 6])))
    encoded = torch.stack(targets.encode_frame(frame)).numpy()
    assert abs(encoded[:, 0].mean()) < 1e-6 and abs(encoded[:, 0].std() - 1.0) < 1e-6
    assert np.allclose(targets.decode(encoded), frame.to_numpy())
    targets.save(tmp_path)
    loaded = LabelMap.load(tmp_path)
    assert isinstance(loaded, TargetMap) and loaded == targets and len(loaded) == 2


@pytest.mark.parametrize("name, reference", [
    ("mse", lambda o, t: ((o - t) ** 2).mean()),
    ("l1", lambda o, t: (o - t).abs().mean()),
    ("huber", lambda o, t: torch.where((o - t).abs() < 1.0, 0.5 * (o - t) ** 2, (o - t).abs() - 0.5).mean()),
])
def test_each_regression_loss(name: str, reference) -> None:
    from honed.losses import build_loss
    from honed.recipe import LossSpec

    torch.manual_seed(0)
    outputs, targets = torch.randn(32, 2) * 2, torch.randn(32, 2)
    loss = build_loss(LossSpec(name=name), (), "regression")
    assert torch.allclose(loss(outputs, targets), reference(outputs, targets), atol=1e-6)
    assert torch.allclose(loss(outputs[:, :1], targets[:, 0]), reference(outputs[:, 0], targets[:, 0]), atol=1e-6)


def test_huber_delta_and_classification_losses_refused() -> None:
    from honed.errors import HonedError
    from honed.losses import build_loss
    from honed.recipe import LossSpec

    outputs, targets = torch.tensor([[3.0]]), torch.tensor([[0.0]])
    assert float(build_loss(LossSpec(name="huber", delta=2.0), (), "regression")(outputs, targets)) == 2.0 * 3.0 - 2.0
    classification_only = ({"name": "focal"}, {"name": "weighted_cross_entropy"},
                           {"name": "cross_entropy", "label_smoothing": 0.1})
    for spec in classification_only:
        with pytest.raises(HonedError, match=r"classification-only loss .*task regression trains with huber, l1, mse"):
            build_loss(LossSpec(**spec), (), "regression")
    with pytest.raises(HonedError, match="regression-only"):
        build_loss(LossSpec(name="mse"), (3, 3), "classification")


def test_metrics_match_sklearn_and_scipy() -> None:
    from honed.metrics import task_metrics

    rng = np.random.default_rng(1)
    true = rng.normal(size=(50, 2))
    pred = true + rng.normal(scale=0.5, size=(50, 2))
    mean, std = (1.0, -2.0), (2.0, 0.5)
    got = task_metrics("regression", torch.from_numpy(pred), torch.from_numpy(true), names=("a", "b"),
                       mean=mean, std=std)
    t, p = true * std + np.asarray(mean), pred * std + np.asarray(mean)  # un-standardised by hand
    for j, name in enumerate("ab"):
        assert math.isclose(got[f"rmse_{name}"], math.sqrt(skm.mean_squared_error(t[:, j], p[:, j])), rel_tol=1e-9)
        assert math.isclose(got[f"mae_{name}"], float(np.abs(t[:, j] - p[:, j]).mean()), rel_tol=1e-9)
        ss_res, ss_tot = ((t[:, j] - p[:, j]) ** 2).sum(), ((t[:, j] - t[:, j].mean()) ** 2).sum()
        assert math.isclose(got[f"r2_{name}"], 1 - ss_res / ss_tot, rel_tol=1e-9)
        assert math.isclose(got[f"pearson_{name}"], float(np.corrcoef(t[:, j], p[:, j])[0, 1]), rel_tol=1e-9)
        rank_corr = stats.pearsonr(stats.rankdata(t[:, j]), stats.rankdata(p[:, j]))[0]
        assert math.isclose(got[f"spearman_{name}"], rank_corr, rel_tol=1e-9)
    assert math.isclose(got["rmse"], (got["rmse_a"] + got["rmse_b"]) / 2)
    assert math.isclose(got["loss"], float(((pred - true) ** 2).mean()))
    flat = task_metrics("regression", torch.zeros(5, 1), torch.arange(5.0).reshape(5, 1))
    assert flat["pearson"] == 0.0 and flat["spearman"] == 0.0  # a constant prediction: 0, not NaN


def test_recipe_defaults_follow_the_task() -> None:
    from honed.errors import HonedError
    from honed.recipe import load_recipe

    recipe = load_recipe({"task": "regression"})
    assert (recipe.loss.name, recipe.train.metric, recipe.train.mode) == ("mse", "rmse", "min")
    assert load_recipe({"task": "regression", "train": {"metric": "spearman"}}).train.mode == "max"
    plain = load_recipe({})
    defaults = (plain.task, plain.loss.name, plain.train.metric, plain.train.mode)
    assert defaults == ("auto", "cross_entropy", "accuracy", "max")
    with pytest.raises(HonedError, match="train.metric 'accuracy' is not a regression metric"):
        load_recipe({"task": "regression", "train": {"metric": "accuracy"}})
    with pytest.raises(HonedError, match="train.metric 'rmse' is not a classification metric"):
        load_recipe({"task": "classification", "train": {"metric": "rmse"}})


def test_task_auto_detects_float_targets(reg_csv: Path) -> None:
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    tables = load_tables(load_recipe({"data": {"train": str(reg_csv), "label_column": "y"}}))
    assert tables.task == "regression" and tables.labels.names == ("y",)
    assert any("task: auto -> regression" in note for note in tables.notes)
    classes = load_tables(load_recipe({"data": {"train": str(reg_csv), "label_column": "movie"}}))
    assert classes.task == "classification" and classes.labels.names == ("m0", "m1", "m2", "m3")


# ---------------------------------------------------------------- training


def test_fit_standardises_and_picks_best_on_rmse(tiny_bert: str, reg_csv: Path, tmp_path: Path) -> None:
    import honed
    from honed.data.labels import LabelMap

    recipe = reg_recipe(tiny_bert, reg_csv, tmp_path / "run", task="regression", train__epochs=3)
    run = honed.fit(recipe, quiet=True)
    rmses = [h["val_rmse"] for h in run.history]
    assert run.metrics["best_epoch"] == 1 + int(np.argmin(rmses))  # best checkpoint: the lowest val RMSE
    assert math.isclose(run.metrics["val_rmse"], min(rmses), rel_tol=1e-5)
    targets = LabelMap.load(run.model_dir)
    train = regression_rows(96)["y"]
    # the train split's mean, near the file's
    assert targets.task == "regression" and abs(targets.mean[0] - train.mean()) < 0.5
    saved = yaml.safe_load((run.run_dir / "recipe.yaml").read_text())
    assert saved["task"] == "regression" and saved["loss"]["name"] == "mse"
    report = json.loads((run.run_dir / "report.json").read_text())
    assert report["task"] == "regression" and report["worst_errors"] and "scatter" not in report
    assert "Predicted vs true" in (run.run_dir / "report.html").read_text()


def test_early_stopping_follows_the_metric_direction(tiny_bert: str, reg_csv: Path, tmp_path: Path) -> None:
    import honed

    recipe = reg_recipe(tiny_bert, reg_csv, tmp_path / "run", task="regression", train__epochs=4,
                        techniques=[{"name": "early_stopping", "patience": 1, "metric": "r2"}])
    run = honed.fit(recipe, quiet=True)
    r2 = [h["val_r2"] for h in run.history]
    if run.metrics["stop_reason"]:  # stopped: the last epoch did not beat the best R² before it (max, not min)
        assert r2[-1] <= max(r2[:-1])
    else:
        assert all(b > a for a, b in zip(r2, r2[1:]))


# ---------------------------------------------------------------- saved model: predict, evaluate


@pytest.fixture
def two_target_run(tiny_bert: str, reg_csv: Path, tmp_path: Path):
    import honed

    recipe = reg_recipe(tiny_bert, reg_csv, tmp_path / "run2", data__label_column=["y", "z"], train__epochs=3)
    recipe["data"]["label_column"] = ["y", "z"]
    return honed.fit(recipe, quiet=True)


def test_predict_and_evaluate_a_saved_regression_model(two_target_run, reg_csv: Path, tmp_path: Path) -> None:
    from honed.evaluate.saved import evaluate_saved
    from honed.inference import load_predictor
    from honed.inference.predict import predict_frame

    run = two_target_run
    assert run.recipe.task == "regression" and run.labels.names == ("y", "z")  # auto: a list of columns
    predictor = load_predictor(run.model_dir)
    frame = pd.read_csv(reg_csv)
    inputs = pd.DataFrame({"x": frame["text"]})
    values = predictor.predict_values(inputs)
    raw = predictor.logits(inputs).double().numpy()  # standardised outputs
    assert np.allclose(values, raw * np.asarray(run.labels.std) + np.asarray(run.labels.mean))
    table = predict_frame(run.model_dir, str(reg_csv))
    assert list(table.columns) == ["input", "predicted_y", "predicted_z"]
    assert np.allclose(table[["predicted_y", "predicted_z"]].to_numpy(), values)
    scores = evaluate_saved(run.model_dir, str(reg_csv), report_dir=tmp_path / "rep")
    true = frame[["y", "z"]].to_numpy()
    assert math.isclose(scores["rmse_z"], math.sqrt(skm.mean_squared_error(true[:, 1], values[:, 1])), rel_tol=1e-6)
    assert math.isclose(scores["r2"], float(np.mean([skm.r2_score(true[:, j], values[:, j]) for j in (0, 1)])),
                        rel_tol=1e-6, abs_tol=1e-9)
    assert (tmp_path / "rep" / "report.html").is_file()
    with pytest.raises(Exception, match="predicts values"):
        predictor.predict_proba(inputs)


def test_cli_report_rebuilds_the_regression_report(two_target_run, tmp_path: Path) -> None:
    """`honed report RUN_DIR` rebuilds the regression page from the saved model and the run's own splits: the
    same test metrics train wrote."""
    run = two_target_run
    done = _cli("report", str(run.run_dir), "--output", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads((tmp_path / "again" / "report.json").read_text())
    written = json.loads((run.run_dir / "report.json").read_text())
    assert rebuilt["task"] == "regression" and rebuilt["split"] == written["split"] == "test"
    for key in ("rmse", "mae", "r2", "rmse_y", "rmse_z"):
        assert math.isclose(rebuilt["summary"][key], run.metrics[f"test_{key}"], rel_tol=1e-5), key
    assert "Predicted vs true" in (tmp_path / "again" / "report.html").read_text()


def test_cli_predict_and_evaluate(two_target_run, reg_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    done = _cli("predict", str(two_target_run.model_dir), str(reg_csv), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert pd.read_csv(out).columns.tolist() == ["input", "predicted_y", "predicted_z"]
    done = _cli("evaluate", str(two_target_run.model_dir), str(reg_csv))
    assert done.returncode == 0, done.stderr
    assert {line.split("\t")[0] for line in done.stdout.splitlines()} >= {"rmse", "mae", "r2", "pearson", "spearman"}


# ---------------------------------------------------------------- the estimator


def test_regressor_clone_and_cross_val_score(tiny_bert: str) -> None:
    from sklearn.base import clone, is_regressor
    from sklearn.model_selection import KFold, cross_val_score

    from honed import FineTuneRegressor

    rows = regression_rows(48)
    est = FineTuneRegressor(model=tiny_bert, epochs=1, lr=1e-3, batch_size=8, max_length=16, seed=0)
    assert is_regressor(est) and clone(est).get_params() == est.get_params()
    scores = cross_val_score(est, rows["text"].tolist(), rows["y"].to_numpy(), cv=KFold(2),
                             scoring="neg_root_mean_squared_error", error_score="raise")
    assert len(scores) == 2 and all(np.isfinite(scores)) and all(s < 0 for s in scores)
    fitted = clone(est).fit(rows["text"].tolist(), rows[["y", "z"]].to_numpy())
    assert fitted.predict(rows["text"].tolist()[:5]).shape == (5, 2) and fitted.n_targets_ == 2
    assert not hasattr(est, "model_")  # clone + fit leave the original unfitted


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, expected", [
    ({"bad": "oops"}, "target column 'y' row 3 holds 'oops', not a finite number"),
    ({"bad": "inf"}, "target column 'y' row 3 holds 'inf', not a finite number"),
    ({"loss": {"name": "focal"}}, "loss.name 'focal': a classification-only loss"),
    ({"loss": {"name": "weighted_cross_entropy"}}, "loss.name 'weighted_cross_entropy': a classification-only loss"),
    ({"train__metric": "accuracy"}, "train.metric 'accuracy' is not a regression metric"),
    ({"techniques": [{"name": "distill", "teacher": "runs/none"}]}, "trains classification only, not task regression"),
])
def test_bad_regression_input_is_one_line(tiny_bert: str, tmp_path: Path, change: dict, expected: str) -> None:
    rows = regression_rows(40)
    rows["y"] = rows["y"].astype(object)
    if "bad" in change:
        rows.loc[2, "y"] = change.pop("bad")
    csv = tmp_path / "data.csv"
    rows.to_csv(csv, index=False)
    recipe = reg_recipe(tiny_bert, csv, tmp_path / "run", task="regression", **change)
    done = _cli("train", _write(tmp_path, recipe), "--quiet")
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["lr-find", "batch-find"])  # the other data verbs run it: their own test files
def test_verbs_without_regression_refuse_it(tiny_bert: str, reg_csv: Path, tmp_path: Path, verb: str) -> None:
    recipe = reg_recipe(tiny_bert, reg_csv, tmp_path / "run", task="regression")
    done = _cli(verb, _write(tmp_path, recipe))
    assert done.returncode == 2 and f"honed {verb} does not support task regression yet" in done.stderr, done.stderr
