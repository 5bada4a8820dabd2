"""`honed train RECIPE [key=value ...]`: fine-tune per the recipe and print the final metrics."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("train", help="fine-tune a model from a YAML recipe")
    common.add_run_verb(parser, example="optim.lr=3e-5 data.max_length=64")
    parser.add_argument("--resume", action="store_true", help="continue the run folder's last checkpoint")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.fit import fit

    started = time.perf_counter()
    result = fit(args.recipe, overrides=common.run_overrides(args), overwrite=args.overwrite, resume=args.resume,
                       quiet=args.quiet)
    if common.is_main_process():
        print_summary(result.metrics, result.run_dir, time.perf_counter() - started)
    return 0


def print_summary(metrics: dict[str, Any], run_dir: Path, wall: float) -> None:
    """The best checkpoint's val/test metrics, speed and where the run folder and its report are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="honed: final metrics (best checkpoint)")
    table.add_column("split")
    for name in ("accuracy", "macro_f1", "loss"):
        table.add_column(name, justify="right")
    for split in ("val", "test"):
        if f"{split}_accuracy" in metrics:
            table.add_row(split, *(f"{metrics[f'{split}_{k}']:.4f}" for k in ("accuracy", "macro_f1", "loss")))
    console = Console()
    console.print(table)
    console.print(f"wall time {wall:.0f} s, training {metrics['train_samples_per_s']:.1f} samples/s, "
                  f"best epoch {metrics['best_epoch']}")
    console.print(f"run folder: {run_dir}")
    if (run_dir / "report.html").is_file():
        console.print(f"error analysis: {run_dir / 'report.html'} (`honed report {run_dir}` rebuilds it)")
