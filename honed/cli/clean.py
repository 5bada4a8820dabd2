"""`honed clean RECIPE`: audit, then write a cleaned copy of the data and a manifest of every row removed or changed."""

from __future__ import annotations

import argparse
from typing import Any

from honed.audit.tasks import TASKS  # noqa: F401  (honed/cli/tasks.py reads it: the tasks this verb runs)
from honed.cli.audit import add_audit_arguments, audit_options

DESCRIPTION = (
    "Audits the data, then writes the cleaned copy (same format as the input; image folders become a CSV "
    "of kept paths) and manifest.csv to RUN_DIR-clean (or --output). Input files are never modified. "
    "Always drops empty/missing/corrupt rows, extra exact copies and train rows that leak into val/test."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "clean",
        description=DESCRIPTION,
        help="write a cleaned copy of the data and a manifest of every row removed or changed",
    )
    add_audit_arguments(parser, "RUN_DIR-clean")
    parser.add_argument(
        "--labels",
        choices=("drop", "relabel", "keep"),
        default=None,
        help="what to do with likely label errors (default: drop on classification, nothing on regression, which "
        "refuses drop and relabel)",
    )
    parser.add_argument(
        "--label-threshold",
        type=float,
        default=0.0,
        metavar="P",
        help="act on a flagged label only when the suggested class's out-of-fold probability exceeds P (default 0)",
    )
    parser.add_argument(
        "--drop-outliers",
        action="store_true",
        help="also drop length/size and embedding outliers (regression: and outlying targets)",
    )
    parser.add_argument(
        "--drop-near-duplicates", action="store_true", help="also drop near duplicates inside a split (the later row)"
    )
    parser.add_argument(
        "--drop-group-leaks", action="store_true", help="also drop train rows whose group appears in val/test"
    )
    parser.add_argument(
        "--splits", default="train", help="comma-separated splits whose files are cleaned (default train)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.audit.cleaning import clean

    result = clean(
        args.recipe,
        output=args.output,
        overwrite=args.overwrite,
        quiet=args.quiet,
        labels=args.labels,
        label_threshold=args.label_threshold,
        drop_outliers=args.drop_outliers,
        drop_near_duplicates=args.drop_near_duplicates,
        drop_group_leaks=args.drop_group_leaks,
        splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()),
        overrides=args.overrides,
        **audit_options(args),
    )
    manifest = result.manifest
    print(
        f"clean: {int((manifest['action'] == 'dropped').sum())} rows dropped, "
        f"{int((manifest['action'] == 'relabelled').sum())} relabelled, of {len(result.audit.context.data.frame)}"
    )
    for (action, reason), n in manifest.groupby(["action", "reason"]).size().items():
        print(f"  {action}: {n} {reason}")
    for split, path in result.files.items():
        print(f"cleaned {split}: {path}")
    print(f"manifest: {result.folder / 'manifest.csv'}")
    print("train on it with: " + " ".join(result.overrides()))
    return 0
