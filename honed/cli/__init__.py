"""The `honed` command line: `honed VERB ARGS [key=value ...]`.

This file is the verb table and `main`; each verb is one module here exporting `add_parser(subparsers)`
(returns its parser) and `run(args) -> int`, with its heavy imports inside `run` so `honed --help` stays
light. The arguments the verbs share are declared once in `honed/cli/common.py`. honed.cli sits on
top of every layer, and nothing in honed imports it. A new verb: one module plus one line in VERBS."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from honed.cli import (
    audit,
    batch_find,
    clean,
    climb,
    common,
    cv,
    ensemble,
    evaluate,
    export,
    info,
    lr_find,
    predict,
    pretrain,
    prune,
    recipes,
    report,
    train,
    tune,
)
from honed.cli.tasks import check_task
from honed.errors import HonedError
from honed.train.interrupt import Interrupted

VERBS: tuple[ModuleType, ...] = (train, evaluate, predict, report, lr_find, batch_find, audit, clean, ensemble, tune,
                                 climb, cv, prune, export, pretrain, info, recipes)

# How each verb continues after Ctrl-C/SIGTERM; the others (tune, ensemble, cv) continue when re-run as they were.
RESUME_HINTS = {"train": "continue it with the same command plus --resume",
                "pretrain": "pretraining does not resume; re-run it with --overwrite",
                "cv": "cross-validation does not resume; re-run it with --overwrite"}

EPILOG = """examples:
  honed train recipes/quickstart.yaml
  honed train recipes/quickstart.yaml optim.lr=3e-5 data.max_length=64 --overwrite
  honed train recipes/quickstart.yaml --output runs/lr3e-5 optim.lr=3e-5   # --output DIR: the run folder
  honed train recipes/quickstart.yaml --resume
  honed evaluate runs/quickstart/model data.csv
  honed predict runs/quickstart/model reviews.csv -o predictions.csv
  honed predict runs/quickstart/model reviews.csv --calibrated      # temperature-scaled probabilities
  honed evaluate runs/quickstart/model data.csv --report reports/holdout
  honed report runs/quickstart report.slices=[movie_name]          # rebuild RUN_DIR/report.html
  honed lr-find recipes/quickstart.yaml --steps 100
  honed batch-find recipes/quickstart.yaml --max 256
  honed audit recipes/quickstart.yaml data.labels=null --output audit-rt
  honed clean recipes/quickstart.yaml --labels relabel --label-threshold 0.9 --output clean-rt
  honed ensemble recipes/ensemble.yaml                              # members + combiner -> runs/ensemble/
  honed ensemble recipes/ensemble.yaml ensemble.method=stacking ensemble.stacking.folds=3 --overwrite
  honed predict runs/ensemble reviews.csv                          # an ensemble folder works like a model
  honed tune recipes/tune-quickstart.yaml --workers 2             # Optuna search over the recipe's search: section
  honed tune recipes/tune-quickstart.yaml --storage postgresql://user:pw@db/honed   # same command on every machine
  honed climb recipes/climb-quickstart.yaml --budget 3h          # paired experiments -> runs/NAME-climb/climb.html
  honed cv recipes/quickstart.yaml --folds 5                         # mean ± std, out-of-fold probabilities
  honed prune runs/quickstart/model --sparsity 0.5 --recover-epochs 1   # magnitude pruning + report (prune.json)
  honed export runs/quickstart/model --format onnx --quantize int8   # checked against PyTorch -> export-onnx-int8/
  honed pretrain recipes/pretrain-rotten-tomatoes.yaml    # masked-LM on the training texts -> RUN_DIR/backbone
  honed info runs/quickstart                                         # kind, task and labels of a saved folder
  honed recipes
"""


def build_parser() -> common.Parser:
    """The top-level parser with one subparser per verb in VERBS; `args.run` is the chosen verb's `run`
    and `args.usage_error` its parser's one-line usage error."""
    parser = common.Parser(prog="honed", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Fine-tune pretrained PyTorch models, then push their accuracy further.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb_parser = verb.add_parser(subparsers)
        common.add_debug(verb_parser)
        verb_parser.set_defaults(run=verb.run, usage_error=verb_parser.error, verb_module=verb)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse `argv`; `key=value` words given after a flag still count as overrides, any other extra word is
    a usage error (one line, exit 2)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    takes_overrides = hasattr(args, "overrides")
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not takes_overrides]
    if stray:
        args.usage_error(f"unrecognized arguments: {' '.join(stray)}")
    if takes_overrides:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run one verb. A HonedError ends in one line on stderr and exit 2 (`--debug` re-raises it for the
    traceback); a usage error exits 2 with one line (SystemExit from argparse); Ctrl-C or SIGTERM stops at the next safe
    point with one line saying how to continue, exit 130 / 143 (a second Ctrl-C exits 130 at once)."""
    args = parse(argv)
    try:
        if hasattr(args, "overrides"):
            args.overrides = common.parse_overrides(args.overrides)
        check_task(args.verb_module, args, VERBS)  # a task the verb cannot do yet: one line, before any work
        return int(args.run(args) or 0)
    except HonedError as exc:
        if args.debug:
            raise
        print(f"honed: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("honed: interrupted", file=sys.stderr)
        return 130
    except Interrupted as exc:  # SIGINT/SIGTERM: stopped at a safe point with its checkpoint written
        print(f"honed: {exc}; {RESUME_HINTS.get(args.verb, 're-run the same command to continue')}", file=sys.stderr)
        return exc.exit_code
