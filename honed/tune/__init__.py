"""Hyperparameter search with Optuna (`honed tune`) — see honed/tune/run.py for the entry point.

space.py: the `search:` parameters -> Optuna suggestions and grid; study.py: storage, sampler and
pruner registries; objective.py: one trial = one honed fit (or cross-validation); outputs.py:
trials.csv, best_recipe.yaml, importances, plots, tune_report.html, top_trials.json.
"""
