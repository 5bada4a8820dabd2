"""Hyperparameter search with Optuna: `honed tune` on the CLI, `from honed.tune import tune` in Python.

space.py: the `search:` parameters -> Optuna suggestions and grid; study.py: storage, sampler and
pruner registries; objective.py: one trial = one honed fit (or cross-validation); outputs.py:
trials.csv, best_recipe.yaml, importances, plots, tune_report.html, top_trials.json.
"""

from __future__ import annotations

from typing import Any


def tune(recipe: Any, **kwargs: Any) -> Any:
    """Run, resume or join the recipe's study; see honed/tune/run.py `tune` (imported lazily: the
    CLI imports this package for its flags without loading torch)."""
    from honed.tune.run import tune as run_tune

    return run_tune(recipe, **kwargs)
