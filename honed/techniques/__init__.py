"""Techniques: one file each, registered by name, hooked to the loop's events (see train/events.py)."""

from __future__ import annotations

from typing import Any

from honed.recipe import TechniqueSpec
from honed.registry import Registry

TECHNIQUES: Registry[Any] = Registry("technique")


def build_techniques(specs: list[TechniqueSpec]) -> list[Any]:
    from honed.techniques import early_stopping  # noqa: F401 - registers itself

    built = []
    for i, spec in enumerate(specs):
        kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
        built.append(TECHNIQUES.build(spec.name, field=f"techniques.{i}", **kwargs))
    return built
