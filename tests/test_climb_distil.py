"""The climb's distillation candidate: the kept ensemble's soft labels and a student trained 3x longer (the
distillation sweep in bench/RESULTS.md), applied to the best configuration of the baseline's size."""

from __future__ import annotations

import pytest

from honed.climb.configs import apply
from honed.climb.ensemble_stage import LONGER, distil_change
from honed.recipe import load_recipe

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
