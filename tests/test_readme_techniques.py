"""Every one-line recipe example in the README's technique table is a valid recipe fragment whose
named schedule, loss and techniques build."""

from __future__ import annotations

import re

import pytest
import yaml

from honed.losses import build_loss
from honed.recipe import _Loader, load_recipe
from honed.techniques import build_techniques
from honed.train.schedules import build_schedule
from tests.conftest import REPO

SECTIONS = ("techniques:", "loss:", "schedule:", "optim:", "model:", "augment:", "preset:")


def _fragments() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text[text.index("## Techniques") : text.index("## Several processes")]
    return [f for f in re.findall(r"`([^`]+)`", table) if f.startswith(SECTIONS) and "mypkg" not in f]


def test_table_has_examples() -> None:
    assert len(_fragments()) > 20


@pytest.mark.parametrize("fragment", _fragments())
def test_example_builds(fragment: str) -> None:
    tree = yaml.load(fragment, Loader=_Loader)  # as honed reads recipe files
    recipe = load_recipe({"model": {"name": "m"}, **tree} if "model" not in tree else tree)
    build_techniques(recipe.techniques)
    build_loss(recipe.loss, (10, 20))
    build_schedule(recipe.schedule, 10_000)
