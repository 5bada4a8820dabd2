"""Multi-label, the refusals: bad multi-label input fails in one line before a run folder is made, the verbs
without multi-label support refuse the task, and so do the estimators. Split from test_multilabel.py, whose
helpers (label rows, the recipe, the in-process CLI) these use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_multilabel import _main, _one_line, label_rows, ml_csv, ml_recipe  # noqa: F401  (ml_csv is a fixture)


def _write(tmp_path: Path, recipe: dict, name: str = "recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("change, expected", [
    ({"empty": True}, "data.train: no row holds a label (every cell of data.label_column 'tags' is empty)"),
    ({"cell": "[plot, acting"}, "row 3 of data.label_column 'tags': '[plot, acting' starts like a JSON list"),
    ({"val": "sequel"}, "data.val: label 'sequel' (row 2) never occurs in the training data"),
    ({"data__label_column": ["tags", "movie"]}, "data.label_column lists 2 columns"),
    ({"loss": {"name": "focal"}}, "loss.name 'focal': a classification-only loss"),
    ({"loss": {"name": "bce", "pos_weight": "even"}}, "pos_weight must be 'balanced' or a list of numbers"),
    ({"train__metric": "rmse"}, "train.metric 'rmse' is not a multilabel metric"),
    ({"techniques": [{"name": "snapshots", "cycles": 1}]}, "Snapshots trains classification, regression only"),
    ({"techniques": [{"name": "distill", "teacher": "runs/none"}]}, "trains classification only, not task multilabel"),
])
def test_bad_multilabel_input_is_one_line(tiny_bert: str, tmp_path: Path, change: dict, expected: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rows = label_rows(40)
    if change.pop("empty", False):
        rows["tags"] = ""
    if "cell" in change:
        rows.loc[2, "tags"] = change.pop("cell")
    csv = tmp_path / "data.csv"
    rows.to_csv(csv, index=False)
    extra = {}
    if "val" in change:
        val = label_rows(10, seed=1)
        val.loc[1, "tags"] = change.pop("val")
        val.to_csv(tmp_path / "val.csv", index=False)
        extra = {"val": str(tmp_path / "val.csv")}
    recipe = ml_recipe(tiny_bert, csv, tmp_path / "run", **change)
    recipe["data"].update(extra)
    _one_line(_main(capsys, "train", _write(tmp_path, recipe), "--quiet"), expected)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["audit", "clean", "climb", "lr-find",
                                  "batch-find"])  # tune, cv (test_tune_cv_tasks.py), ensemble, pretrain run it
def test_verbs_without_multilabel_refuse_it(tiny_bert: str, ml_csv: Path, tmp_path: Path, verb: str,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = ml_recipe(tiny_bert, ml_csv, tmp_path / "run")
    done = _main(capsys, verb, _write(tmp_path, recipe))
    _one_line(done, f"honed {verb} does not support task multilabel yet")
    expected = "; train, evaluate, predict, report, ensemble, tune, cv, pretrain do, and train writes"
    assert expected in done.stderr, done.stderr


def test_estimators_refuse_multilabel(tiny_bert: str) -> None:
    from honed import FineTuneClassifier
    from honed.errors import HonedError

    texts = [f"text {i}" for i in range(8)]
    with pytest.raises(HonedError, match="multi-label indicator matrix is not supported by the estimators"):
        FineTuneClassifier(model=tiny_bert).fit(texts, np.eye(8, 2, dtype=int))
    with pytest.raises(HonedError, match="task multilabel is not supported by the estimators yet"):
        FineTuneClassifier(model=tiny_bert, recipe={"task": "multilabel"}).fit(texts, ["a", "b"] * 4)
