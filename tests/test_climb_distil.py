"""The climb's distillation candidate: the kept ensemble's soft labels and a student trained 3x longer (the
distillation sweep in bench/RESULTS.md), applied to the best configuration of the baseline's size."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from honed.climb import stages
from honed.climb.configs import apply
from honed.climb.ensemble_stage import LONGER, distil_change
from honed.errors import HonedError
from honed.recipe import load_recipe
from tests.conftest import text_rows
from tests.test_climb import climb_tree

TEACHER = "{ensemble:c-0123456789}"


def recipe(**train: object) -> dict:
    return {"name": "student", "data": {"kind": "text", "train": "reviews.csv"}, "model": {"name": "tiny-bert"},
            "train": {"batch_size": 8, **train}, "techniques": [{"name": "ema", "decay": 0.9}]}


@pytest.mark.parametrize(("train", "key", "expected"), [
    ({"epochs": 2}, "epochs", 6),
    ({}, "epochs", 3 * load_recipe(recipe()).train.epochs),  # the default epochs, tripled
    ({"epochs": 2, "max_steps": 50}, "max_steps", 150),  # max_steps caps the run: more epochs would change nothing
])
def test_the_student_trains_three_times_longer_with_the_teachers_soft_labels(train: dict, key: str,
                                                                              expected: int) -> None:
    tree = recipe(**train)
    change = distil_change(load_recipe(tree).train, TEACHER)
    student = load_recipe(apply(tree, [change]))  # a valid recipe: the distill entry passes the registry's check
    assert LONGER == 3 and getattr(student.train, key) == expected
    assert apply(tree, [change])["techniques"] == [
        {"name": "ema", "decay": 0.9},  # the student's own techniques stay
        {"name": "distill", "teacher": TEACHER, "temperature": 2.0, "alpha": 0.5}]
    assert change.group == "distill" and change.runner == "fit" and change.cost == 3.0
    assert change.name == "distilled from the ensemble, 3x the training"


def test_a_kept_ensemble_is_distilled_into_the_best_baseline_sized_model(tiny_bert: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The path after an ensemble is kept, end to end: the acceptance rule is forced to pass (it is tested on its
    own in tests/test_climb.py), so the teacher wiring, the student's longer run and the outputs are what's tested."""
    from honed.climb.run import climb

    monkeypatch.setattr(stages, "accepts", lambda diff, alpha, pairs: (diff is not None, "forced by the test"))
    csv = tmp_path / "reviews.csv"
    text_rows(160).to_csv(csv, index=False)
    tree = climb_tree(tiny_bert, csv, stages={"optimisation": {"max_candidates": 1}, "ensemble": {}},
                      drop_below=None, single_model=True)  # baseline lr 1e-5 (at chance) and candidate lr 3e-3
    out = tmp_path / "climb"
    summary = climb(tree, output=out).summary
    rungs = [r["change"] for r in summary["ladder"]]
    assert rungs[:2] == ["baseline", "lr 3e-3"] and rungs[-1] == f"distilled from the ensemble, {LONGER}x the training"
    ensemble = summary["ladder"][-2]
    assert ensemble["stage"] == "ensemble" and ensemble["config"] in {r["config"] for r in summary["candidates"]
                                                                      if r["runner"] in ("ensemble", "crossfit")}
    student = load_recipe(yaml.safe_load((out / "best_recipe.yaml").read_text()))
    assert student.optim.lr == 3e-3 and student.train.epochs == LONGER * load_recipe(tree).train.epochs
    (distill,) = [t for t in student.techniques if t.name == "distill"]
    assert (distill.temperature, distill.alpha) == (2.0, 0.5)
    assert Path(distill.teacher).resolve() == (out / "best_ensemble").resolve()  # best_recipe.yaml trains alone
    members = json.loads((out / "best_ensemble" / "ensemble.json").read_text())["members"]
    assert len(members) == 2 and all((out / "best_ensemble" / m["path"]).is_dir() for m in members)
    assert (out / "best_model").is_dir() and (out / "best_ensemble" / "ensemble.json").is_file()
    saved = json.loads((out / "climb.json").read_text())
    assert saved["stopped"] == "done" and saved["ladder"][-1]["change"] == rungs[-1]


def test_unlabelled_rows_make_the_student_learn_only_soft_labels_for_longer() -> None:
    tree = recipe(epochs=2)
    change = distil_change(load_recipe(tree).train, TEACHER, ("data/train_transfer.csv", 300, 100))
    student = load_recipe(apply(tree, [change]))
    assert student.data.train == "data/train_transfer.csv" and student.train.epochs == 6
    assert apply(tree, [change])["techniques"][-1] == {"name": "distill", "teacher": TEACHER, "temperature": 2.0,
                                                        "alpha": 1.0}
    assert change.cost == 3.0 * 400 / 100  # 3x the epochs over 4x the rows
    assert change.name == "distilled from the ensemble, 3x the training, + 300 unlabelled rows (climb.transfer)"


def test_climb_transfer_rows_are_labelled_by_the_teacher_and_trained_on(tiny_bert: str, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's unlabelled file holds 40 new texts and every labelled one: those that are val or test inputs are
    left out (they would leak the scored rows into training), the rest is labelled by the kept ensemble."""
    from honed.climb.run import climb
    from honed.inference import load_predictor

    monkeypatch.setattr(stages, "accepts", lambda diff, alpha, pairs: (diff is not None, "forced by the test"))
    csv, unlabelled = tmp_path / "reviews.csv", tmp_path / "unlabelled.csv"
    text_rows(160).to_csv(csv, index=False)
    new = text_rows(40, seed=1).assign(text=lambda f: f["text"] + " (new)")
    given = pd.concat([new, text_rows(160)])[["text"]]  # the user's column, no labels
    given.to_csv(unlabelled, index=False)
    tree = climb_tree(tiny_bert, csv, stages={"optimisation": {"max_candidates": 1}, "ensemble": {}},
                      drop_below=None, single_model=True, transfer=str(unlabelled))
    out = tmp_path / "climb"
    summary = climb(tree, output=out).summary
    data = out / "data"
    train, val, test = (pd.read_csv(data / f"{s}.csv") for s in ("train", "val", "test"))
    scored = set(val["x"]) | set(test["x"])
    kept = [t for t in given["text"] if t not in scored]
    assert len(kept) == 40 + len(train) and f"climb.transfer: {len(val) + len(test)} rows repeat" in \
        " ".join(summary["notes"])
    assert summary["ladder"][-1]["change"].endswith(f", + {len(kept)} unlabelled rows (climb.transfer)")
    (written,) = data.glob("train_transfer-*.csv")
    both = pd.read_csv(written)
    assert both["x"].tolist() == train["x"].tolist() + kept
    assert both["label"][:len(train)].tolist() == train["label"].tolist()
    teacher = load_predictor(out / "best_ensemble")  # the first pair's kept ensemble, copied
    assert both["label"][len(train):].tolist() == teacher.predict(both[len(train):][["x"]].reset_index(drop=True))
    student = load_recipe(yaml.safe_load((out / "best_recipe.yaml").read_text()))
    assert Path(student.data.train).resolve() == written.resolve()
    (distill,) = [t for t in student.techniques if t.name == "distill"]
    assert distill.alpha == 1.0


def test_transfer_rows_from_an_image_folder_are_absolute_and_a_text_folder_or_task_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from honed.climb.spec import parse_climb
    from honed.climb.transfer import NEEDS, transfer_rows

    (tmp_path / "pool" / "a").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "pool" / "a" / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    spec = parse_climb({"transfer": "pool", "single_model": True}, source="t")
    image = load_recipe({"data": {"kind": "image", "train": "pool"}})
    empty = {s: pd.DataFrame({"x": pd.Series([], dtype=object)}) for s in ("val", "test")}
    written, dropped = transfer_rows(image, spec, "classification", "seeds", empty)
    (rows,) = written.values()
    assert dropped == 0 and sorted(rows["x"]) == [str((tmp_path / "pool" / "a" / f"{i}.png").resolve())
                                                  for i in range(3)]
    with pytest.raises(HonedError, match="climb.transfer: 'pool' is a folder; a text climb reads a table"):
        transfer_rows(load_recipe({"data": {"kind": "text", "train": "x.csv"}}), spec, "classification", "seeds", empty)
    for task, pairing in (("regression", "seeds"), ("classification", "folds")):
        with pytest.raises(HonedError, match=f"climb.transfer: {NEEDS[:40]}"):
            transfer_rows(image, spec, task, pairing, empty)


def test_climb_transfer_without_the_text_column_is_one_line(tiny_bert: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from honed.cli import main

    csv, unlabelled = tmp_path / "reviews.csv", tmp_path / "unlabelled.csv"
    text_rows(160).to_csv(csv, index=False)
    text_rows(10).rename(columns={"text": "review"}).to_csv(unlabelled, index=False)
    recipe_file = tmp_path / "climb.yaml"
    tree = climb_tree(tiny_bert, csv, single_model=True, transfer=str(unlabelled), stages=["optimisation", "ensemble"])
    recipe_file.write_text(yaml.safe_dump(tree))
    assert main(["climb", str(recipe_file), "--output", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"climb.transfer: {unlabelled}: no column 'text'" in err, err
    assert not (tmp_path / "out").exists()
