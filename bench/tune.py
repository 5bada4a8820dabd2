"""Benchmark: random search (no pruning) vs TPE + median pruning vs grid, same space and budget.

Each strategy is one `honed tune` in its own fresh process on the techniques text task (MiniLM,
Rotten Tomatoes subset, max_length 64), one thread. Reports best val accuracy, the best trial's
test accuracy, compute spent (trial-epochs) and wall time, and the trial-epochs each strategy needed
to come within 0.5 point of the best unpruned val accuracy. Also times Optuna's own overhead per
trial (no-op objective, same storage/sampler/pruner setup).

    nice -n 5 .venv/bin/python bench/tune.py            # ~30 min on one busy core (240/120/240 rows, 6 trials each)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "bench" / "recipes" / "techniques-text.yaml"
SPACE = {
    "optim.lr": {"type": "float", "low": 1.0e-5, "high": 3.0e-4, "log": True, "grid": [1.0e-5, 5.5e-5, 3.0e-4]},
    "schedule.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3, "grid": [0.0, 0.2]},
}
STRATEGIES = {
    "random": {"sampler": "random", "pruner": "none"},
    "tpe-median": {"sampler": "tpe", "pruner": "median", "startup_trials": 3},
    "grid": {"sampler": "grid", "pruner": "none"},
    "tpe-median-loss": {"sampler": "tpe", "pruner": "median", "startup_trials": 3, "metric": "loss"},
}


def recipe_for(strategy: str, trials: int, rows: tuple[int, int, int], epochs: int) -> dict[str, Any]:
    tree = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    tree["name"] = f"bench-tune-{strategy}"
    tree["data"]["max_rows"] = dict(zip(("train", "val", "test"), rows, strict=True))
    tree["train"].update(epochs=epochs)
    tree["report"] = {"enabled": False}
    tree["search"] = {"metric": "accuracy", **STRATEGIES[strategy], "n_trials": trials, "seed": 0, "params": SPACE}
    return tree


def run_strategy(strategy: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = out / strategy
    recipe = out / f"{strategy}.yaml"
    recipe.write_text(
        yaml.safe_dump(recipe_for(strategy, args.trials, args.rows, args.epochs), sort_keys=False), encoding="utf-8"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "honed.cli", "tune", str(recipe), "--output", str(folder), "--quiet"],
        check=True,
        env=env,
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    return summarise(folder, wall)


def summarise(folder: Path, wall: float) -> dict[str, Any]:
    import optuna

    study = optuna.load_study(study_name=None, storage=f"sqlite:///{folder / 'study.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    by_loss = study.direction == optuna.study.StudyDirection.MINIMIZE  # optimised val loss: compare on val accuracy
    rows = [
        {
            "number": t.number,
            "state": t.state.name,
            "epochs": t.user_attrs.get("epochs", 0),
            "value": t.user_attrs.get("val_accuracy") if by_loss else t.value,
            "objective": t.value,
            "test_accuracy": t.user_attrs.get("test_accuracy"),
            "params": t.params,
        }
        for t in trials
    ]
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = min(complete, key=lambda r: r["objective"]) if by_loss else max(complete, key=lambda r: r["value"])
    return {
        "wall_s": wall,
        "trial_epochs": sum(r["epochs"] for r in rows),
        "best_val": best["value"],
        "best_test": best["test_accuracy"],
        "best_params": best["params"],
        "pruned": sum(r["state"] == "PRUNED" for r in rows),
        "failed": sum(r["state"] == "FAIL" for r in rows),
        "trials": rows,
    }


def epochs_to_reach(rows: list[dict[str, Any]], target: float) -> int | None:
    """Cumulative trial-epochs (in trial order) until a completed trial reaches `target`."""
    spent = 0
    for row in rows:
        spent += row["epochs"]
        if row["state"] == "COMPLETE" and row["value"] >= target - 1e-9:
            return spent
    return None


def optuna_overhead(folder: Path, trials: int = 100) -> float:
    """Milliseconds per trial of ask/tell/storage/heartbeat with a no-op objective (TPE + median, SQLite)."""
    from honed.tune.space import suggest
    from honed.tune.spec import SearchSpec
    from honed.tune.study import open_storage, open_study

    spec = SearchSpec.model_validate({**STRATEGIES["tpe-median"], "n_trials": trials, "params": SPACE})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "overhead.db").unlink(missing_ok=True)
    study = open_study(open_storage(f"sqlite:///{folder / 'overhead.db'}", spec), "overhead", spec, 0, 3)

    def objective(trial: Any) -> float:
        values = suggest(trial, spec)
        for epoch in range(1, 4):
            trial.report(values["optim.lr"] * epoch, epoch)
            trial.should_prune()
        return values["optim.lr"]

    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return 1000 * (time.perf_counter() - started) / trials


def previous(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved.get("results", saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="random,tpe-median,grid")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--rows", type=lambda s: tuple(int(x) for x in s.split(",")), default=(240, 120, 240), help="train,val,test"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tune")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = previous(args.out / "summary.json")  # strategies not re-run keep their earlier figures
    for strategy in args.strategies.split(","):
        shutil.rmtree(args.out / strategy, ignore_errors=True)  # a fresh study (re-running would resume it)
        results[strategy] = run_strategy(strategy, args.out, args)
        (args.out / "summary.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    unpruned = max(r["best_val"] for k, r in results.items() if not k.startswith("tpe-median"))
    overhead = optuna_overhead(args.out / "overhead")
    print(
        "| strategy | trials (pruned) | trial-epochs | wall s | best val acc | its test acc "
        f"| trial-epochs to reach {unpruned - 0.005:.4f} |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in (k for k in STRATEGIES if k in results):
        r = results[name]
        reach = epochs_to_reach(r["trials"], unpruned - 0.005)
        r["epochs_to_target"] = reach
        print(
            f"| {name} | {len(r['trials'])} ({r['pruned']}) | {r['trial_epochs']} | "
            f"{r['wall_s']:.0f} | {r['best_val']:.4f} | "
            f"{r['best_test']:.4f} | {reach if reach is not None else 'not reached'} |"
        )
    print(f"Optuna overhead per trial (no-op objective, SQLite, TPE + median, 3 reports): {overhead:.1f} ms")
    (args.out / "summary.json").write_text(
        json.dumps({"results": results, "overhead_ms": overhead, "target": unpruned - 0.005}, indent=1),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
