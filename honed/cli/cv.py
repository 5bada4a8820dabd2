"""`honed cv RECIPE`: k-fold cross-validation, mean ± std per metric and out-of-fold probabilities."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")  # folds and metrics per task: honed/cv.py FOLD_TASKS

DESCRIPTION = (
    "Fits one model per fold on the recipe's training rows (classification: stratified; regression and "
    "multi-label: plain k-fold; group-aware with data.group_column) and writes RUN_DIR/cv.json (the task's "
    "metrics per fold, mean and std), RUN_DIR/oof.csv (row, label, p_<class>...: out-of-fold probabilities "
    "for `honed audit --oof`, stacking; regression: the targets and pred_<target>...), RUN_DIR/fold_rows.csv "
    "(row, fold) and RUN_DIR/folds/fold-i/. RUN_DIR: --output, else output_dir, else runs/NAME-cv."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cv",
        description=DESCRIPTION,
        help="k-fold cross-validation: mean ± std per metric and out-of-fold outputs",
    )
    common.add_run_verb(
        parser,
        example="train.epochs=2",
        output="run folder (default: output_dir, else runs/NAME-cv)",
        overwrite="replace an existing cv run folder",
        quiet="no progress bar",
    )
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from honed.cv import FOLD_TASKS, cross_validate

    if not common.is_main_process():
        return 0
    result = cross_validate(
        args.recipe, args.folds, quiet=args.quiet, overwrite=args.overwrite, overrides=common.run_overrides(args)
    )
    table = Table(title=f"honed cv: {len(result.per_fold)} folds, {len(result.frame)} rows")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for name, mean in result.metrics_mean.items():
        table.add_row(name, f"{mean:.4f} ± {result.metrics_std[name]:.4f}")
    console = Console()
    console.print(table)
    noun = FOLD_TASKS[result.task].noun
    console.print(f"{noun}: {result.run_dir / 'oof.csv'}; summary: {result.run_dir / 'cv.json'}")
    return 0
