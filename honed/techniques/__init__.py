"""Techniques: one file each, registered by name, hooked to the loop's events (see train/events.py).

Adding a technique = one module in this package that registers itself + its tests; every module
here is imported when techniques are built, so the loop and this file do not change.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from honed.recipe import TechniqueSpec
from honed.registry import Registry
from honed.train.events import capable

TECHNIQUES: Registry[Any] = Registry("technique")


def load_all() -> None:
    """Import every technique module so each registers itself."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def build_techniques(specs: list[TechniqueSpec]) -> list[Any]:
    load_all()
    built = []
    for i, spec in enumerate(specs):
        kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
        built.append(TECHNIQUES.build(spec.name, field=f"techniques.{i}", **kwargs))
    return built


def technique_classes(recipe: Any) -> list[tuple[str, Any]]:
    """(name, class or factory) of each technique a recipe lists (registered, or a user's class named by
    import path), for checks that read capability flags before anything is built."""
    load_all()
    return [(t.name, TECHNIQUES.get(t.name, f"techniques.{i}.name")) for i, t in enumerate(recipe.techniques)]


def flagged(recipe: Any, flag: str) -> list[str]:
    """Names of the recipe's techniques that declare `flag` (see honed/train/events.py)."""
    return [name for name, cls in technique_classes(recipe) if capable(cls, flag)]
