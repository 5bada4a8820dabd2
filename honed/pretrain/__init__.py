"""Domain-adaptive pretraining (`honed pretrain`): continue a backbone's self-supervised training on
unlabelled in-domain data before fine-tuning ("Don't stop pretraining", ULMFiT). One objective per
data kind, looked up in OBJECTIVES: masked-LM for text (mlm.py), rotation prediction for images
(rotation.py). The result is a backbone a fine-tuning recipe names as `model.name` (HF folder) or
`model.weights` (torchvision state dict)."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from honed.pretrain.common import finish_run, start_run, unlabelled_rows
from honed.pretrain.mlm import pretrain_mlm
from honed.pretrain.rotation import pretrain_rotation
from honed.recipe import Recipe, load_recipe
from honed.rundir import check_run_dir
from honed.train.interrupt import stop_on_signals

# An objective gets the recipe, its unlabelled rows, `begin` (creates RUN_DIR; called once the model
# has loaded, so a bad model or data never removes an old run) and quiet; it returns the summary.
OBJECTIVES: dict[str, Callable[[Recipe, list[Any], Callable[[], Path], bool], dict[str, Any]]] = {
    "text": pretrain_mlm,
    "image": pretrain_rotation,
}


def pretrain(recipe: Any, overwrite: bool = False, quiet: bool = False, **overrides: Any) -> Path:
    """Run the recipe's pretraining objective; returns the run folder (backbone in RUN_DIR/backbone)."""
    spec = load_recipe(recipe, overrides)
    check_run_dir(spec.run_dir(), overwrite, resume=False)
    rows = unlabelled_rows(spec)
    started = time.perf_counter()
    with stop_on_signals():  # Ctrl-C/SIGTERM: stop at the end of the step (Interrupted), not mid-write
        summary = OBJECTIVES[spec.data.kind](spec, rows, lambda: start_run(spec, overwrite), quiet)
    finish_run(spec.run_dir(), summary, time.perf_counter() - started)
    return spec.run_dir()


class _CallableModule(types.ModuleType):
    """Lets `honed.pretrain(recipe, ...)` work although `honed.pretrain` is this package."""

    def __call__(self, recipe: Any, overwrite: bool = False, quiet: bool = False, **overrides: Any) -> Path:
        return pretrain(recipe, overwrite=overwrite, quiet=quiet, **overrides)


sys.modules[__name__].__class__ = _CallableModule
