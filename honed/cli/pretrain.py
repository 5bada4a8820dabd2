"""`honed pretrain RECIPE`: continued self-supervised pretraining; prints where the backbone went."""

from __future__ import annotations

import argparse
import json
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")  # label-free: only the texts or images are read

DESCRIPTION = (
    "Domain-adaptive pretraining before fine-tuning: masked-LM (text; whole-word with "
    "pretrain.whole_word) or rotation prediction (images) on pretrain.data, or on the recipe's training "
    "split with labels unused. "
    "Writes RUN_DIR/backbone (save_pretrained folder for HF: use as model.name; backbone.safetensors for "
    "torchvision/timm: use as model.weights) and RUN_DIR/pretrain.json. Settings: the recipe's pretrain: "
    "section (epochs, lr, batch_size, mlm_probability, whole_word, max_rows, data)."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pretrain",
        description=DESCRIPTION,
        help="continue pretraining the recipe's backbone on unlabelled in-domain data (MLM / rotation)",
    )
    common.add_run_verb(
        parser,
        recipe="recipe YAML (its data, model and pretrain: sections are used)",
        example="pretrain.epochs=2 name=rt-dapt",
        quiet="no progress bar",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.pretrain import pretrain

    run_dir = pretrain(args.recipe, overwrite=args.overwrite, quiet=args.quiet, **common.run_overrides(args))
    summary = json.loads((run_dir / "pretrain.json").read_text(encoding="utf-8"))
    print(
        f"{summary['objective']} on {summary['rows']} rows, loss per epoch {summary['loss_per_epoch']}; "
        f"backbone: {summary['backbone']}"
    )
    return 0
