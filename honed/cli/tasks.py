"""Which tasks each verb runs, declared by the verb module (`TASKS = ("classification", "regression", ...)`);
a verb that declares nothing runs classification only. A recipe (or saved model) of a task the verb cannot
do yet is refused in one line (exit 2) before any work, instead of failing somewhere inside it."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

from honed.errors import HonedError
from honed.metrics import TASKS

DEFAULT_TASKS = ("classification",)
AUTO_TASKS = {"classification", "regression"}  # what `task: auto` can resolve to (multi-label is never guessed)


def check_task(verb: ModuleType, args: argparse.Namespace, verbs: tuple[ModuleType, ...] = ()) -> None:
    """Refuse a regression or multi-label recipe or model for a verb whose module does not declare the task
    (a verb that declares every task is not asked: its recipe is not read twice); the message names the
    verbs of `verbs` that do run it."""
    tasks = getattr(verb, "TASKS", DEFAULT_TASKS)
    undeclared = set(TASKS) - set(tasks)
    task = _task_of(args, read_data=bool(undeclared & AUTO_TASKS)) if undeclared else None
    if task is not None and task not in tasks:
        able = [m.__name__.rpartition(".")[2].replace("_", "-") for m in verbs
                if task in getattr(m, "TASKS", DEFAULT_TASKS) and getattr(m, "WORKS_ON_DATA", True)]
        raise HonedError(f"honed {args.verb} does not support task {task} yet (it runs {', '.join(tasks)}); "
                         f"{', '.join(able) or 'train'} do, and train writes the {task} report")


def _task_of(args: argparse.Namespace, read_data: bool = True) -> str | None:
    """The task of the verb's recipe (`auto` read off the training labels, unless not `read_data`: then
    None) or of its saved model folder."""
    if isinstance(getattr(args, "recipe", None), str) and Path(args.recipe).is_file():
        from honed.data.sources import load_source
        from honed.recipe import load_recipe

        recipe = load_recipe(args.recipe, getattr(args, "overrides", None))
        if recipe.task != "auto" or recipe.data.train is None:
            return recipe.task
        if not read_data:
            return None
        try:
            frame = load_source(recipe.data.train, recipe.data, "data.train", task="auto")
        except HonedError:  # bad rows are the verb's to report (the audit even lists them rather than failing)
            return None
        return frame.attrs.get("task", "classification")
    model = getattr(args, "model", None) or getattr(args, "run_dir", None)  # prune/export a model, report a run
    if isinstance(model, str):
        from honed.data.labels import SAVED_MAPS

        folder = Path(model)
        for name, kind in SAVED_MAPS.items():  # the file that marks a regression or multi-label model
            if (folder / name).is_file() or (folder / "model" / name).is_file():
                return kind.task
    return None
