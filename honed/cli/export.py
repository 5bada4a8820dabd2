"""`honed export MODEL_DIR --format onnx|torchscript [--quantize int8]`: a saved model as an ONNX or TorchScript
file for deployment, checked against PyTorch on the recipe's test split, with a before/after report."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

DESCRIPTION = (
    "Write a saved model as ONNX (torch.onnx, dynamic batch and sequence axes) or TorchScript, optionally"
    " with dynamic int8 quantization of its Linear layers for CPU. The export is checked on the recipe's "
    "test split (val when it has none): it is refused, and nothing is written, unless its predicted "
    "labels agree with PyTorch's on at least 99.5% of the rows (--min-agreement), or, quantized (lossy by "
    "design), unless its accuracy there is at most 0.5 point lower. OUTPUT holds the model "
    "file, labels, recipe, tokenizer or image normalisation, export.json and export_report.json (size on "
    "disk, CPU ms/example at batch 1 and 32, accuracy, before/after); `honed predict OUTPUT data.csv` "
    "reads it. ONNX needs onnxruntime: pip install 'honed[onnx]'."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        description=DESCRIPTION,
        help="export a saved model to ONNX or TorchScript (optionally int8), checked against PyTorch",
    )
    parser.add_argument("model", help="a saved model folder (RUN_DIR/model) or its run folder")
    # no argparse `choices`: honed.export checks the names against its table of formats (one line, exit 2)
    parser.add_argument("--format", default="onnx", help="onnx (default) or torchscript")
    parser.add_argument(
        "--quantize",
        default=None,
        metavar="MODE",
        help="int8: dynamic int8 quantization of the Linear layers (CPU); default: float32",
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=None,
        metavar="N",
        help="check and measure on the first N rows of the test split (default: all of it)",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.995,
        metavar="F",
        help="float exports: share of check rows whose predicted label must match PyTorch's, else "
        "the export is refused (default 0.995); quantized exports are held to accuracy instead",
    )
    common.add_output(parser, "output folder (default: MODEL_DIR/../export-FORMAT[-int8])")
    common.add_overwrite(parser, "replace an existing output folder")
    common.add_quiet(parser, "no table")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.export import export_model

    export_model(
        args.model,
        args.format,
        args.quantize,
        args.output,
        args.overwrite,
        quiet=args.quiet,
        max_rows=args.max_rows,
        min_agreement=args.min_agreement,
    )
    return 0
