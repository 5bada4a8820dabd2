"""`honed.climb(recipe)`: from the user's recipe (the baseline) to a better model, stage by stage.

Set-up validates everything before anything trains (the `climb:` section, the budget, the user's
candidates, the storage, a study made for another recipe or metric) and fixes the splits (data.py).
Then: the baseline on every pair, each enabled stage in order (data, optimisation, techniques, model,
ensemble; stages.py), and the outputs (outputs.py). The runs live in an Optuna study (store.py), so the
same command resumes a climb after Ctrl-C, a crash or kill -9, and several machines with one
`--storage` URL share one climb.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.assets import installed_backbones
from honed.climb import TASKS as CLIMB_TASKS
from honed.climb.acceptance import rule_text
from honed.climb.candidates import found_lr, load_proposers, stage_changes
from honed.climb.configs import NOT_IDENTITY, Config, check_change, identity_tree
from honed.climb.data import load_splits, situation, write_splits
from honed.climb.ensemble_stage import ensemble_stage
from honed.climb.executor import BudgetSpent
from honed.climb.outputs import write_outputs
from honed.climb.spec import ClimbSpec, parse_budget, parse_climb
from honed.climb.stages import climb_stage
from honed.climb.state import Climb
from honed.climb.store import Store
from honed.climb.transfer import transfer_rows
from honed.data.targets import with_task
from honed.errors import HonedError, require_task
from honed.fit import normalise_overrides
from honed.metrics import DIRECTION, TASKS
from honed.progress import progress_bar
from honed.proposals import Change
from honed.recipe import Recipe, load_recipe
from honed.train.interrupt import Interrupted, stop_on_signals


@dataclass
class ClimbResult:
    folder: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best_recipe(self) -> Path:
        return self.folder / "best_recipe.yaml"


def climb(recipe: str | Path | dict | Recipe, *, overrides: dict[str, Any] | None = None,
          budget: str | float | None = None, trials: int | None = None, storage: str | None = None,
          workers: int | None = None, output: str | Path | None = None, single_model: bool | None = None,
          quiet: bool = True, **kwargs: Any) -> ClimbResult:
    """Climb from `recipe`; `budget` ('3h', '90m', seconds) and `trials` (runs) bound the whole climb.
    Returns the folder with leaderboard.csv, climb.json, climb.html, best_recipe.yaml, best_model/."""
    user, spec = _settings(recipe, {**(overrides or {}), **normalise_overrides(kwargs)}, budget, trials, workers,
                           single_model)
    folder = Path(output or user.output_dir or Path("runs") / f"{user.name}-climb")
    if folder.exists() and not folder.is_dir():
        raise HonedError(f"--output: '{folder}' is a file; give a folder for the climb")
    frames, task, labels = load_splits(user)  # bad data, and every check below: before the folder is touched
    require_task("climb", task, CLIMB_TASKS)
    if task != "classification":  # task auto read numbers: the task's loss and metric where the recipe was silent
        user = with_task(user, task)  # (classification keeps its tree, so existing climbs keep their run ids)
    pairing, pairs, metric = _pairing(user, spec, frames, task)
    transfer, dropped = transfer_rows(user, spec, task, pairing, frames)
    tree = {k: v for k, v in identity_tree(user.model_dump(mode="json")).items() if k not in NOT_IDENTITY}
    identity = {"tree": tree, "pairing": pairing, "pairs": pairs}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = spec.study_name or f"climb-{user.name}"
    if storage is not None:  # an unreachable database or another climb's study: before the folder is made
        store = Store(storage, name, fingerprint, metric)
    folder.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(folder / 'climb.db').resolve()}"
    if storage is None:
        store = Store(url, name, fingerprint, metric)
    data = write_splits(user, {**frames, **transfer}, task, labels, folder / "data")  # + climb.transfer's rows
    base = Config(load_recipe(user, {**data, "climb": None, "output_dir": None}).model_dump(mode="json"),
                  root=str(folder.resolve()))
    spent = float(store.attr("wall_seconds", 0.0))
    plan = {"storage": url, "study": name, "fingerprint": fingerprint, "metric": metric,
            "folder": str(folder.resolve()), "max_runs": spec.trials,
            "deadline": None if spec.budget is None else time.time() + spec.budget - spent,
            "transfer": next(iter(transfer), None)}
    c = Climb(spec, store, plan, folder, base, metric, -1.0 if DIRECTION.get(metric) == "min" or metric == "loss"
              else 1.0, pairing, pairs, [user.seed + i for i in range(2 * pairs)], workers=spec.workers,
              spent_before=spent)
    if dropped:
        c.notes.append(f"climb.transfer: {dropped} rows repeat a val or test input and were left out")
    load_proposers()
    with stop_on_signals():  # SIGTERM between runs too: the outputs are written, then exit 143
        stopped = _climb(c, spec, frames, task, quiet)
    rule = rule_text(metric, spec.alpha, c.pairs, c.pairing, spec.drop_below, spec.fresh_pairs)
    return ClimbResult(folder, write_outputs(c, stopped, rule, user.name))


def _pairing(user: Recipe, spec: ClimbSpec, frames: dict[str, Any], task: str) -> tuple[str, int, str]:
    """Seeds or folds, how many, and the val metric, checked against the data and the task."""
    rows = len(frames["train"])
    pairing = spec.pairing if spec.pairing != "auto" else ("folds" if rows < spec.small_data_rows else "seeds")
    pairs = spec.seeds if pairing == "seeds" else spec.folds
    if pairing == "seeds" and not len(frames["val"]):
        raise HonedError("climb: seed pairing scores candidates on the val split, but the recipe has no val rows; "
                         "set data.split.val > 0 or climb.pairing: folds")
    metric = spec.metric or user.train.metric
    if metric not in TASKS[task].names:
        raise HonedError(f"{user.name}: climb.metric: '{metric}' is not a val metric of task {task} "
                         f"({', '.join(TASKS[task].names)})")
    if spec.trials is not None and spec.trials < pairs:
        raise HonedError(f"--trials: {spec.trials} runs cannot even score the baseline ({pairs} {pairing}); "
                         f"give at least {pairs}")
    return pairing, pairs, metric


def _settings(recipe: Any, overrides: dict[str, Any], budget: Any, trials: int | None, workers: int | None,
              single_model: bool | None) -> tuple[Recipe, ClimbSpec]:
    user = load_recipe(recipe, overrides)
    spec = parse_climb(user.climb, source=user.name)
    if budget is not None:
        spec.budget = parse_budget(budget, "--budget")
    if trials is not None:
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
            raise HonedError(f"--trials: expected a number of runs of 1 or more, got {trials}")
        spec.trials = trials
    if workers is not None:
        if workers < 1:
            raise HonedError(f"--workers: expected 1 or more, got {workers}")
        spec.workers = workers
    if single_model is not None:
        spec.single_model = bool(single_model)
    base = Config(user.model_dump(mode="json"))
    for i, candidate in enumerate(spec.candidates):  # a bad key or technique: one line, before any training
        change = Change(candidate.name, dict(candidate.overrides), list(candidate.techniques), candidate.group)
        check_change(base, change, f"climb.candidates.{i}")
    return user, spec


def _climb(c: Climb, spec: ClimbSpec, frames: dict[str, Any], task: str, quiet: bool) -> str:
    """Baseline, then each stage; returns why the climb stopped (done, budget, interrupted)."""
    stages = spec.enabled()
    with progress_bar(not quiet) as bars:
        bar = bars.add_task("climb", total=spec.trials, info="")
        c.show = _Display(c, bars, bar)
        reached = -1
        try:
            c.run([c.best], c.screening)
            if all(v is None for v in c.scores(c.best)):
                raise HonedError(f"climb: the baseline recipe failed on every pair ({c.failure(c.best)}); "
                                 "fix the recipe, then run the same command again")
            c.rung("baseline", c.best, None)
            for index, stage in enumerate(stages):
                reached = index
                _stage(c, stage, frames, task)
            reached = len(stages)
            c.rebuild([c.distilled or c.best_single or c.best, c.best], range(1))  # best_model/, best_ensemble/
            return "done"
        except BudgetSpent as exc:
            c.notes.append(f"stopped: {exc}")
            c.record_unfinished()
            if 0 <= reached < len(stages):
                c.pending.insert(0, f"the rest of stage {stages[reached]}")
            c.pending.extend(f"stage {s}" for s in stages[reached + 1:])
            return "budget"
        except (Interrupted, KeyboardInterrupt):
            c.notes.append("stopped by Ctrl-C/SIGTERM; run the same command again to resume")
            c.record_unfinished()
            write_outputs(c, "interrupted", "", c.best.tree.get("name", "run"))
            raise


def _stage(c: Climb, stage: str, frames: dict[str, Any], task: str) -> None:
    if stage == "ensemble":
        ensemble_stage(c)
        return
    recipe = load_recipe(c.best.resolved())
    lr = found_lr(c) if stage == "optimisation" else None
    here = situation(recipe, frames, task, _backbones(c, stage, recipe), lr_found=lr)
    climb_stage(c, stage, stage_changes(c, stage, here))


def _backbones(c: Climb, stage: str, recipe: Any) -> list[Any]:
    """climb.backbones, or when the recipe lists none, the pretrained models of its data kind installed here
    when the climb began (kept in the study, so a resumed or shared climb proposes the same ones)."""
    if c.spec.backbones is not None:
        return list(c.spec.backbones)
    found = c.store.attr("installed_backbones")
    if found is None:
        found = installed_backbones(recipe.data.kind)
        c.store.set_attr("installed_backbones", found)
    others = [b["name"] for b in found if b["name"] != recipe.model.name]
    if stage == "model" and others:
        c.notes.append(f"model stage: climb.backbones is not set, so it proposed the other installed "
                       f"{recipe.data.kind} models ({', '.join(others)}); set climb.backbones: [] for none")
    return found


class _Display:
    """The live line: stage and candidate, runs done, best so far, budget left. When the output is not an
    interactive terminal (a log file, CI, TERM=dumb), where a live bar is not drawn, each new line is printed with
    the time."""

    def __init__(self, c: Climb, bars: Any, bar: Any) -> None:
        self.c, self.bars, self.bar = c, bars, bar

    def __call__(self, text: str) -> None:
        best = [v for v in self.c.scores(self.c.best) if v is not None]
        mean = f"best val {self.c.metric} {sum(best) / len(best):.4f}" if best else "best: baseline running"
        done = len(self.c.store.results())
        line = f"{text} | {mean} | {done} runs | {self.c.budget_text()}"
        self.bars.update(self.bar, completed=done, info=line)
        console = self.bars.console
        if not self.bars.disable and not console.is_interactive and not console.is_jupyter:  # Jupyter draws
            console.print(f"{time.strftime('%H:%M:%S')} climb: {line}", highlight=False, soft_wrap=True)
