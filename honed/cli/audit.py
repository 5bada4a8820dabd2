"""`honed audit RECIPE`: audit the data (balance, duplicates, leakage, corrupt rows, outliers, label errors,
learning curve; regression: target distribution and outliers, conflicting targets, a ridge learning curve);
also the arguments `honed clean` shares with it."""

from __future__ import annotations

import argparse
from typing import Any

from honed.audit.tasks import TASKS  # noqa: F401  (honed/cli/tasks.py reads it: the tasks this verb runs)
from honed.cli import common
from honed.errors import HonedError

DESCRIPTION = (
    "Writes audit.html + audit.json to RUN_DIR-audit beside the recipe's run folder (or --output) and "
    "prints a summary with recommendations. Nothing is trained; a frozen backbone embeds the rows once "
    "(cached) and a linear probe gives out-of-fold probabilities for cleanlab. Regression recipes get the "
    "target distribution and outliers, duplicates with conflicting targets and a ridge-probe learning curve."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        description=DESCRIPTION,
        help="audit the data: balance, duplicates, leakage, corrupt rows, outliers, label errors, learning curve",
    )
    add_audit_arguments(parser, "RUN_DIR-audit")
    return parser


def add_audit_arguments(parser: argparse.ArgumentParser, default_output: str) -> None:
    """The arguments of `audit` and `clean`: the shared ones, then the audit's own settings."""
    common.add_recipe(parser, "recipe YAML file")
    common.add_overrides(parser, "data.labels=null")
    common.add_output(parser, f"output folder (default: {default_output}, beside the run folder)")
    common.add_overwrite(parser, "replace earlier output files")
    common.add_quiet(parser)
    parser.add_argument(
        "--oof",
        default=None,
        metavar="FILE",
        help="out-of-fold probabilities CSV (id = 0-based row of data.train's file, one column per "
        "class) instead of the linear probe, e.g. RUN_DIR/oof.csv from `honed cv`",
    )
    parser.add_argument("--folds", type=int, default=5, help="folds of the linear probe (default 5)")
    parser.add_argument(
        "--near-duplicate",
        type=float,
        default=0.95,
        metavar="COS",
        help="cosine similarity at or above which two rows are near duplicates (default 0.95)",
    )
    parser.add_argument(
        "--outlier-z",
        type=float,
        default=3.5,
        metavar="Z",
        help="robust z-score beyond which a row (or a regression target) is an outlier (default 3.5)",
    )
    parser.add_argument(
        "--target-tolerance",
        type=float,
        default=0.5,
        metavar="STD",
        help="regression: identical rows whose targets differ by more than STD robust standard deviations "
        "(1.4826 * MAD, or 1.2533 * the mean absolute deviation when the MAD is 0) of the target conflict "
        "(default 0.5)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument(
        "--checks",
        default=None,
        help="comma-separated checks to run (default all: corrupt, balance, "
        "label_variants, duplicates, leakage, outliers, label_issues, "
        "learning_curve; regression: targets and target_conflicts instead of balance, label_variants and "
        "label_issues)",
    )


def audit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The checked audit settings, as `honed.audit`/`honed.clean` take them (the overrides go separately)."""
    if not 2 <= args.folds <= 50:
        raise HonedError(f"--folds: expected 2 to 50, got {args.folds}")
    if not 0.0 < args.near_duplicate <= 1.0:
        raise HonedError(f"--near-duplicate: expected a cosine similarity in (0, 1], got {args.near_duplicate}")
    if args.outlier_z <= 0 or args.batch_size < 1 or args.target_tolerance <= 0:
        raise HonedError("--outlier-z, --target-tolerance and --batch-size must be positive")
    options: dict[str, Any] = dict(
        oof=args.oof,
        folds=args.folds,
        near_duplicate=args.near_duplicate,
        outlier_z=args.outlier_z,
        target_tolerance=args.target_tolerance,
        batch_size=args.batch_size,
    )
    if args.checks:
        options["checks"] = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    return options


def run(args: argparse.Namespace) -> int:
    from honed.audit.run import audit, summary_lines

    result = audit(
        args.recipe,
        output=args.output,
        overwrite=args.overwrite,
        quiet=args.quiet,
        overrides=args.overrides,
        **audit_options(args),
    )
    print("\n".join(summary_lines(result)))
    return 0
