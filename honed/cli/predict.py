"""`honed predict MODEL DATA`: predicted label and one probability column per class, as CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from honed.cli import common
from honed.errors import HonedError


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
    from honed.inference import predict_frame

    out = Path(args.output)
    if args.output != "-" and out.exists() and not args.overwrite:
        raise HonedError(f"--output: '{out}' already exists; pass --overwrite to replace it")
    frame = predict_frame(args.model, args.data, args.overrides, calibrated=args.calibrated)
    if args.output == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(out, index=False)
        print(f"wrote {len(frame)} predictions to {out}", file=sys.stderr)
    return 0
