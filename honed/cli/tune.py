"""`honed tune RECIPE`: an Optuna study over the recipe's `search:` section; re-running the command resumes it."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common
from honed.errors import HonedError

TASKS = ("classification", "regression", "multilabel")  # the searched metric is a val metric of the recipe's task

DESCRIPTION = (
    "Runs the study described by the recipe's `search:` section (params over any recipe key, "
    "sampler grid|random|tpe, n_trials/timeout, metric, pruner median|hyperband|successive_halving). "
    "Each trial is a run folder in RUN_DIR/trials/trial-N (RUN_DIR: --output, else output_dir, "
    "else runs/NAME-tune). The study lives in RUN_DIR/study.db unless --storage names a database, "
    "so re-running the same command resumes it, and the same command on several machines with one "
    "--storage URL joins one study. Writes trials.csv, best_recipe.yaml, importances.json, plots/*.png "
    "and tune_report.html; `optuna-dashboard STORAGE` shows the study live."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune", description=DESCRIPTION, help="hyperparameter search with Optuna over the recipe's `search:` section"
    )
    common.add_recipe(parser, "recipe YAML file with a search: section")
    common.add_overrides(parser, "search.n_trials=20 train.epochs=3")
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL, e.g. postgresql://user:pass@host/db (default: sqlite in RUN_DIR/study.db)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="trial processes on this machine (default 1)"
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="trial budget of the whole study (overrides search.n_trials)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="stop starting trials after S seconds (overrides search.timeout)",
    )
    parser.add_argument(
        "--study-name", default=None, help="study name (default search.study_name, else the recipe name)"
    )
    common.add_output(parser, "run folder (default: output_dir, else runs/NAME-tune)")
    common.add_quiet(parser, "no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from honed.tune.run import tune

    if args.workers < 1:
        raise HonedError(f"--workers: expected 1 or more, got {args.workers}")
    result = tune(
        args.recipe,
        storage=args.storage,
        workers=args.workers,
        quiet=args.quiet,
        n_trials=args.trials,
        timeout=args.timeout,
        study_name=args.study_name,
        overrides=common.run_overrides(args),
    )
    s, console = result.summary, Console()
    trials = ", ".join(f"{k} {v}" for k, v in s["trials"].items() if v)
    console.print(f"study '{result.study_name}' ({s['sampler']}, {s['pruner']} pruning): {trials}")
    if s.get("best_value") is not None:
        console.print(f"best {s['metric']} {s['best_value']:.4f} (trial {s['best_trial']}): {s['best_params']}")
        console.print(f"best recipe: {result.run_dir / 'best_recipe.yaml'} (`honed train` it)")
    console.print(f"report: {result.run_dir / 'tune_report.html'}; live: optuna-dashboard {result.storage}")
    return 0
