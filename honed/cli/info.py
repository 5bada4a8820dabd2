"""`honed info FOLDER`: what a saved folder holds, as the inference layer sees it (kind, task, labels)."""

from __future__ import annotations

import argparse
from typing import Any

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs
WORKS_ON_DATA = False  # reads no recipe's data: not named among the verbs that run a task


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("info", help="what a saved model, run or ensemble folder holds")
    parser.add_argument("folder", help="a saved model, run or ensemble folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.inference import load_predictor

    predictor = load_predictor(args.folder)
    print(f"{args.folder}: {type(predictor).__name__}, task {predictor.task}, "
          f"{len(predictor.labels)} labels: {', '.join(predictor.labels)}")
    return 0
