"""Pruning: one-shot magnitude/structured pruning of a saved model (`honed prune`, `honed.prune(...)`)
and the report of what it bought; gradual pruning during training is the `prune` technique.

`honed.prune` is this package and is also callable: `honed.prune("runs/x/model", 0.5)` runs
`honed.prune.command.prune` (a module subclass with `__call__`, the documented way to make a module callable).
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from honed.prune.command import prune

        return prune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
