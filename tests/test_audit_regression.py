"""honed audit / honed clean on regression recipes (issue 14): target distribution and outliers, duplicates
with conflicting targets, a ridge-probe learning curve; the classification-only checks skipped with a reason.
Planted problems on tiny data and the tiny random BERT of conftest.py; values recomputed here independently."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from honed.audit.base import Finding
from honed.audit.cleaning import clean
from honed.audit.outliers import robust_z
from honed.audit.ridge_curve import ALPHAS, _verdict
from honed.audit.run import audit, summary_lines
from honed.cli import main

WORDS = {"good": 1.0, "bad": -1.0, "great": 2.0, "awful": -2.0, "fine": 0.5, "dull": -0.5, "superb": 2.5, "poor": -1.5}


def score_rows(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    """n distinct texts (three words and a number) with targets `y` = 3 + word scores and `z` = 10 y."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        chosen = list(rng.choice(list(WORDS), 3))
        y = 3.0 + sum(WORDS[w] for w in chosen) + float(rng.normal(0, 0.1))
        rows.append({"text": f"{' '.join(chosen)} #{start + i}", "y": round(y, 3), "z": round(10 * y, 2)})
    return pd.DataFrame(rows)


def planted(tmp_path: Path) -> dict[str, Path]:
    """train (48 rows) / val (12) / test (12) with two target outliers (train rows 5 and 9), a missing target
    (row 40), a conflicting duplicate pair inside train (rows 11 and 12, case and spaces differ), a test row
    copied into train with another target (train row 20 = test row 2), and a consistent copy (rows 30, 31)."""
    train, val, test = score_rows(48, 0), score_rows(12, 1, 100), score_rows(12, 2, 200)
    train["y"] = train["y"].astype(object)
    train.loc[5, "y"], train.loc[9, "y"] = 60.0, -50.0
    train.loc[40, "y"] = None
    train.loc[12, "text"] = "  " + train.loc[11, "text"].upper()
    train.loc[12, "y"] = float(train.loc[11, "y"]) + 4.0
    train.loc[20, "text"] = test.loc[2, "text"]
    train.loc[20, "y"] = float(test.loc[2, "y"]) - 4.0
    train.loc[31, "text"], train.loc[31, "y"] = train.loc[30, "text"], float(train.loc[30, "y"]) + 0.01
    paths = {name: tmp_path / f"{name}.csv" for name in ("train", "val", "test")}
    for name, frame in zip(paths, (train, val, test)):
        frame.to_csv(paths[name], index=False)
    return paths


def recipe_for(tiny_bert: str, paths: dict[str, Path], out: Path, **data: object) -> dict:
    return {
        "name": "audit-regression",
        "seed": 0,
        "task": "regression",
        "output_dir": str(out),
        "data": {"kind": "text", "train": str(paths["train"]), "val": str(paths["val"]), "test": str(paths["test"]),
                 "label_column": "y", "max_length": 16, **data},
        "model": {"name": tiny_bert},
    }


def rows_of(result, name: str) -> pd.DataFrame:
    rows = result.finding(name).rows
    return rows if rows is not None else pd.DataFrame(columns=["split", "row", "reason", "detail"])


@pytest.fixture
def audited(tiny_bert: str, tmp_path: Path):
    paths = planted(tmp_path)
    recipe = recipe_for(tiny_bert, paths, tmp_path / "run")
    return paths, recipe, audit(recipe, quiet=True, near_duplicate=0.9999)


def test_target_distribution_and_outliers(audited) -> None:
    paths, _, result = audited
    train = pd.read_csv(paths["train"])
    usable = pd.concat([train.drop(index=40), pd.read_csv(paths["val"]), pd.read_csv(paths["test"])])["y"].to_numpy()
    found = result.finding("targets").data["targets"]["y"]["all"]
    assert found["count"] == 71 and np.isclose(found["mean"], usable.mean()) and np.isclose(found["max"], 60.0)
    assert np.isclose(found["std"], usable.std(ddof=1)) and np.isclose(found["q25"], np.quantile(usable, 0.25))
    assert np.isclose(found["skew"], stats.skew(usable, bias=False))
    by_split = result.finding("targets").data["targets"]["y"]["by_split"]
    assert by_split["train"]["count"] == 47
    assert np.isclose(by_split["val"]["mean"], pd.read_csv(paths["val"])["y"].mean())
    median = np.median(usable)
    z = (usable - median) / (1.4826 * np.median(np.abs(usable - median)))
    assert (np.abs(z) > 3.5).sum() == 2  # only the planted ones
    rows = rows_of(result, "targets")
    assert list(zip(rows["split"], rows["row"])) == [("train", 5), ("train", 9)]  # worst (60 vs ~3) first
    assert rows["robust_z"].iloc[0] == pytest.approx(z.max(), abs=0.01)
    assert "worst: train row 5: y 60 vs median" in " ".join(result.finding("targets").summary)
    corrupt = rows_of(result, "corrupt")
    assert list(zip(corrupt["row"], corrupt["reason"])) == [(40, "missing target")]


def test_duplicates_with_conflicting_targets(audited) -> None:
    _, _, result = audited
    finding = result.finding("target_conflicts")
    rows = rows_of(result, "target_conflicts")
    assert set(zip(rows["split"], rows["row"], rows["reason"])) == {
        ("train", 11, "conflicting targets"), ("train", 12, "conflicting targets"),
        ("train", 20, "conflicting targets across splits"), ("test", 2, "conflicting targets across splits")}
    assert finding.data["conflicting_sets"] == 2 and finding.data["across_splits"] == 1
    assert finding.data["consistent_sets"] == 1  # rows 30/31 differ by 0.01
    usable = result.context.data.usable()
    train = usable.loc[usable["split"] == "train", "target:y"].to_numpy()
    robust_std = 1.4826 * np.median(np.abs(train - np.median(train)))
    assert finding.data["scale"]["y"] == pytest.approx(robust_std)
    spread = [s["spread_std"]["y"] for s in finding.data["sets"]]
    assert spread == pytest.approx([4.0 / robust_std] * 2, rel=1e-3)
    dups = rows_of(result, "duplicates")
    assert set(dups.loc[dups["reason"] == "exact duplicate", "row"]) == {12, 31}
    assert "conflicting labels" not in set(dups["reason"])  # unequal targets are not conflicting classes
    leaks = rows_of(result, "leakage")
    assert list(leaks.loc[leaks["reason"] == "leak: exact duplicate", "row"]) == [20]


def test_ridge_learning_curve_matches_sklearn(audited) -> None:
    from sklearn.linear_model import RidgeCV

    _, _, result = audited
    data = result.finding("learning_curve").data
    index, vectors = result.context.embeddings()
    frame = result.context.data.frame.loc[index]
    train, held = (frame["split"] == "train").to_numpy(), (frame["split"] != "train").to_numpy()
    y = frame["target:y"].to_numpy()
    probe = RidgeCV(alphas=ALPHAS).fit(vectors[train], y[train])
    expected = float(np.sqrt(np.mean((probe.predict(vectors[held]) - y[held]) ** 2)))
    assert data["train_rows"][-1] == 47 and data["heldout_rows"] == 24
    assert data["rmse"]["y"][-1] == pytest.approx(expected, rel=1e-6)
    assert data["alpha"][-1] == probe.alpha_
    assert data["baseline_rmse"]["y"] == pytest.approx(float(np.sqrt(np.mean((y[held] - y[train].mean()) ** 2))))
    assert data["train_rows"] == [11, 23, 47]  # 25/50/100% of 47; 10% (4 rows) is under the probe's 5


def test_verdict_reads_rmse_lower_as_better() -> None:
    def verdict(curve: list[float]) -> Finding:
        finding = Finding("learning_curve", "curve")
        finding.data = {"train_rows": [10, 20], "rmse": {"y": curve}, "baseline_rmse": {"y": 2.0},
                        "normalised_rmse": curve}
        _verdict(finding, ["y"], baseline=2.0)
        return finding

    falling, flat, rising = verdict([1.0, 0.8]), verdict([1.0, 0.995]), verdict([0.8, 1.0])
    assert "still falling" in " ".join(falling.summary) and falling.recommendations
    assert "flat at the end" in " ".join(flat.summary) and not flat.recommendations
    assert "flat at the end" in " ".join(rising.summary) and not rising.recommendations
    assert "barely better than predicting the mean (-2.5% RMSE)" in " ".join(verdict([2.0, 1.95]).summary)


@pytest.mark.parametrize(("final", "wording"), [
    (2.4, "is worse than predicting the mean (+20.0% RMSE): the frozen embeddings carry little"),  # 2.4 / 2 - 1
    (2.0, "is no better than predicting the mean (+0.0% RMSE): the frozen embeddings carry little"),
    (1.92, "is barely better than predicting the mean (-4.0% RMSE): the frozen embeddings carry little"),
    (1.0, "is better than predicting the mean (-50.0% RMSE): the embeddings carry the target"),
])
def test_verdict_against_the_mean_follows_the_sign(final: float, wording: str) -> None:
    finding = Finding("learning_curve", "curve")
    finding.data = {"train_rows": [10, 20], "rmse": {"y": [3.0, final]}, "baseline_rmse": {"y": 2.0},
                    "normalised_rmse": [3.0, final]}
    _verdict(finding, ["y"], baseline=2.0)
    assert finding.summary[-1] == "the probe " + wording + (
        "" if final == 1.0 else " of the target, so fine-tuning (or another backbone) has to find it")
    assert sum("predicting the mean (" in line for line in finding.summary) == 1


def test_classification_checks_skipped_with_reason(audited, tmp_path: Path) -> None:
    _, _, result = audited
    names = [f.name for f in result.findings]
    assert names == ["corrupt", "balance", "targets", "label_variants", "duplicates", "target_conflicts", "leakage",
                     "outliers", "label_issues", "learning_curve"]
    for name in ("balance", "label_variants", "label_issues"):
        finding = result.finding(name)
        assert finding.summary[0].startswith("skipped: regression targets are numbers") and finding.rows is None
    report = json.loads((tmp_path / "run-audit" / "audit.json").read_text(encoding="utf-8"))
    assert report["meta"]["task"] == "regression" and report["meta"]["targets"] == "y"
    assert report["findings"][1]["data"]["skipped"].startswith("skipped:")
    page = (tmp_path / "run-audit" / "audit.html").read_text(encoding="utf-8")
    assert "Target distribution and outliers" in page and "data:image/png;base64," in page
    assert any(line.startswith("  skipped:") for line in summary_lines(result))


def test_regression_rows_are_zero_based_like_duplicates(audited) -> None:
    """Every finding's `row` is the 0-based row of its source file (the shared duplicates check's convention)."""
    paths, _, result = audited
    files = {split: pd.read_csv(path) for split, path in paths.items()}
    for name in ("targets", "target_conflicts", "duplicates"):
        rows = rows_of(result, name)
        assert len(rows)
        for split, row, shown in zip(rows["split"], rows["row"], rows["preview"]):
            assert " ".join(files[split].loc[row, "text"].split()) == shown, (name, split, row)
    conflicts = rows_of(result, "target_conflicts")
    assert files["test"].loc[2, "text"] == files["train"].loc[20, "text"]  # the planted leak, 0-based
    assert set(zip(conflicts["split"], conflicts["row"])) >= {("train", 20), ("test", 2)}
    assert "train row 5: y 60" in " ".join(result.finding("targets").summary)


def _targets_only(tiny_bert: str, tmp_path: Path, y: np.ndarray):
    """The targets check alone on one file of len(y) distinct texts with targets y (val/test carved from it)."""
    csv = tmp_path / "scores.csv"
    frame = score_rows(len(y), 5)
    frame["y"] = y
    frame.to_csv(csv, index=False)
    recipe = recipe_for(tiny_bert, {"train": csv, "val": None, "test": None}, tmp_path / "run")
    recipe["data"].update(val=None, test=None, split={"val": 0.2, "test": 0.2})
    return audit(recipe, quiet=True, write=False, checks=("targets",))


def test_zero_inflated_target_scaled_by_mean_absolute_deviation(tiny_bert: str, tmp_path: Path) -> None:
    y = np.concatenate([np.zeros(80), np.arange(1.0, 21.0)])  # 80% zeros: the MAD is 0
    result = _targets_only(tiny_bert, tmp_path, y)
    median = np.median(y)
    scale = np.sqrt(np.pi / 2) * np.mean(np.abs(y - median))  # the modified z-score's MeanAD fallback
    expected = np.flatnonzero(np.abs(y - median) / scale > 3.5)
    assert list(y[expected]) == list(np.arange(10.0, 21.0))  # 10 is flagged only at sqrt(pi/2): 1.4826 gives 3.2
    info = result.finding("targets").data["targets"]["y"]
    assert info["median"] == 0.0 and info["robust_scale"] == pytest.approx(scale, rel=1e-6)
    rows = rows_of(result, "targets")
    assert sorted(rows["row"]) == list(expected) and info["outliers"] == 11
    z = dict(zip(rows["row"], rows["robust_z"]))
    assert z[int(np.flatnonzero(y == 10.0)[0])] == pytest.approx(round(10.0 / scale, 2))


def test_constant_target_flags_nothing(tiny_bert: str, tmp_path: Path) -> None:
    result = _targets_only(tiny_bert, tmp_path, np.full(30, 1.5))
    finding = result.finding("targets")
    assert finding.data["rows"] == 0 and finding.rows is None
    assert np.array_equal(robust_z(np.full(30, 1.5)), np.zeros(30))  # finite zeros, not 0 / 0
    assert any("target y is constant (1.5)" in line for line in finding.recommendations)


def test_auto_task_and_several_targets(tiny_bert: str, tmp_path: Path) -> None:
    paths = planted(tmp_path)
    frame = pd.read_csv(paths["train"])
    frame.loc[40, "y"] = 1.5  # no missing target here
    frame.loc[17, "z"] = 900.0  # an outlier in z only
    frame.to_csv(paths["train"], index=False)
    recipe = recipe_for(tiny_bert, paths, tmp_path / "run", label_column=["y", "z"])
    recipe["task"] = "auto"  # several label columns: regression
    result = audit(recipe, quiet=True, write=False, checks=("targets", "learning_curve"))
    assert result.context.data.task == "regression" and result.context.data.targets == ["y", "z"]
    rows = rows_of(result, "targets")
    assert set(zip(rows["row"], rows["target"])) == {(5, "y"), (9, "y"), (17, "z")}  # z kept its values at 5, 9
    assert result.context.data.frame.loc[0, "label"].startswith("y=")  # several targets shown by name
    assert set(result.finding("learning_curve").data["rmse"]) == {"y", "z"}


def test_val_and_test_carved_at_random_from_one_file(tiny_bert: str, tmp_path: Path) -> None:
    csv = tmp_path / "scores.csv"
    score_rows(50, 3).to_csv(csv, index=False)
    recipe = recipe_for(tiny_bert, {"train": csv, "val": None, "test": None}, tmp_path / "run")
    recipe["data"].update(val=None, test=None, split={"val": 0.2, "test": 0.2})  # stratified by default: no classes
    result = audit(recipe, quiet=True, write=False, checks=("targets",))
    assert result.context.data.frame["split"].value_counts().to_dict() == {"train": 30, "val": 10, "test": 10}
    assert result.finding("targets").data["targets"]["y"]["all"]["count"] == 50


def test_classification_audit_has_no_regression_checks(tiny_bert: str, tmp_path: Path) -> None:
    from tests.conftest import text_rows

    csv = tmp_path / "reviews.csv"
    text_rows(40).to_csv(csv, index=False)
    recipe = {"name": "c", "seed": 0, "output_dir": str(tmp_path / "run"),
              "data": {"kind": "text", "train": str(csv), "max_length": 16}, "model": {"name": tiny_bert}}
    result = audit(recipe, quiet=True, write=False, checks=("balance", "targets"))
    assert [f.name for f in result.findings] == ["corrupt", "balance", "targets"]
    assert result.finding("targets").summary == ["skipped: a classification recipe has no numeric targets"]


def test_clean_drops_outlying_targets(audited, tmp_path: Path) -> None:
    paths, recipe, _ = audited
    result = clean(recipe, output=tmp_path / "clean", quiet=True, near_duplicate=0.9999, drop_outliers=True)
    reasons = dict(zip(result.manifest["row"], result.manifest["reason"]))
    assert reasons == {5: "target outlier", 9: "target outlier", 12: "exact duplicate", 20: "leak: exact duplicate",
                       31: "exact duplicate", 40: "missing target"}
    cleaned = pd.read_csv(result.files["train"])
    assert len(cleaned) == 48 - 6 and cleaned["y"].max() < 60


@pytest.mark.parametrize(("task", "policy"), [("regression", "relabel"), ("auto", "drop")])
def test_cli_clean_refuses_labels_on_regression(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch, task: str, policy: str) -> None:
    recipe = recipe_for(tiny_bert, planted(tmp_path), tmp_path / "run")
    recipe["task"] = task  # auto: the data's numeric targets make it regression
    monkeypatch.setattr(importlib.import_module("honed.audit.cleaning"), "audit", _no_audit)  # before its work
    code = main(["clean", _write(tmp_path, recipe), "--quiet", "--labels", policy])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"--labels {policy}: label issues are a classification check and this recipe is regression" in err
    assert not (tmp_path / "run-clean").exists() and not (tmp_path / "run-audit").exists()


@pytest.mark.parametrize("task", ["regression", "auto"])
def test_cli_clean_refuses_a_label_threshold_on_regression(tiny_bert: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch, task: str) -> None:
    recipe = recipe_for(tiny_bert, planted(tmp_path), tmp_path / "run")
    recipe["task"] = task
    monkeypatch.setattr(importlib.import_module("honed.audit.cleaning"), "audit", _no_audit)
    code = main(["clean", _write(tmp_path, recipe), "--quiet", "--label-threshold", "0.9"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--label-threshold 0.9: label issues are a classification check and this recipe is regression" in err
    assert not (tmp_path / "run-clean").exists()


def test_python_audit_refuses_multilabel(tiny_bert: str, tmp_path: Path) -> None:
    from honed.errors import HonedError

    recipe = recipe_for(tiny_bert, planted(tmp_path), tmp_path / "run")
    recipe["task"] = "multilabel"
    with pytest.raises(HonedError, match="honed audit does not support task multilabel yet"):
        audit(recipe, quiet=True)
    assert not (tmp_path / "run-audit").exists()


def _no_audit(*args: object, **kwargs: object) -> None:
    raise AssertionError("the audit ran before the refusal")


def _write(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


def test_cli_audits_regression(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = recipe_for(tiny_bert, planted(tmp_path), tmp_path / "run")
    code = main(["audit", _write(tmp_path, recipe), "--quiet", "--checks", "targets,target_conflicts",
                 "--target-tolerance", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "Target distribution and outliers:" in out
    assert "0 sets of identical rows whose targets differ by more than 5.0 robust std" in out


def test_non_numeric_target_is_one_line(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = planted(tmp_path)
    frame = pd.read_csv(paths["train"])
    frame["y"] = frame["y"].astype(object)
    frame.loc[7, "y"] = "oops"
    frame.to_csv(paths["train"], index=False)
    code = main(["audit", _write(tmp_path, recipe_for(tiny_bert, paths, tmp_path / "run")), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "target column 'y' row 8 holds 'oops', not a finite number" in err
    assert not (tmp_path / "run-audit").exists()
