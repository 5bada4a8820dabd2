"""The CLI: every bad input ends in one line naming the field/file/row, exit code 2, nothing overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from honed.cli import main
from tests.conftest import text_rows, tiny_recipe


def _write_recipe(tmp_path: Path, recipe: dict) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert expected in err, err


@pytest.fixture
def recipe(tiny_bert: str, text_csv: Path, tmp_path: Path) -> dict:
    return tiny_recipe(tiny_bert, text_csv, tmp_path / "run", train__epochs=1)


def _csv(tmp_path: Path, frame, name: str = "d.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lrr=0.1", "unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
        ("train.epochs=abc", "'train.epochs'"),
        ("train.batch_size=0", "'train.batch_size': Input should be greater than or equal to 1"),
        ("data.train=missing.csv", "data.train: file 'missing.csv' not found"),
        ("data.text_column=review", "no column 'review' (set by data.text_column)"),
        ("model.name=no-such-org/no-such-model", "model.name: cannot load 'no-such-org/no-such-model'"),
        ("loss.name=focul", "unknown loss 'focul'"),
        ("loss.name=nosuchpkg.losses:MyLoss", "cannot import 'nosuchpkg.losses:MyLoss'"),
    ],
)
def test_bad_recipe_values(
    recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    _fails(["train", _write_recipe(tmp_path, recipe), override, "--quiet"], capsys, expected)
    assert not (tmp_path / "run").exists(), "a failed start leaves no run folder behind"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (text_rows(30).iloc[:0], "holds no rows"),
        (text_rows(30).assign(label="pos"), "only one class ('pos')"),
        (text_rows(30).assign(label=lambda f: f["label"].where(f.index != 4, "")), "row 5 has an empty or NaN label"),
    ],
)
def test_bad_training_files(
    recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], frame, expected: str
) -> None:
    _fails(
        ["train", _write_recipe(tmp_path, recipe), f"data.train={_csv(tmp_path, frame)}", "--quiet"], capsys, expected
    )


def test_unseen_validation_label(recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    val = _csv(tmp_path, text_rows(10).assign(label="meh"), "val.csv")
    _fails(
        ["train", _write_recipe(tmp_path, recipe), f"data.val={val}", "--quiet"],
        capsys,
        "data.val: label 'meh' never occurs",
    )


def test_non_utf8_text(recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ngood,pos\n" + "tr\u00e8s mauvais,neg\n".encode("latin-1"))
    _fails(
        ["train", _write_recipe(tmp_path, recipe), f"data.train={path}", "--quiet"],
        capsys,
        "is not UTF-8 text (line 3)",
    )


def test_existing_run_folder_is_not_overwritten(
    recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run").mkdir()
    keep = tmp_path / "run" / "keep.txt"
    keep.write_text("precious")
    _fails(["train", _write_recipe(tmp_path, recipe), "--quiet"], capsys, "already exists; pass --overwrite")
    assert keep.read_text() == "precious"


def test_resume_without_checkpoint(recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fails(["train", _write_recipe(tmp_path, recipe), "--resume", "--quiet"], capsys, "has no checkpoint to resume")


def test_debug_shows_the_traceback(recipe: dict, tmp_path: Path) -> None:
    from honed import HonedError

    with pytest.raises(HonedError):
        main(["--debug", "train", _write_recipe(tmp_path, recipe), "optim.lrr=1"])


def test_train_then_evaluate_and_predict(
    recipe: dict, tmp_path: Path, text_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", _write_recipe(tmp_path, recipe), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test" in out and "run folder:" in out
    model = str(tmp_path / "run" / "model")
    assert main(["evaluate", model, str(text_csv)]) == 0
    assert "accuracy" in capsys.readouterr().out
    target = tmp_path / "pred.csv"
    assert main(["predict", model, str(text_csv), "-o", str(target)]) == 0
    capsys.readouterr()
    lines = target.read_text().splitlines()
    assert lines[0] == "input,predicted,prob_neg,prob_pos" and len(lines) == 81
    _fails(["predict", model, str(text_csv), "-o", str(target)], capsys, "already exists; pass --overwrite")
    _fails(["evaluate", str(tmp_path), str(text_csv)], capsys, "not a model folder saved by honed")


def test_recipes_lists_shipped_recipes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    assert "recipes/quickstart.yaml" in capsys.readouterr().out
