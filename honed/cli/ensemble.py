"""`honed ensemble RECIPE`: train the members of the recipe's `ensemble:` section and combine them into one folder."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common

TASKS = ("classification", "regression", "multilabel")

DESCRIPTION = (
    "Train the members named by the recipe's `ensemble:` section on shared splits and combine them: "
    "voting (soft/hard, weights given or selected on val), selection (greedy forward selection with "
    "replacement on val, the default), stacking (a scikit-learn meta-learner on out-of-fold member "
    "probabilities) or bagging (bootstrap samples, out-of-bag estimate). Writes RUN_DIR/ensemble.json, "
    "the member runs under RUN_DIR/members/ and the ensemble's report; `honed predict/evaluate RUN_DIR` "
    "use it like one model. Regression combines predicted values (voting mean or median, selection on val "
    "RMSE, stacking with ridge); multilabel averages per-label probabilities and tunes the ensemble's own "
    "thresholds on val."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ensemble",
        description=DESCRIPTION,
        help="train several members and combine them (voting, selection, stacking, bagging) into one folder",
    )
    common.add_run_verb(
        parser,
        recipe="recipe YAML with an `ensemble:` section (see recipes/ensemble.yaml)",
        example="ensemble.method=stacking",
        output="ensemble folder, RUN_DIR (default: the recipe's output_dir, else runs/NAME)",
        overwrite="replace an existing ensemble folder and its member runs",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.ensemble.build import build_ensemble, print_ensemble

    result = build_ensemble(
        args.recipe, overwrite=args.overwrite, quiet=args.quiet, overrides=common.run_overrides(args)
    )
    print_ensemble(result)
    return 0
