"""`honed pretrain RECIPE`: continued self-supervised pretraining; prints where the backbone went."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_pretrain_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "pretrain", help="continue pretraining the recipe's backbone on unlabelled in-domain data (MLM / rotation)",
        description="Domain-adaptive pretraining before fine-tuning: masked-LM (text; whole-word with pretrain.whole_word) "
                    "or rotation prediction (images) on pretrain.data, or on the recipe's training split with labels unused. "
                    "Writes RUN_DIR/backbone (save_pretrained folder for HF: use as model.name; backbone.safetensors for "
                    "torchvision/timm: use as model.weights) and RUN_DIR/pretrain.json. Settings: the recipe's pretrain: "
                    "section (epochs, lr, batch_size, mlm_probability, whole_word, max_rows, data).")
    p.add_argument("recipe", help="recipe YAML (its data, model and pretrain: sections are used)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. pretrain.epochs=2 name=rt-dapt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from honed.cli import _overrides
    from honed.pretrain import pretrain

    run_dir = pretrain(args.recipe, overwrite=args.overwrite, quiet=args.quiet, **_overrides(args.overrides))
    summary = json.loads((run_dir / "pretrain.json").read_text(encoding="utf-8"))
    print(f"{summary['objective']} on {summary['rows']} rows, loss per epoch {summary['loss_per_epoch']}; backbone: {summary['backbone']}")
