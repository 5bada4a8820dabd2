"""Recipes: every shipped recipe validates; typos and bad values fail with the key's path."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed import HonedError, load_recipe
from honed.recipe import parse_override

RECIPES = sorted((Path(__file__).resolve().parent.parent / "recipes").glob("*.yaml"))


def test_recipes_exist() -> None:
    assert {p.name for p in RECIPES} >= {"quickstart.yaml", "fashion-mnist.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.description, "every shipped recipe says what it does"


def test_dotted_overrides_apply_with_yaml_types() -> None:
    recipe = load_recipe(
        RECIPES[0],
        dict(
            [
                parse_override("optim.lr=3e-5"),
                parse_override("data.max_length=64"),
                parse_override("data.labels=[a, b]"),
            ]
        ),
    )
    assert recipe.optim.lr == pytest.approx(3e-5)
    assert recipe.data.max_length == 64
    assert recipe.data.labels == ["a", "b"]


def test_yaml_1_1_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("optim:\n  lr: 3e-5\nloss:\n  name: cross_entropy\n  label_smoothing: 1e-1\n")
    recipe = load_recipe(path)
    assert recipe.optim.lr == pytest.approx(3e-5)
    assert recipe.loss.model_dump()["label_smoothing"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"optim": {"lrr": 1e-3}}, "unknown key 'optim.lrr'; did you mean 'optim.lr'?"),
        ({"dataa": {}}, "unknown key 'dataa'; did you mean 'data'?"),
        ({"data": {"split": {"vall": 0.1}}}, "unknown key 'data.split.vall'; did you mean 'data.split.val'?"),
        ({"train": {"epochs": "two"}}, "'train.epochs'"),
        ({"train": {"epochs": 0}}, "'train.epochs': Input should be greater than or equal to 1"),
        ({"optim": {"lr": -1}}, "'optim.lr'"),
        ({"train": {"metric": "acc"}}, "did you mean 'accuracy'"),
    ],
)
def test_bad_recipe_names_the_key(tree: dict, message: str) -> None:
    with pytest.raises(HonedError, match=None) as info:
        load_recipe(tree)
    assert message in str(info.value)


def test_override_into_a_value_is_rejected() -> None:
    with pytest.raises(HonedError, match="'optim.lr' is a value"):
        load_recipe({"optim": {"lr": 1e-3}}, {"optim.lr.x": 1})


def test_override_needs_key_and_value() -> None:
    with pytest.raises(HonedError, match="expected KEY=VALUE"):
        parse_override("optim.lr")


def test_missing_recipe_file() -> None:
    with pytest.raises(HonedError, match="recipe file 'nope.yaml' not found"):
        load_recipe("nope.yaml")
