"""honed cv / honed.cross_validate: folds, group awareness, out-of-fold probabilities, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import honed
from honed.cli import main
from honed.cv import fold_indices
from honed.errors import HonedError
from tests.conftest import text_rows, tiny_recipe


def test_cross_validate_writes_oof_for_every_row(tiny_bert: str, tmp_path: Path) -> None:
    data = tmp_path / "reviews.csv"
    text_rows(50).to_csv(data, index=False)
    tree = tiny_recipe(tiny_bert, data, tmp_path / "cv", train__epochs=1, data__group_column="movie")
    result = honed.cross_validate(tree, folds=3)
    n = len(result.frame)
    assert (
        n == 40 and result.oof_probs.shape == (n, 2) and result.labels == ["neg", "pos"]
    )  # train + carved val, not test
    assert np.allclose(result.oof_probs.sum(axis=1), 1.0, atol=1e-5)
    assert len(result.per_fold) == 3 and sum(f["val_rows"] for f in result.per_fold) == n
    accs = [f["accuracy"] for f in result.per_fold]
    assert result.metrics_mean["accuracy"] == pytest.approx(np.mean(accs))
    assert result.metrics_std["accuracy"] == pytest.approx(np.std(accs, ddof=1))
    oof = pd.read_csv(tmp_path / "cv" / "oof.csv")
    assert list(oof.columns) == ["row", "label", "p_neg", "p_pos"] and len(oof) == n
    source = pd.read_csv(data)
    assert (source.loc[oof["row"], "label"].to_numpy() == oof["label"].to_numpy()).all()  # row = the file's 0-based row
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["folds"] == 3
    assert all((tmp_path / "cv" / "folds" / f"fold-{i}" / "model").is_dir() for i in range(3))
    with pytest.raises(HonedError, match="already exists"):
        honed.cross_validate(tree, folds=3)  # never overwritten without overwrite=True


def test_folds_are_stratified_and_keep_groups_apart() -> None:
    frame = pd.DataFrame(
        {"x": [f"t{i}" for i in range(60)], "label": ["a", "b", "b"] * 20, "group": [f"g{i % 12}" for i in range(60)]}
    )
    folds = fold_indices(frame, 4, seed=0)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen) == list(range(60))  # every row held out exactly once
    for train, val in folds:
        assert not set(frame["group"].iloc[train]) & set(frame["group"].iloc[val])
    plain = fold_indices(frame.drop(columns="group"), 5, seed=0)
    for _, val in plain:
        assert (frame["label"].iloc[val] == "a").sum() == 4  # 20 'a' rows over 5 folds


def test_bad_folds_are_one_line_exit_2(tiny_bert: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frame = pd.DataFrame({"x": [f"t{i}" for i in range(10)], "label": ["a"] * 8 + ["b"] * 2})
    with pytest.raises(HonedError, match="class 'b' has only 2 rows; use at most that many folds"):
        fold_indices(frame, 3, seed=0)
    data = tmp_path / "reviews.csv"
    text_rows(30).to_csv(data, index=False)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, data, tmp_path / "out")))
    assert main(["cv", str(recipe), "--folds", "1"]) == 2
    assert "--folds: expected 2 to 100, got 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
