"""User-facing errors.

A `HonedError` is bad input the user can fix: the CLI prints its message on one line and exits
with code 2 (no traceback unless --debug). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HonedError(Exception):
    """Bad input: the message names the field, file or row and what to do."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The closest valid spelling of `word`, for 'did you mean' hints."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' or a list of valid choices when nothing is close."""
    choices = sorted(choices)
    best = closest(word, choices)
    if best:
        return f" (did you mean '{best}'?)"
    return f" (valid: {', '.join(choices)})" if choices else ""


def require_task(verb: str, task: str, tasks: Iterable[str]) -> None:
    """The Python API's twin of the CLI's task check (honed/cli/tasks.py): a verb called on a task it does
    not run stops here in one line, before any work, instead of failing somewhere inside it."""
    tasks = tuple(tasks)
    if task not in tasks:
        raise HonedError(f"honed {verb} does not support task {task} yet (it runs {', '.join(tasks)}); "
                         "train, evaluate, predict, report, tune, cv, ensemble and pretrain run every task")
