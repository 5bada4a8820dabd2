"""The climb benchmark: `honed climb` from a naive baseline recipe, and what it found, on test.

    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/climb.py rt --workers 2 --budget 8h
    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/climb.py fmnist --workers 2 --budget 6h
    .venv/bin/python bench/climb.py rt --report          # figures of what has finished, no training
    nice -n 5 env HF_HUB_OFFLINE=1 .venv/bin/python bench/climb.py quickstart --workers 1 --budget 2h

quickstart: recipes/climb-quickstart.yaml, the recipe README's `honed climb` runs (its own 2 h budget).

rt: bench/recipes/climb-rt.yaml (Rotten Tomatoes split by movie, 4,000 training reviews, test 20% =
2,5xx reviews, max_length 64, MiniLM with HF Trainer's defaults). fmnist: bench/recipes/climb-fmnist.yaml
(MobileNetV2, 5,000 / 2,000 images at 64 px, AdamW 1e-3, 2 epochs). The climb folder is
bench/results/climb-<name>/; its Optuna study keeps every finished run, so re-running the command resumes
(the budget counts the seconds of runs already done). Reported, test mean ± std over the climb's seeds:
the naive baseline, the best single model at the baseline's size (same backbone and depth; distilled
counts), the best single model of any size, the best ensemble, the compute of each; and how many accepted
steps also improved test. Goals (issue 16): rt best at baseline size >= naive + 3 points, best overall >=
naive + 5; fmnist >= naive + 3.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from honed.climb.runners import COMBINING

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {**{name: ROOT / "bench" / "recipes" / f"climb-{name}.yaml" for name in ("rt", "fmnist")},
           "quickstart": ROOT / "recipes" / "climb-quickstart.yaml"}  # the user-facing recipe, as README runs it
GOALS = {"rt": (0.03, 0.05), "fmnist": (0.03, 0.03)}  # the quickstart has none: a better model than its baseline


def folder(name: str) -> Path:
    return ROOT / "bench" / "results" / f"climb-{name}"  # runs/ and data/ are not committed (.gitignore there)


def same_size(row: dict[str, Any]) -> bool:
    """A configuration of the baseline's backbone and depth: no change touches model.* or the runner."""
    for change in row.get("recipe_changes", []):
        if change.get("runner", "fit") != "fit":
            return False
        if any(key == "model" or key.startswith("model.") for key in change.get("overrides", {})):
            return False
    return True


def complete(row: dict[str, Any], pairs: int) -> bool:
    return len(row.get("test") or []) == pairs and all(v is not None for v in row["test"] + row["val"])


def pick(rows: list[dict[str, Any]], sign: float) -> dict[str, Any] | None:
    """The row with the best mean val (the test is never used to choose)."""
    return max(rows, key=lambda r: sign * statistics.mean(r["val"]), default=None)


def summarise(summary: dict[str, Any]) -> dict[str, Any]:
    sign = 1.0 if summary["direction"] == "maximize" else -1.0
    pairs = summary["pairs"]
    base = summary["ladder"][0]
    rows = [r for r in summary["candidates"] if complete(r, pairs)]
    rows.append({**base, "recipe_changes": [], "runner": "fit"})
    singles = [r for r in rows if r.get("runner") not in COMBINING]
    found = {
        "naive": base,
        "best at the baseline's size": pick([r for r in singles if same_size(r)], sign),
        "best single model": pick(singles, sign),
        "best ensemble": pick([r for r in rows if r.get("runner") in COMBINING], sign),
        "best overall (by val)": pick(rows, sign),
    }
    out = {}
    for label, row in found.items():
        if row is not None:
            out[label] = {"change": row.get("change"), "val": _ms(row["val"]), "test": _ms(row["test"]),
                          "test_mean": statistics.mean(row["test"]), "seconds": row.get("seconds")}
    return out


def _ms(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"


def portable(name: str) -> None:
    """The committed text outputs name paths from the repository root, not from the checkout the climb ran in
    (it writes absolute ones; `honed train best_recipe.yaml` run from the root reads the relative ones)."""
    checkout = re.compile(r"/[^\s\"'<>]*?/(?=bench/results/)")  # .../bench/results/ -> bench/results/
    for path in (folder(name) / f for f in ("climb.json", "climb.html", "best_recipe.yaml", "leaderboard.csv")):
        if path.is_file():
            path.write_text(checkout.sub("", path.read_text(encoding="utf-8")), encoding="utf-8")


def report(name: str) -> None:
    path = folder(name) / "climb.json"
    if not path.is_file():
        print(f"no climb.json in {folder(name)} yet")
        return
    summary = json.loads(path.read_text(encoding="utf-8"))
    figures = summarise(summary)
    naive = figures["naive"]["test_mean"]
    budget = summary["budget"]
    print(f"climb {name}: stopped {summary['stopped']}, {budget['runs_done']} runs, "
          f"{budget['spent_seconds'] / 3600:.2f} h of compute; pairing {summary['pairing']} x{summary['pairs']}")
    for label, f in figures.items():
        gain = f["test_mean"] - naive
        print(f"  {label:<28} {f['change'] or 'baseline':<44} val {f['val']}  test {f['test']}  "
              f"Δtest {gain:+.4f}")
    honesty = summary.get("honesty", {})
    print(f"  accepted steps {honesty.get('accepted', 0)}, "
          f"of which test also improved: {honesty.get('test_improved', 0)}")
    if name not in GOALS:
        return
    same, overall = GOALS[name]
    at_size = figures.get("best at the baseline's size", figures["naive"])["test_mean"] - naive
    best = figures["best overall (by val)"]["test_mean"] - naive  # chosen on val, like everything else
    print(f"  goal at baseline size +{same:.2f}: {'met' if at_size >= same else 'NOT met'} ({at_size:+.4f}); "
          f"goal overall +{overall:.2f}: {'met' if best >= overall else 'NOT met'} ({best:+.4f})")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", default="8h")
    parser.add_argument("--report", action="store_true", help="only print the figures of what has finished")
    args = parser.parse_args(argv)
    if not args.report:
        from honed.climb.run import climb
        from honed.train.interrupt import Interrupted

        try:
            climb(RECIPES[args.name], output=folder(args.name), budget=args.budget, workers=args.workers, quiet=False)
        except Interrupted as stop:  # SIGTERM or Ctrl-C: the climb wrote its outputs; re-running resumes
            print(f"climb {args.name}: {stop}; re-run the same command to resume", file=sys.stderr)
            raise SystemExit(stop.exit_code) from None
        finally:  # a stop or a crash still shows what had finished before it
            portable(args.name)
            report(args.name)
        return
    report(args.name)


if __name__ == "__main__":
    main(sys.argv[1:])
