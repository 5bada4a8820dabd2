"""The `honed audit` and `honed clean` verbs: their flags and what they print (kept light to import)."""

from __future__ import annotations

import argparse
from typing import Any

from honed.errors import HonedError


def add_audit_parsers(verbs: Any) -> None:
    """Register `audit` and `clean` on the CLI's subparsers."""
    audit = verbs.add_parser("audit", help="audit the data: balance, duplicates, leakage, corrupt rows, outliers, label errors, learning curve",
                             description="Writes audit.html + audit.json to RUN_DIR-audit beside the recipe's run folder (or --output) and prints "
                                         "a summary with recommendations. Nothing is trained; a frozen backbone embeds the rows once "
                                         "(cached) and a linear probe gives out-of-fold probabilities for cleanlab.")
    _common(audit)
    clean = verbs.add_parser("clean", help="write a cleaned copy of the data and a manifest of every row removed or changed",
                             description="Audits the data, then writes the cleaned copy (same format as the input; image folders "
                                         "become a CSV of kept paths) and manifest.csv to RUN_DIR-clean (or --output). Input files "
                                         "are never modified. Always drops empty/missing/corrupt rows, extra exact copies and train "
                                         "rows that leak into val/test.")
    _common(clean)
    clean.add_argument("--labels", choices=("drop", "relabel", "keep"), default="drop",
                       help="what to do with likely label errors (default drop)")
    clean.add_argument("--label-threshold", type=float, default=0.0, metavar="P",
                       help="act on a flagged label only when the suggested class's out-of-fold probability exceeds P (default 0)")
    clean.add_argument("--drop-outliers", action="store_true", help="also drop length/size and embedding outliers")
    clean.add_argument("--drop-near-duplicates", action="store_true", help="also drop near duplicates inside a split (the later row)")
    clean.add_argument("--drop-group-leaks", action="store_true", help="also drop train rows whose group appears in val/test")
    clean.add_argument("--splits", default="train", help="comma-separated splits whose files are cleaned (default train)")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. data.labels=null")
    parser.add_argument("-o", "--output", default=None, metavar="DIR", help="output folder (default: RUN_DIR-audit, for clean RUN_DIR-clean, beside the run folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--oof", default=None, metavar="FILE",
                        help="out-of-fold probabilities CSV (id = 0-based row of data.train's file, one column per class) "
                             "instead of the linear probe, e.g. RUN_DIR/oof.csv from `honed cv`")
    parser.add_argument("--folds", type=int, default=5, help="folds of the linear probe (default 5)")
    parser.add_argument("--near-duplicate", type=float, default=0.95, metavar="COS",
                        help="cosine similarity at or above which two rows are near duplicates (default 0.95)")
    parser.add_argument("--outlier-z", type=float, default=3.5, metavar="Z", help="robust z-score beyond which a row is an outlier (default 3.5)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size (default 64)")
    parser.add_argument("--checks", default=None, help="comma-separated checks to run (default all: corrupt, balance, duplicates, "
                                                       "leakage, outliers, label_issues, learning_curve)")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from honed.recipe import parse_override

    if not 2 <= args.folds <= 50:
        raise HonedError(f"--folds: expected 2 to 50, got {args.folds}")
    if not 0.0 < args.near_duplicate <= 1.0:
        raise HonedError(f"--near-duplicate: expected a cosine similarity in (0, 1], got {args.near_duplicate}")
    if args.outlier_z <= 0 or args.batch_size < 1:
        raise HonedError("--outlier-z and --batch-size must be positive")
    options: dict[str, Any] = dict(parse_override(item) for item in args.overrides)
    options.update(oof=args.oof, folds=args.folds, near_duplicate=args.near_duplicate, outlier_z=args.outlier_z,
                   batch_size=args.batch_size)
    if args.checks:
        options["checks"] = tuple(c.strip() for c in args.checks.split(",") if c.strip())
    return options


def cmd_audit(args: argparse.Namespace) -> None:
    from honed.audit.run import audit, summary_lines

    result = audit(args.recipe, output=args.output, overwrite=args.overwrite, quiet=args.quiet, **_settings(args))
    print("\n".join(summary_lines(result)))


def cmd_clean(args: argparse.Namespace) -> None:
    from honed.audit.cleaning import clean

    result = clean(args.recipe, output=args.output, overwrite=args.overwrite, quiet=args.quiet, labels=args.labels,
                   label_threshold=args.label_threshold, drop_outliers=args.drop_outliers,
                   drop_near_duplicates=args.drop_near_duplicates, drop_group_leaks=args.drop_group_leaks,
                   splits=tuple(s.strip() for s in args.splits.split(",") if s.strip()), **_settings(args))
    counts = result.manifest.groupby(["action", "reason"]).size()
    total = len(result.audit.context.data.frame)
    print(f"clean: {int((result.manifest['action'] == 'dropped').sum())} rows dropped, "
          f"{int((result.manifest['action'] == 'relabelled').sum())} relabelled, of {total}")
    for (action, reason), n in counts.items():
        print(f"  {action}: {n} {reason}")
    for split, path in result.files.items():
        print(f"cleaned {split}: {path}")
    print(f"manifest: {result.folder / 'manifest.csv'}")
    print("train on it with: " + " ".join(result.overrides()))
