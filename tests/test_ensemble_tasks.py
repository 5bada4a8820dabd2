"""Regression and multi-label ensembles (issue 14): every reported figure recomputed here from the saved
member folders (mean, median, selection weights, ridge stacking on out-of-fold values, bagging's out-of-bag
RMSE; the mean of per-label probabilities and the ensemble's own thresholds), the saved folder through
predict/evaluate, and the refusals (members of another task, combiners the task cannot use) in one line
before any folder is made. Members are tiny random BERTs trained once per module and used as prefit."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm

from tests.conftest import tiny_recipe
from tests.test_multilabel import label_rows, ml_recipe
from tests.test_regression import regression_rows

TARGETS = ("y", "z")


def _rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """RMSE per target, averaged over targets (scikit-learn's, independently of honed)."""
    return float(np.mean([math.sqrt(skm.mean_squared_error(true[:, j], pred[:, j])) for j in range(true.shape[1])]))


def _reg_recipe(tiny_bert: str, csv: Path, out: Path, **extra: object) -> dict:
    recipe = tiny_recipe(tiny_bert, csv, out, **extra)
    recipe["data"]["label_column"] = list(TARGETS)  # task auto: several columns -> regression
    recipe["report"] = {"enabled": False}
    return recipe


def _frames(recipe: dict) -> dict[str, pd.DataFrame]:
    """The splits rebuilt from the (seeded) recipe, as the ensemble split them."""
    from honed.data.build import load_tables
    from honed.recipe import load_recipe

    return {k: f.reset_index(drop=True) for k, f in load_tables(load_recipe(recipe)).frames.items()}


def _values(dirs: list[Path], frame: pd.DataFrame) -> np.ndarray:
    """(members, rows, targets): each saved member's predicted values, read through its own folder."""
    from honed.inference import load_predictor

    return np.stack([load_predictor(d).predict_values(frame) for d in dirs])


def _truth(frame: pd.DataFrame) -> np.ndarray:
    return frame[[f"target:{n}" for n in TARGETS]].to_numpy(dtype=np.float64)


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    from honed.cli import main

    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


@pytest.fixture(scope="module")
def reg(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory):
    """Three regression members (different seeds and learning rates) on two targets, trained once."""
    import honed

    root = tmp_path_factory.mktemp("reg-ensemble")
    csv = root / "scores.csv"
    regression_rows(96).to_csv(csv, index=False)
    dirs = [honed.fit(_reg_recipe(tiny_bert, csv, root / f"m{i}", seed=i, optim={"lr": lr}), quiet=True).model_dir
            for i, lr in enumerate((1e-3, 3e-3, 5e-4))]
    return root, csv, dirs


def _reg_ensemble(tiny_bert: str, reg, name: str, ensemble: dict, members: int = 3) -> dict:
    root, csv, dirs = reg
    recipe = _reg_recipe(tiny_bert, csv, root / name)
    recipe["ensemble"] = {"members": [{"name": f"m{i}", "prefit": str(d)} for i, d in enumerate(dirs[:members])],
                          **ensemble}
    return recipe


def test_mean_and_median_are_the_members_values_combined(tiny_bert: str, reg, capsys) -> None:
    from honed.ensemble import build_ensemble, load_ensemble

    _, _, dirs = reg
    recipe = _reg_ensemble(tiny_bert, reg, "mean", {"method": "voting"})
    recipe["report"] = {"enabled": True}
    result = build_ensemble(recipe, quiet=True)
    frames = _frames(recipe)
    val, test = _values(dirs, frames["val"]), _values(dirs, frames["test"])
    got = result.metrics["ensemble"]
    assert result.task == "regression" and result.combined.combine == "mean"
    assert math.isclose(got["val_rmse"], _rmse(val.mean(axis=0), _truth(frames["val"])), rel_tol=1e-9)
    assert math.isclose(got["test_rmse"], _rmse(test.mean(axis=0), _truth(frames["test"])), rel_tol=1e-9)
    z = _truth(frames["val"])[:, 1]
    assert math.isclose(got["val_rmse_z"], math.sqrt(skm.mean_squared_error(z, val.mean(axis=0)[:, 1])), rel_tol=1e-9)
    assert math.isclose(got["val_r2_y"], skm.r2_score(_truth(frames["val"])[:, 0], val.mean(axis=0)[:, 0]),
                        rel_tol=1e-9)
    for i in range(3):  # each member scored in the same way
        assert math.isclose(result.metrics["members"][f"m{i}"]["val_rmse"], _rmse(val[i], _truth(frames["val"])),
                            rel_tol=1e-9)
    saved = load_ensemble(result.folder)
    assert saved.task == "regression" and np.allclose(saved.predict_values(frames["test"]), test.mean(axis=0))
    with pytest.raises(Exception, match="predicts values"):
        saved.predict_proba(frames["test"])
    assert json.loads((result.folder / "report.json").read_text())["task"] == "regression"
    assert json.loads((result.folder / "targets.json").read_text())["names"] == list(TARGETS)
    # `honed predict` writes the values; `honed evaluate` reports the regression metrics
    source = result.folder.parent / "mean-test.csv"
    pd.DataFrame({"text": frames["test"]["x"], "y": _truth(frames["test"])[:, 0],
                  "z": _truth(frames["test"])[:, 1]}).to_csv(source, index=False)
    out = result.folder.parent / "mean-pred.csv"
    assert _main(capsys, "predict", str(result.folder), str(source), "-o", str(out)).returncode == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["input", "predicted_y", "predicted_z"]
    assert np.allclose(table[["predicted_y", "predicted_z"]].to_numpy(), test.mean(axis=0), atol=1e-5)
    done = _main(capsys, "evaluate", str(result.folder), str(source))
    printed = dict(line.split("\t")[:2] for line in done.stdout.splitlines() if "\t" in line)
    assert done.returncode == 0 and math.isclose(float(printed["rmse"]), got["test_rmse"], rel_tol=1e-3)

    median = build_ensemble(_reg_ensemble(tiny_bert, reg, "median", {"method": "voting", "voting": "median"}),
                            quiet=True)
    middle = np.median(val, axis=0)
    assert not np.allclose(middle, val.mean(axis=0))  # three members: the median is its own figure
    assert math.isclose(median.metrics["ensemble"]["val_rmse"], _rmse(middle, _truth(frames["val"])), rel_tol=1e-9)
    assert np.allclose(load_ensemble(median.folder).predict_values(frames["val"]), middle)


def test_selection_weights_minimise_val_rmse(tiny_bert: str, reg) -> None:
    from honed.ensemble import build_ensemble

    _, _, dirs = reg
    recipe = _reg_ensemble(tiny_bert, reg, "selection", {"method": "selection", "selection": {"rounds": 10}})
    result = build_ensemble(recipe, quiet=True)
    doc = json.loads((result.folder / "ensemble.json").read_text())
    weights = np.asarray([m["weight"] for m in doc["members"]])
    assert doc["combine"] == "mean" and doc["task"] == "regression" and math.isclose(weights.sum(), 1.0)
    frames = _frames(recipe)
    val, truth = _values(dirs, frames["val"]), _truth(frames["val"])
    reported = result.metrics["ensemble"]["val_rmse"]
    assert math.isclose(reported, _rmse(np.tensordot(weights, val, axes=1), truth), rel_tol=1e-9)
    assert all(reported <= _rmse(v, truth) + 1e-12 for v in val)  # never worse than the best member on val


def test_stacking_fits_ridge_on_out_of_fold_values(tiny_bert: str, reg) -> None:
    from sklearn.linear_model import Ridge

    from honed.cv import cross_validate
    from honed.ensemble import build_ensemble, load_ensemble

    _, _, dirs = reg
    recipe = _reg_ensemble(tiny_bert, reg, "stack", {"method": "stacking", "stacking": {"folds": 2}}, members=2)
    result = build_ensemble(recipe, quiet=True)
    saved = load_ensemble(result.folder)
    assert saved.combine == "value_stacking" and type(saved.meta) is Ridge
    assert json.loads((result.folder / "ensemble.json").read_text())["meta"]["kind"] == "ridge"  # plain JSON
    frames = _frames(recipe)
    oof, full = result.combined.fitted_on, _values(dirs[:2], frames["train"])
    assert oof.shape == full.shape and not np.isnan(oof).any()
    assert not np.allclose(oof, full, atol=1e-3)  # out of fold: not the full members' predictions of their own rows
    pair = lambda f: (f["x"].tolist(), _truth(f).tolist())  # noqa: E731
    for i, d in enumerate(dirs[:2]):  # each member's out-of-fold values are honed cv's, on the ensemble's rows
        cv = cross_validate(str(d / "recipe.yaml"), 2, data={"train": pair(frames["train"]), "val": pair(frames["val"]),
                                                              "test": ([], [])},
                            overrides={"output_dir": str(reg[0] / f"cv{i}")})
        assert cv.task == "regression" and np.allclose(oof[i], cv.oof_probs[:, [cv.labels.index(n) for n in TARGETS]])
    refit = Ridge().fit(np.concatenate(list(oof), axis=1), _truth(frames["train"]))
    assert np.allclose(refit.coef_, saved.meta.coef_) and np.allclose(refit.intercept_, saved.meta.intercept_)
    test = _values(dirs[:2], frames["test"])  # rows the meta-learner was not fitted on
    expected = refit.predict(np.concatenate(list(test), axis=1))
    assert np.allclose(saved.predict_values(frames["test"]), expected)
    assert math.isclose(result.metrics["ensemble"]["test_rmse"], _rmse(expected, _truth(frames["test"])),
                        rel_tol=1e-6)
    assert not (result.folder / "folds").exists()


def test_bagging_scores_out_of_bag_by_rmse(tiny_bert: str, reg) -> None:
    from honed.ensemble import build_ensemble
    from honed.ensemble.bagging import bag_rows, out_of_bag

    root, csv, _ = reg
    recipe = _reg_recipe(tiny_bert, csv, root / "bag")
    recipe["ensemble"] = {"method": "bagging", "bagging": {"n_members": 2}}
    result = build_ensemble(recipe, quiet=True)  # members trained from a task-auto recipe: pinned to regression
    assert result.combined.combine == "mean" and result.task == "regression"
    train = _frames(recipe)["train"]
    left = out_of_bag(bag_rows(len(train), 2, True, 1.0, 0), len(train))
    total, count = np.zeros((len(train), 2)), np.zeros(len(train))
    for member, rows in zip(result.members, left, strict=True):
        total[rows] += _values([member.model_dir], train.iloc[rows].reset_index(drop=True))[0]
        count[rows] += 1
    seen = count > 0
    expected = _rmse(total[seen] / count[seen, None], _truth(train)[seen])
    assert result.metrics["oob_rows"] == int(seen.sum()) and math.isclose(result.metrics["oob_rmse"], expected,
                                                                           rel_tol=1e-9)


@pytest.fixture(scope="module")
def ml(tiny_bert: str, tmp_path_factory: pytest.TempPathFactory):
    """Two multi-label members (their own thresholds tuned on val), trained once."""
    import honed

    root = tmp_path_factory.mktemp("ml-ensemble")
    csv = root / "tags.csv"
    label_rows(80).to_csv(csv, index=False)
    dirs = [honed.fit(ml_recipe(tiny_bert, csv, root / f"m{i}", seed=i, report={"enabled": False},
                                optim={"lr": 3e-3}), quiet=True).model_dir for i in range(2)]
    return root, csv, dirs


def test_multilabel_average_and_its_own_thresholds(tiny_bert: str, ml, capsys) -> None:
    from honed.data.labels import MultiLabelMap
    from honed.ensemble import build_ensemble, load_ensemble
    from honed.inference import load_predictor
    from honed.metrics import best_thresholds, label_set_metrics

    root, csv, dirs = ml
    recipe = ml_recipe(tiny_bert, csv, root / "soft", report={"enabled": False})
    recipe["ensemble"] = {"method": "voting", "members": [{"name": f"m{i}", "prefit": str(d)} for i, d in
                                                          enumerate(dirs)]}
    result = build_ensemble(recipe, quiet=True)
    frames, names = _frames(recipe), result.labels
    val = frames["val"]
    members = [load_predictor(d) for d in dirs]
    mean = np.mean([m.predict_proba(val) for m in members], axis=0)
    saved = load_ensemble(result.folder)
    assert saved.task == "multilabel" and np.allclose(saved.predict_proba(val), mean)
    truth = MultiLabelMap(names).multi_hot(val)
    thresholds = json.loads((result.folder / "thresholds.json").read_text())["thresholds"]
    assert tuple(thresholds) == best_thresholds(mean, truth)  # tuned for the ensemble, as for one model
    got = result.metrics["ensemble"]
    assert math.isclose(got["val_micro_f1"], label_set_metrics(mean, truth, names, thresholds)["micro_f1"])
    assert math.isclose(got["val_map"], label_set_metrics(mean, truth, names)["map"])
    own = members[0].decision_map().thresholds  # a member is scored by its own thresholds
    assert math.isclose(result.metrics["members"]["m0"]["val_macro_f1"],
                        label_set_metrics(members[0].predict_proba(val), truth, names, own)["macro_f1"])
    test = frames["test"]
    source = root / "soft-test.csv"
    pd.DataFrame({"text": test["x"], "tags": ["|".join(s) for s in test["labels"]]}).to_csv(source, index=False)
    out = root / "soft-pred.csv"
    assert _main(capsys, "predict", str(result.folder), str(source), "-o", str(out)).returncode == 0
    table = pd.read_csv(out, keep_default_na=False)
    probs = saved.predict_proba(test)
    chosen = ["|".join(n for n, p, t in zip(names, row, thresholds) if p >= t) for row in probs]
    assert table["predicted"].tolist() == chosen and [f"prob_{n}" for n in names] == list(table.columns[2:])
    done = _main(capsys, "evaluate", str(result.folder), str(source))
    printed = dict(line.split("\t")[:2] for line in done.stdout.splitlines() if "\t" in line)
    assert done.returncode == 0 and math.isclose(float(printed["micro_f1"]), got["test_micro_f1"], abs_tol=1e-4)


def _write(path: Path, recipe: dict) -> str:
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("task, ensemble, expected", [
    ("regression", {"voting": "hard"}, "ensemble.voting: 'hard' combines classification outputs, not task regression"),
    ("regression", {"method": "soup"}, "ensemble.method: soup serves task classification only, not regression"),
    ("regression", {"method": "selection", "selection": {"metric": "accuracy"}},
     "ensemble.selection.metric: 'accuracy' scores task classification, not regression; use rmse or mae"),
    ("regression", {"method": "stacking", "stacking": {"meta": "logistic_regression"}},
     "ensemble.stacking.meta: 'logistic_regression' is not a scikit-learn regressor"),
    ("regression", {"voting": "median", "weights": [2, 1, 1]}, "ensemble.weights: voting median takes no weights"),
    ("regression", {"method": "stacking", "stacking": {"folds": 90}},
     "ensemble.stacking.folds: 57 training rows, fewer than 90 folds"),
    ("regression", {"extra": "classification"},
     "ensemble.members.3: member 'clf' is a classification model but the ensemble's data is task regression"),
    ("regression", {"extra": "multilabel"},
     "ensemble.members.3: member 'ml' is a multilabel model but the ensemble's data is task regression"),
    ("multilabel", {"method": "stacking"}, "ensemble.method: stacking does not serve task multilabel yet"),
    ("multilabel", {"voting": "mean"}, "ensemble.voting: 'mean' combines regression outputs, not task multilabel"),
])
def test_bad_task_settings_are_one_line_before_any_folder(tiny_bert: str, reg, ml, capsys, task: str,
                                                          ensemble: dict, expected: str) -> None:
    ensemble = {"method": "voting", **ensemble}
    extra = ensemble.pop("extra", None)
    if task == "regression":
        recipe = _reg_ensemble(tiny_bert, reg, "bad", ensemble)
        other = reg[0] / "classification.yaml"  # a member recipe of another task
        _write(other, tiny_recipe(tiny_bert, reg[1], reg[0] / "clf", task="classification"))
        extra = {"multilabel": {"name": "ml", "prefit": str(ml[2][0])},
                 "classification": {"name": "clf", "recipe": str(other)}}.get(extra)
    else:
        root, csv, dirs = ml
        recipe = ml_recipe(tiny_bert, csv, root / "bad")
        recipe["ensemble"] = {"members": [{"name": f"m{i}", "prefit": str(d)} for i, d in enumerate(dirs)],
                              **ensemble}
    if extra:
        recipe["ensemble"]["members"].append(extra)
    out = Path(recipe["output_dir"])
    done = _main(capsys, "ensemble", _write(out.parent / "bad.yaml", recipe), "--quiet")
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_regression_snapshots_keep_their_targets_and_average_in_target_units(tiny_bert: str, reg) -> None:
    """Snapshot models of one cyclic run are saved with the run's target map (mean/std), so each predicts in
    the targets' units and the mean ensemble of them is their mean."""
    from honed.ensemble import build_ensemble

    root, csv, _ = reg
    recipe = _reg_recipe(tiny_bert, csv, root / "snap", train__epochs=4)
    recipe["ensemble"] = {"method": "voting", "snapshots": {"cycles": 2}}
    result = build_ensemble(recipe, quiet=True)
    dirs = [m.model_dir for m in result.members]
    assert len(dirs) == 2 and all(json.loads((d / "targets.json").read_text())["names"] == list(TARGETS) for d in dirs)
    frames = _frames(recipe)
    val = _values(dirs, frames["val"])
    assert abs(val.mean() - _truth(frames["val"]).mean()) < 3 * _truth(frames["val"]).std()  # units, not z-scores
    assert math.isclose(result.metrics["ensemble"]["val_rmse"], _rmse(val.mean(axis=0), _truth(frames["val"])),
                        rel_tol=1e-9)

