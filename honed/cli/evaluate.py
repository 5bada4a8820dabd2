"""`honed evaluate MODEL DATA`: loss, accuracy and macro-F1 of a saved model (or ensemble) on labelled data."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("evaluate", help="metrics of a saved model on a labelled file")
    parser.add_argument("model", help="a saved model folder (RUN_DIR/model) or an ensemble folder")
    parser.add_argument("data", help="labelled file, image folder or asset:NAME")
    common.add_overrides(parser, "data.label_column=y")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="also write the error-analysis report (report.html + report.json) into DIR")
    parser.add_argument("--calibrated", action="store_true",
                        help="apply the temperature saved with the model (model/calibration.json)")
    common.add_overwrite(parser, "replace an existing report in --report DIR")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.evaluate.saved import evaluate_saved

    common.check_report_dir(args.report, args.overwrite)
    metrics = evaluate_saved(args.model, args.data, args.overrides, calibrated=args.calibrated, report_dir=args.report)
    for key, value in metrics.items():
        print(f"{key}\t{value:.4f}")
    return 0
