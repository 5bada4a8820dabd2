"""What a climb leaves in its folder: leaderboard.csv, climb.json, climb.html, best_recipe.yaml, the best
single model folder (best_model/) and, when the ensemble stage kept one, the best ensemble (best_ensemble/).
Written after every stop (done, budget spent, Ctrl-C), so a partial climb shows its ladder too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from honed.climb.configs import Config
from honed.climb.html import write_html
from honed.climb.runners import COMBINING
from honed.climb.state import Climb


def write_outputs(c: Climb, stopped: str, rule: str, recipe_name: str) -> dict[str, Any]:
    single = c.distilled or c.best_single or c.best
    total = 0.0
    for rung in c.ladder:  # every run of each rung's configuration so far (a re-run reports the same)
        total += c.seconds(c.known[rung["config"]])
        rung["cum_seconds"] = total
    summary = {
        "recipe": recipe_name, "metric": c.metric, "direction": "maximize" if c.sign > 0 else "minimize",
        "pairing": c.pairing, "pairs": c.pairs, "seeds": c.seeds, "rule": rule, "alpha": c.spec.alpha,
        "budget": {"seconds": c.spec.budget, "runs": c.spec.trials, "spent_seconds": c.spent(),
                   "runs_done": len(c.store.results())},
        "stopped": stopped, "ladder": c.ladder, "candidates": c.rows, "next": list(c.pending), "notes": c.notes,
        "best": _best(c, single), "honesty": _honesty(c.ladder),
    }
    c.folder.mkdir(parents=True, exist_ok=True)
    (c.folder / "climb.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    leaderboard(c.rows).to_csv(c.folder / "leaderboard.csv", index=False)
    summary["best"]["model_dir"] = _copy(c, single, "best_model")
    if c.best is not single and c.best.runner in COMBINING:
        summary["best"]["ensemble_dir"] = _copy(c, c.best, "best_ensemble")
    teacher = summary["best"]["ensemble_dir"] or str(c.folder.resolve() / "best_ensemble")
    _best_recipe(c.folder / "best_recipe.yaml", single, teacher)
    (c.folder / "climb.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    write_html(summary, c.folder / "climb.html")
    return summary


def leaderboard(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per candidate: per-pair val and test, the paired Δ with its interval, the decision and why."""
    out = []
    for r in rows:
        dv, dt = r.get("delta_val") or {}, r.get("delta_test") or {}
        out.append({
            "stage": r["stage"], "change": r["change"], "phase": r["phase"], "accepted": r["accepted"],
            "reason": r["reason"], "val": _join(r["val"]), "test": _join(r["test"]),
            "delta_val": dv.get("mean"), "delta_val_low": dv.get("low"), "delta_val_high": dv.get("high"),
            "p": dv.get("p"), "delta_test": dt.get("mean"), "delta_test_low": dt.get("low"),
            "delta_test_high": dt.get("high"), "seconds": round(float(r["seconds"]), 1), "config": r["config"],
        })
    return pd.DataFrame(out, columns=["stage", "change", "phase", "accepted", "reason", "val", "test", "delta_val",
                                      "delta_val_low", "delta_val_high", "p", "delta_test", "delta_test_low",
                                      "delta_test_high", "seconds", "config"])


def _join(values: list[float | None]) -> str:
    return " ".join("nan" if v is None else f"{v:.4f}" for v in values)


def _best(c: Climb, single: Config) -> dict[str, Any]:
    """The best configuration, scored on the pairs its ladder rung shows (a kept change: its fresh pairs)."""
    rung = next((r for r in reversed(c.ladder) if r["config"] == c.best.id), None)
    val, test = (rung["val"], rung["test"]) if rung else (c.scores(c.best), c.scores(c.best, "test"))
    mean = lambda xs: (sum(x for x in xs if x is not None) / max(1, sum(x is not None for x in xs)))  # noqa: E731
    return {"config": c.best.id, "change_list": [ch.name for ch in c.best.changes], "val_mean": mean(val),
            "test_mean": mean(test), "single_config": single.id, "model_dir": None, "ensemble_dir": None}


def _honesty(ladder: list[dict[str, Any]]) -> dict[str, int]:
    """How many accepted steps also moved test the way they moved val (the climb's own honesty)."""
    steps = ladder[1:]
    return {"accepted": len(steps), "test_improved": sum(_improved_test(s) for s in steps)}


def _improved_test(step: dict[str, Any]) -> bool:
    test, val = (step.get("delta_test") or {}).get("mean"), (step.get("delta_val") or {}).get("mean")
    return test is not None and val is not None and test != 0 and (test > 0) == (val > 0)


def _best_recipe(path: Path, config: Config, teacher: str) -> None:
    """The recipe of `config`; a distilled one names the saved best ensemble as its teacher."""
    resolved = json.loads(json.dumps(config.resolved()))
    for technique in resolved.get("techniques") or []:
        for key, value in technique.items():
            if isinstance(value, str) and value.startswith("{ensemble:"):
                technique[key] = teacher
    tree = {k: v for k, v in resolved.items() if k not in ("output_dir", "climb")}
    header = ("# The climb's best single-model recipe: the baseline plus the accepted changes, reading the\n"
              "# climb's fixed splits (data/*.csv beside this file). Train it with `honed train best_recipe.yaml`.\n")
    if config.runner != "fit":
        header += (f"# Note: the best single model is not a fine-tune but the {config.label} model in best_model/;\n"
                   "# this recipe holds its data and the fine-tune settings it was compared with.\n")
    path.write_text(header + yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")


def _copy(c: Climb, config: Config, name: str) -> str | None:
    """The configuration's first-pair model folder copied to CLIMB_DIR/name (replacing an older copy)."""
    source = c.model_dir(config, 0)
    if source is None or not Path(source).is_dir():
        return None
    target = c.folder / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    _own_members(target)
    return str(target)


def _own_members(folder: Path) -> None:
    """An ensemble names its prefit members by path (the climb's runs/): copied into members/ and named
    relative to the folder, so the copy works alone (moved, or with runs/ deleted)."""
    doc_file = folder / "ensemble.json"
    if not doc_file.is_file():
        return
    doc = json.loads(doc_file.read_text(encoding="utf-8"))
    for entry in doc["members"]:
        path = Path(entry["path"])
        if path.is_absolute():
            inside = Path("members") / entry["name"]
            shutil.copytree(path, folder / inside, dirs_exist_ok=True)
            entry["path"] = str(inside)
    doc_file.write_text(json.dumps(doc, indent=1), encoding="utf-8")
