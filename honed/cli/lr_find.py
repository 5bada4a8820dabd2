"""`honed lr-find RECIPE`: the LR range test; prints the suggested `optim.lr=...` as its last line."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("lr-find", help="LR range test: plot loss against a growing LR, suggest optim.lr")
    common.add_run_verb(
        parser,
        example="train.batch_size=16",
        output="run folder for lr_find.csv/png (default: the recipe's output_dir, else runs/NAME)",
        overwrite="replace an earlier lr_find.csv/png in the run folder",
        quiet="no progress bar",
    )
    parser.add_argument("--start", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    parser.add_argument("--end", type=float, default=10.0, help="last learning rate (default 10)")
    parser.add_argument("--steps", type=int, default=100, help="optimizer steps, at most (default 100)")
    parser.add_argument(
        "--method",
        choices=("valley", "steep"),
        default="valley",
        help="valley: fastai's default; steep: steepest fall of the smoothed loss",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from honed.recipe import load_recipe
    from honed.train.lr_find import lr_find, suggest

    overrides = common.run_overrides(args)
    lrs, losses, lr = lr_find(
        args.recipe,
        start=args.start,
        end=args.end,
        steps=args.steps,
        method=args.method,
        overwrite=args.overwrite,
        quiet=args.quiet,
        **overrides,
    )
    other = "steep" if args.method == "valley" else "valley"
    ended = "the loss diverged" if len(lrs) < args.steps else "all steps ran"
    print(f"lr-find: {len(lrs)} steps from {lrs[0]:.1e} to {lrs[-1]:.1e} ({ended})")
    print(
        f"suggested learning rate ({args.method} method): {lr:.2e}  ({other} method: {suggest(lrs, losses, other):.2e})"
    )
    recipe = load_recipe(args.recipe, overrides)
    print(f"curve: {recipe.run_dir()}/lr_find.png and lr_find.csv")
    if recipe.techniques:
        names = ", ".join(t.name for t in recipe.techniques)
        print(f"note: the range test trains without the recipe's techniques ({names})")
    print(f"optim.lr={lr:.2e}")
    return 0
