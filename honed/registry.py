"""Name -> factory registries (timm style).

Models, losses, schedules and techniques are looked up by name with flat keyword arguments, so a
YAML recipe, the CLI, Python and a hyperparameter search all name the same things.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from honed.errors import HonedError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories: `@REG.register("name")` then `REG.build("name", **kw)`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._table:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._table[name] = factory
            return factory

        return add

    def get(self, name: str, field: str = "") -> Callable[..., T]:
        """A registered factory, or `package.module:attr` imported because the recipe names it."""
        if ":" in name:
            return _import(name, field or self.kind)
        if name not in self._table:
            where = f"{field}: " if field else ""
            raise HonedError(f"{where}unknown {self.kind} '{name}'{did_you_mean(name, self._table)}")
        return self._table[name]

    def build(self, name: str, field: str = "", **kwargs: Any) -> T:
        factory = self.get(name, field)
        try:
            return factory(**kwargs)
        except (TypeError, ValueError) as exc:  # factories reject bad settings with these
            raise HonedError(f"{field or self.kind} '{name}': {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: str) -> bool:
        return name in self._table


def _import(path: str, field: str) -> Callable[..., Any]:
    """Import `module:attr`; an explicit opt-in to running user code named in a recipe."""
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise HonedError(f"{field}: cannot import '{path}': {exc}") from exc
