"""The Python API checks the task as the CLI does (honed/cli/tasks.py): `honed.climb`, `honed.prune` and
`honed.export_model` refuse a task they do not run in one line before writing anything, and `honed.pretrain`
(label-free) runs on regression and multi-label recipes, whose fine-tune then starts from its backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

import honed
from honed.errors import HonedError
from tests.test_multilabel import label_rows, ml_recipe
from tests.test_regression import _cli, _write, reg_recipe, regression_rows


@pytest.fixture
def reg_run(tiny_bert: str, tmp_path: Path) -> honed.Run:
    csv = tmp_path / "scores.csv"
    regression_rows(48).to_csv(csv, index=False)
    return honed.fit(reg_recipe(tiny_bert, csv, tmp_path / "reg", train__epochs=1), quiet=True)


def test_prune_and_export_refuse_a_regression_model_before_writing(reg_run: honed.Run, tmp_path: Path) -> None:
    with pytest.raises(HonedError, match="honed prune does not support task regression yet"):
        honed.prune(reg_run.model_dir, 0.5, output=tmp_path / "pruned", quiet=True)
    with pytest.raises(HonedError, match="honed export does not support task regression yet"):
        honed.export_model(reg_run.model_dir, "torchscript", output=tmp_path / "exported", quiet=True)
    assert not (tmp_path / "pruned").exists() and not (tmp_path / "exported").exists()


def test_climb_refuses_multilabel_before_making_its_folder(tiny_bert: str, tmp_path: Path) -> None:
    csv = tmp_path / "tags.csv"
    label_rows(40).to_csv(csv, index=False)
    with pytest.raises(HonedError, match="honed climb does not support task multilabel yet"):
        honed.climb(ml_recipe(tiny_bert, csv, tmp_path / "run"), output=tmp_path / "climb")
    assert not (tmp_path / "climb").exists()


@pytest.mark.parametrize("task", ["regression", "multilabel"])
def test_pretrain_runs_on_a_regression_or_multilabel_recipe(tiny_bert: str, tmp_path: Path, task: str) -> None:
    csv = tmp_path / "rows.csv"
    rows = regression_rows(48) if task == "regression" else label_rows(48)
    rows.to_csv(csv, index=False)
    make = reg_recipe if task == "regression" else ml_recipe
    recipe = make(tiny_bert, csv, tmp_path / "pre", pretrain={"max_rows": 16, "batch_size": 8})
    done = _cli("pretrain", _write(tmp_path, recipe), "--quiet")
    assert done.returncode == 0, done.stderr
    backbone = tmp_path / "pre" / "backbone"
    assert (backbone / "config.json").is_file()
    tuned = honed.fit(make(str(backbone), csv, tmp_path / "ft", train__epochs=1), quiet=True)
    metric = "test_rmse" if task == "regression" else "test_micro_f1"
    assert tuned.recipe.task == task and metric in tuned.metrics and "test_accuracy" not in tuned.metrics
