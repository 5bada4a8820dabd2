"""`honed predict MODEL DATA`: predicted label and one probability column per class, as CSV."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from honed.cli import common
from honed.errors import HonedError

TASKS = ("classification", "regression", "multilabel")  # honed/cli/tasks.py: the tasks this verb runs

if TYPE_CHECKING:
    import pandas as pd


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("predict", help="predicted labels and class probabilities as CSV")
    parser.add_argument("model", help="a saved model folder (RUN_DIR/model) or an ensemble folder")
    parser.add_argument("data", help="a CSV/TSV/JSONL/Parquet file, or an image folder")
    common.add_overrides(parser, "augment.tta=4")
    common.add_output(parser, "output CSV (default: standard output)", default="-", metavar="FILE")
    common.add_overwrite(parser, "replace an existing output file")
    parser.add_argument("--calibrated", action="store_true",
                        help="temperature-scaled probabilities (the temperature fitted on val at training, "
                             "model/calibration.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.inference.predict import predict_chunks

    out = Path(args.output)
    if args.output != "-" and out.exists() and not args.overwrite:
        raise HonedError(f"--output: '{out}' already exists; pass --overwrite to replace it")
    chunks = predict_chunks(args.model, args.data, args.overrides, calibrated=args.calibrated)
    if args.output == "-":
        _write(chunks, sys.stdout)
        return 0
    partial = out.with_name(out.name + ".partial")  # a failure half-way never leaves a short file under the real name
    try:
        with partial.open("w", encoding="utf-8", newline="") as handle:
            count = _write(chunks, handle)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    print(f"wrote {count} predictions to {out}", file=sys.stderr)
    return 0


def _write(chunks: Iterator[pd.DataFrame], handle: TextIO) -> int:
    """Each chunk's rows as CSV as soon as it is predicted (one header); the number of rows written."""
    count = 0
    for i, chunk in enumerate(chunks):
        chunk.to_csv(handle, index=False, header=i == 0)
        count += len(chunk)
    return count
