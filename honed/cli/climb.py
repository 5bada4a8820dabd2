"""`honed climb RECIPE`: from the recipe (the baseline) to a better model by paired, budgeted experiments."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common
from honed.climb import TASKS  # noqa: F401  (honed/cli/tasks.py reads it: the tasks this verb runs)

DESCRIPTION = (
    "Climbs from the recipe (the baseline) to a better model. Stages run in order (data, optimisation, "
    "techniques, model, ensemble; the recipe's climb: section switches them off or limits them); each proposes "
    "candidate changes, runs each on the same seeds as the current best (or the same folds when the training "
    "split is small) and keeps it only when the paired improvement of the val metric is positive and a "
    "one-sided paired t-test passes (climb.alpha, default 0.1). Test scores are reported beside val, never "
    "used to choose. Writes leaderboard.csv, climb.json, climb.html (the ladder), best_recipe.yaml, "
    "best_model/ and best_ensemble/ to the climb folder (--output, else output_dir, else runs/NAME-climb). "
    "The runs live in an Optuna study (CLIMB_DIR/climb.db, or --storage URL): re-running the same command "
    "resumes after Ctrl-C, a crash or kill -9, and the same command on several machines with one --storage "
    "URL shares the work."
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "climb", description=DESCRIPTION,
        help="climb from a recipe to a better model, keeping only what the evidence supports")
    common.add_recipe(parser, "the baseline recipe (YAML), optionally with a climb: section")
    common.add_overrides(parser, "climb.seeds=3 climb.stages=[optimisation,techniques]")
    parser.add_argument("--budget", default=None, metavar="TIME",
                        help="wall-clock budget of the whole climb, e.g. 3h, 90m, 600s (overrides climb.budget)")
    parser.add_argument("--trials", type=int, default=None, metavar="N",
                        help="run budget of the whole climb: one seed or fold of one candidate is one run")
    parser.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage URL shared by several machines, e.g. postgresql://user:pw@host/db "
                             "(default: sqlite in CLIMB_DIR/climb.db)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="run processes on this machine (the cores are split between them; default 1)")
    parser.add_argument("--single-model", action="store_true", default=None,
                        help="after the ensemble stage, distil the best ensemble back into one model")
    common.add_output(parser, "climb folder (default: output_dir, else runs/NAME-climb)")
    common.add_quiet(parser, "no live progress line")
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from honed.climb.run import climb

    result = climb(args.recipe, overrides=dict(args.overrides), budget=args.budget, trials=args.trials,
                   storage=args.storage, workers=args.workers, output=args.output, single_model=args.single_model,
                   quiet=args.quiet)
    s, console = result.summary, Console()
    console.print(f"rule: {s['rule']}")
    for rung in s["ladder"]:
        delta = rung.get("delta_val") or {}
        gain = f"  Δval {delta['mean']:+.4f} (p {delta['p']:.3f})" if delta else ""
        console.print(f"{rung['step']:>2} {rung['stage']:<12} {rung['change']:<40} val {_num(rung['val_mean'])} "
                      f"test {_num(rung['test_mean'])}{gain}")
    console.print(f"stopped: {s['stopped']}; {len(s['candidates'])} candidates, {s['budget']['runs_done']} runs, "
                  f"{s['budget']['spent_seconds'] / 60:.0f} min")
    console.print(f"best recipe: {result.best_recipe} (`honed train` it); ladder: {result.folder / 'climb.html'}")
    return 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
