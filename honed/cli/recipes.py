"""`honed recipes`: list the shipped recipes with their one-line descriptions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs
WORKS_ON_DATA = False  # reads no recipe's data: not named among the verbs that run a task

RECIPES_DIR = Path(__file__).resolve().parent.parent.parent / "recipes"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    return subparsers.add_parser("recipes", help="list the shipped recipes")


def run(args: argparse.Namespace) -> int:
    import yaml

    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        print(f"{path.relative_to(RECIPES_DIR.parent)}\t{tree.get('description', '')}")
    return 0
