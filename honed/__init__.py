"""honed: fine-tune pretrained PyTorch models, then push their accuracy further.

The public API is imported lazily, so `import honed` and `honed --help` stay light (torch and friends
load when a name that needs them is first used). `honed.fit`, `honed.audit` and `honed.climb` name both a function and
the module or package that defines it; as with an eager `from honed.fit import fit`, the public name is
the function: the package's module class holds them as properties, which the import system's binding of
the submodule cannot replace.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from honed.errors import HonedError  # noqa: E402

__all__ = ["HonedError", "Recipe", "Run", "audit", "clean", "fit", "load_recipe", "FineTuneClassifier",
           "FineTuneRegressor", "cross_validate", "prune", "pretrain", "export_model", "climb", "ClimbResult"]
__version__ = "0.1.0"

_LAZY = {  # public name -> the module that defines it
    "Recipe": "honed.recipe", "load_recipe": "honed.recipe", "Run": "honed.fit",
    "clean": "honed.audit", "FineTuneClassifier": "honed.estimator", "cross_validate": "honed.cv",
    "FineTuneRegressor": "honed.estimator",
    "export_model": "honed.export", "ClimbResult": "honed.climb.run",
}
_SUBPACKAGES = ("prune", "pretrain")  # callable subpackages: honed.prune(model_dir, 0.5), honed.pretrain(recipe)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"honed.{name}")
    raise AttributeError(f"module 'honed' has no attribute {name!r}")


def _function(module: str, name: str) -> property:
    """A public function whose defining module shares its name: read lazily; the submodule's binding is ignored."""

    def get(_self: types.ModuleType) -> Any:
        return getattr(importlib.import_module(module), name)

    def ignore(_self: types.ModuleType, _value: Any) -> None:
        """importlib sets honed.<name> to the submodule after loading it; the function stays the public name."""

    return property(get, ignore)


class _Honed(types.ModuleType):
    fit = _function("honed.fit", "fit")
    audit = _function("honed.audit", "audit")
    climb = _function("honed.climb.run", "climb")


sys.modules[__name__].__class__ = _Honed
