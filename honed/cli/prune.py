"""`honed prune MODEL_DIR --sparsity S`: prune a saved model one shot, optionally recover by fine-tuning,
and report sparsity, parameter counts, size, latency and test accuracy before/after."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

DESCRIPTION = (
    "Zero the smallest weights of a saved model (global or per-layer L1 magnitude over every Linear/Conv "
    "weight), or remove whole FFN neurons (BERT-like) / zero whole conv channels (CNNs); save the pruned "
    "model to OUTPUT/model, optionally fine-tune it N epochs with the masks held (OUTPUT/recover), and "
    "write OUTPUT/prune.json: sparsity, parameters, size on disk, CPU latency, test accuracy before/after."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prune",
        description=DESCRIPTION,
        help="prune a saved model (magnitude or structured), optionally recover, report size/latency/accuracy",
    )
    parser.add_argument("model", help="a saved model folder (RUN_DIR/model)")
    parser.add_argument(
        "--sparsity", type=float, default=0.5, help="fraction of weights (or FFN neurons/channels) to prune, in [0, 1)"
    )
    # no argparse `choices`: honed.prune checks the names against its own tables (one line, exit 2)
    parser.add_argument(
        "--scope", default="global", help="global: one threshold over all layers (default); layer: each layer alike"
    )
    parser.add_argument(
        "--structured",
        default=None,
        metavar="KIND",
        help="ffn: remove FFN neurons (transformers); heads: attention heads (where "
        "transformers supports it); channels: zero conv output channels (CNNs)",
    )
    parser.add_argument(
        "--recover-epochs", type=int, default=0, help="fine-tune the pruned model this many epochs (masks kept)"
    )
    common.add_output(parser, "output folder (default: MODEL_DIR/../pruned-SPARSITY)")
    common.add_overwrite(parser, "replace an existing output folder")
    common.add_quiet(parser, "no progress bars or table")
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.prune.command import prune

    prune(
        args.model,
        args.sparsity,
        scope=args.scope,
        structured=args.structured,
        recover_epochs=args.recover_epochs,
        output=args.output,
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    return 0
