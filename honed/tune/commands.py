"""The `honed tune` and `honed cv` verbs: flags and printed summaries (kept light to import)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from honed.errors import HonedError


def add_tune_parsers(verbs: Any) -> None:
    """Register `tune` and `cv` on the CLI's subparsers."""
    tune = verbs.add_parser(
        "tune", help="hyperparameter search with Optuna over the recipe's `search:` section",
        description="Runs the study described by the recipe's `search:` section (params over any recipe key, "
                    "sampler grid|random|tpe, n_trials/timeout, metric, pruner median|hyperband|successive_halving). "
                    "Each trial is a run folder in RUN_DIR/trials/trial-N (RUN_DIR: --output, else output_dir, "
                    "else runs/NAME-tune). The study lives in RUN_DIR/study.db unless --storage names a database, "
                    "so re-running the same command resumes it, and the same command on several machines with one "
                    "--storage URL joins one study. Writes trials.csv, best_recipe.yaml, importances.json, plots/*.png "
                    "and tune_report.html; `optuna-dashboard STORAGE` shows the study live.")
    tune.add_argument("recipe", help="recipe YAML file with a search: section")
    tune.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. search.n_trials=20 train.epochs=3")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="Optuna storage URL, e.g. postgresql://user:pass@host/db (default: sqlite in RUN_DIR/study.db)")
    tune.add_argument("--workers", type=int, default=1, metavar="N", help="trial processes on this machine (default 1)")
    tune.add_argument("--trials", type=int, default=None, metavar="N", help="trial budget of the whole study (overrides search.n_trials)")
    tune.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S seconds (overrides search.timeout)")
    tune.add_argument("--study-name", default=None, help="study name (default search.study_name, else the recipe name)")
    tune.add_argument("-o", "--output", default=None, metavar="DIR", help="run folder (default: output_dir, else runs/NAME-tune)")
    tune.add_argument("--quiet", action="store_true", help="no progress bar")

    cv = verbs.add_parser(
        "cv", help="k-fold cross-validation: mean ± std per metric and out-of-fold probabilities",
        description="Fits one model per fold (stratified; group-aware with data.group_column) on the recipe's "
                    "training rows and writes RUN_DIR/cv.json, RUN_DIR/oof.csv (row, label, p_<class>...: "
                    "out-of-fold probabilities for `honed audit --oof`, stacking) and RUN_DIR/folds/fold-i/. "
                    "RUN_DIR: --output, else output_dir, else runs/NAME-cv.")
    cv.add_argument("recipe", help="recipe YAML file")
    cv.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.epochs=2")
    cv.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    cv.add_argument("-o", "--output", default=None, metavar="DIR", help="run folder (default: output_dir, else runs/NAME-cv)")
    cv.add_argument("--overwrite", action="store_true", help="replace an existing cv run folder")
    cv.add_argument("--quiet", action="store_true", help="no progress bar")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from honed.recipe import parse_override

    pairs = dict(parse_override(item) for item in args.overrides)
    if args.output:
        pairs["output_dir"] = args.output
    return {k.replace(".", "__"): v for k, v in pairs.items()}


def cmd_tune(args: argparse.Namespace) -> None:
    from rich.console import Console

    from honed.tune.run import tune

    if args.workers < 1:
        raise HonedError(f"--workers: expected 1 or more, got {args.workers}")
    result = tune(args.recipe, storage=args.storage, workers=args.workers, quiet=args.quiet, n_trials=args.trials,
                  timeout=args.timeout, study_name=args.study_name, **_overrides(args))
    s, console = result.summary, Console()
    trials = ", ".join(f"{k} {v}" for k, v in s["trials"].items() if v)
    console.print(f"study '{result.study_name}' ({s['sampler']}, {s['pruner']} pruning): {trials}")
    if s.get("best_value") is not None:
        console.print(f"best {s['metric']} {s['best_value']:.4f} (trial {s['best_trial']}): {s['best_params']}")
        console.print(f"best recipe: {result.run_dir / 'best_recipe.yaml'} (`honed train` it)")
    console.print(f"report: {result.run_dir / 'tune_report.html'}; live: optuna-dashboard {result.storage}")


def cmd_cv(args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from honed.cv import cross_validate

    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    result = cross_validate(args.recipe, args.folds, quiet=args.quiet, overwrite=args.overwrite, **_overrides(args))
    table = Table(title=f"honed cv: {len(result.per_fold)} folds, {len(result.frame)} rows")
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    for name, mean in result.metrics_mean.items():
        table.add_row(name, f"{mean:.4f} ± {result.metrics_std[name]:.4f}")
    console = Console()
    console.print(table)
    console.print(f"out-of-fold probabilities: {result.run_dir / 'oof.csv'}; summary: {result.run_dir / 'cv.json'}")
