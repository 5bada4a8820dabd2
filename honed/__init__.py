"""honed: fine-tune pretrained PyTorch models, then push their accuracy further."""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers.utils import logging as _hf_logging  # noqa: E402

_hf_logging.set_verbosity_error()
_hf_logging.disable_progress_bar()

from honed.audit import audit, clean  # noqa: E402
from honed.errors import HonedError  # noqa: E402
from honed.fit import Run, fit  # noqa: E402
from honed.recipe import Recipe, load_recipe  # noqa: E402

__all__ = ["HonedError", "Recipe", "Run", "audit", "clean", "fit", "load_recipe", "FineTuneClassifier", "cross_validate", "prune", "pretrain"]
__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: keeps `import honed` light
    if name == "FineTuneClassifier":
        from honed.estimator import FineTuneClassifier

        return FineTuneClassifier
    if name == "cross_validate":
        from honed.cv import cross_validate

        return cross_validate
    if name in ("prune", "pretrain"):  # callable subpackages: honed.prune(model_dir, 0.5), honed.pretrain(recipe)
        import importlib

        return importlib.import_module(f"honed.{name}")
    raise AttributeError(name)
