"""Which tasks each verb runs, declared by the verb module (`TASKS = ("classification", "regression")`);
a verb that declares nothing runs classification only. A recipe (or saved model) of a task the verb cannot
do yet is refused in one line (exit 2) before any work, instead of failing somewhere inside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from honed.errors import HonedError

DEFAULT_TASKS = ("classification",)


def check_task(verb: ModuleType, args: argparse.Namespace) -> None:
    """Refuse a regression recipe or model for a verb whose module does not declare the task."""
    tasks = getattr(verb, "TASKS", DEFAULT_TASKS)
    task = _task_of(args) if "regression" not in tasks else None
    if task is not None and task not in tasks:
        raise HonedError(f"honed {args.verb} does not support task {task} yet (it runs {', '.join(tasks)}); "
                         "train, evaluate and predict do, and train writes the regression report")


def _task_of(args: argparse.Namespace) -> str | None:
    """The task of the verb's recipe (`auto` read off the training labels) or of its saved model folder."""
    if isinstance(getattr(args, "recipe", None), str) and Path(args.recipe).is_file():
        from honed.data.sources import load_source
        from honed.recipe import load_recipe

        recipe = load_recipe(args.recipe, getattr(args, "overrides", None))
        if recipe.task != "auto" or recipe.data.train is None:
            return recipe.task
        try:
            frame = load_source(recipe.data.train, recipe.data, "data.train", task="auto")
        except HonedError:  # bad rows are the verb's to report (the audit even lists them rather than failing)
            return None
        return frame.attrs.get("task", "classification")
    model = getattr(args, "model", None) or getattr(args, "run_dir", None)  # prune/export a model, report a run
    if isinstance(model, str):
        from honed.data.labels import TARGETS_FILE

        folder = Path(model)
        saved = (folder / TARGETS_FILE).is_file() or (folder / "model" / TARGETS_FILE).is_file()
        return "regression" if saved else None
    return None
