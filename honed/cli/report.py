"""`honed report RUN_DIR`: rebuild a run's error-analysis report (report.html + report.json)."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("report", help="rebuild a run's error-analysis report (report.html + report.json)")
    parser.add_argument("run_dir", help="a run folder written by `honed train` (e.g. runs/quickstart)")
    common.add_overrides(parser, "report.slices=[movie_name] report.top_k=50")
    common.add_output(parser, "write the report into DIR instead of the run folder (--out is the same flag)", "--out")
    common.add_overwrite(parser, "replace an existing report in --output DIR")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.evaluate.run_report import report_run

    common.check_report_dir(args.output, args.overwrite)
    html = report_run(args.run_dir, args.overrides, args.output)
    print(f"report: {html} and {html.with_name('report.json')}")
    return 0
