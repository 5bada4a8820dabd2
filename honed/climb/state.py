"""The climb's running state: the current best, the ladder so far, every candidate's record, the budget.

`Climb.scores(config)` gives a configuration's per-pair results (running what is missing through the
executor); `Climb.record(...)` writes one leaderboard row. The stage logic lives in stages.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from honed.climb.acceptance import Paired, paired, spread
from honed.climb.configs import Config
from honed.climb.executor import check_budget, execute
from honed.climb.runners import Job
from honed.climb.spec import ClimbSpec
from honed.climb.store import REBUILD, Store
from honed.train.interrupt import raise_if_pending


@dataclass
class Climb:
    spec: ClimbSpec
    store: Store
    plan: dict[str, Any]  # plain data the worker processes need (storage, study, metric, folder)
    folder: Path
    best: Config
    metric: str
    sign: float  # +1 when larger is better, -1 for a metric to minimise
    pairing: str
    pairs: int
    seeds: list[int]
    workers: int = 1
    show: Callable[[str], None] = lambda text: None
    started: float = field(default_factory=time.monotonic)
    spent_before: float = 0.0  # wall-clock seconds of earlier invocations (a resumed climb), kept in the study
    rows: list[dict[str, Any]] = field(default_factory=list)
    ladder: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # candidates not tried for lack of budget
    substitutes: dict[str, list[str]] = field(default_factory=dict)  # "{ensemble}" -> folder per pair
    known: dict[str, Config] = field(default_factory=dict)  # every configuration scored, by id
    notes: list[str] = field(default_factory=list)  # stages skipped and why
    best_single: Config | None = None  # set by the ensemble stage: the best one-model configuration
    distilled: Config | None = None  # the ensemble distilled into the best single configuration, if kept
    screening_now: list[tuple[str, Config, Config]] = field(default_factory=list)  # (stage, candidate, base)

    # -- budget -------------------------------------------------------------------------------------
    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.started

    @property
    def screening(self) -> range:
        """The pairs candidates are screened on; the next `pairs` verify a kept change on fresh seeds or folds."""
        return range(self.pairs)

    @property
    def verifying(self) -> range:
        return range(self.pairs, 2 * self.pairs)

    def budget_text(self) -> str:
        parts = []
        if self.spec.budget is not None:
            parts.append(f"{max(0.0, self.spec.budget - self.spent()) / 60:.0f} min left")
        if self.spec.trials is not None:
            parts.append(f"{max(0, self.spec.trials - self.store.runs_used())} runs left")
        return ", ".join(parts) or "no budget limit"

    # -- runs ---------------------------------------------------------------------------------------
    def jobs(self, config: Config, pairs: range) -> list[Job]:
        tree = config.resolved()
        out = []
        for i in pairs:
            job_tree = _substitute(tree, {k: v[i] for k, v in self.substitutes.items() if i < len(v)})
            seed = self.seeds[i] if self.pairing == "seeds" else self.seeds[0]
            fold_seed = self.seeds[0] + (1 if i >= self.pairs else 0)  # verification folds: another shuffle
            out.append(Job(config.id, job_tree, config.runner, i, seed, str(self.folder / "runs" / config.id /
                                                                             f"pair-{i}"), self.pairing,
                           self.pairs, fold_seed))
        return out

    def run(self, configs: list[Config], pairs: range) -> None:
        """Run what is missing of `pairs` for each configuration (one round, in parallel with workers); the
        budget is checked before each run."""
        jobs = [j for c in configs for j in self.jobs(c, pairs) if self.store.result(j.key) is None]
        if jobs:
            raise_if_pending()
            check_budget(self.plan, self.store)
            try:
                execute(jobs, self.store, self.plan, self.workers, self.show)
            finally:
                self.store.set_attr("wall_seconds", self.spent())

    def scores(self, config: Config, split: str = "val", pairs: range | None = None) -> list[float | None]:
        """The metric per pair (None where the run is missing or failed); the screening pairs by default."""
        out: list[float | None] = []
        for i in pairs if pairs is not None else self.screening:
            result = self.store.result(f"{config.id}/{i}")
            out.append(None if result is None else result[split].get(self.metric))
        return out

    def model_dir(self, config: Config, pair: int) -> str | None:
        """The folder of the model `config` trained on `pair` (stored relative to the climb folder); the newest
        rebuilt copy's when the first one is gone from disk."""
        folders = [f for f, done in self._attempts(config, pair) if done]
        return next((f for f in reversed(folders) if Path(f).is_dir()), folders[0] if folders else None)

    def _attempts(self, config: Config, pair: int) -> list[tuple[str, bool]]:
        """(folder, finished) of the run and each rebuild of it tried so far (a failed rebuild: not finished)."""
        out: list[tuple[str, bool]] = []
        while True:
            key = f"{config.id}/{pair}" + (f"{REBUILD}{len(out)}" if out else "")
            result = self.store.result(key)
            if result is None and (not out or self.store.failure(key) is None):
                return out
            out.append((str(self.folder.resolve() / result["model_dir"]) if result else "", result is not None))

    def rebuild(self, configs: list[Config], pairs: range) -> None:
        """Run again the finished runs whose model folder is gone (a fresh checkout keeps the study, not the
        models), for the folders only: the stored scores stay the ones every decision was made on. Rebuilds
        count against the time budget, not the run budget (the same command stops at the same place)."""
        todo = []
        for config in {c.id: c for c in configs}.values():
            for job in self.jobs(config, pairs):
                tried = self._attempts(config, job.pair)
                if tried and tried[0][1] and not any(done and Path(f).is_dir() for f, done in tried):
                    todo.append((config, replace(job, rebuild=len(tried))))
        if not todo:
            return
        jobs, plan = [j for _, j in todo], {**self.plan, "max_runs": None}
        check_budget(plan, self.store)
        try:
            execute(jobs, self.store, plan, self.workers, self.show)
        finally:
            self.store.set_attr("wall_seconds", self.spent())
        gaps = [abs(r["val"].get(self.metric, 0.0) - self.store.result(f"{j.config}/{j.pair}")["val"]
                    .get(self.metric, 0.0)) for j in jobs if (r := self.store.result(j.key)) is not None]
        missing = sum(1 for c, j in todo if not Path(self.model_dir(c, j.pair) or "").is_dir())
        self.notes.append(f"rebuilt {len(gaps)} of {len(jobs)} model folder(s) missing on disk; their val "
                          f"{self.metric} differs from the stored run's by at most {max(gaps, default=0.0):.4f} "
                          "(the decisions use the stored scores)" + (f"; {missing} still missing (built on another "
                                                                    "machine or failed)" if missing else ""))

    def failure(self, config: Config, pairs: range | None = None) -> str | None:
        reasons = [self.store.failure(f"{config.id}/{i}") for i in (pairs if pairs is not None else self.screening)]
        return next((r for r in reasons if r), None)

    def diff(self, config: Config, base: Config, split: str = "val", pairs: range | None = None) -> Paired | None:
        a, b = self.scores(config, split, pairs), self.scores(base, split, pairs)
        both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        return paired([x for x, _ in both], [y for _, y in both], self.spec.alpha, self.sign)

    def seconds(self, config: Config) -> float:
        results = [self.store.result(f"{config.id}/{i}") for i in range(2 * self.pairs)]
        return float(sum(r["seconds"] for r in results if r))

    # -- records ------------------------------------------------------------------------------------
    def record(self, stage: str, config: Config, base: Config, phase: str, accepted: bool, reason: str,
               pairs: range | None = None) -> None:
        """One leaderboard row: the candidate's scores and its paired difference on `pairs` (screening by default,
        the verification pairs for a kept change)."""
        val_diff, test_diff = self.diff(config, base, pairs=pairs), self.diff(config, base, "test", pairs)
        self.known[config.id] = config
        self.rows.append({
            "stage": stage, "change": config.changes[-1].name if config.changes else "baseline",
            "config": config.id, "base": base.id, "phase": phase, "runner": config.runner,
            "val": self.scores(config, pairs=pairs), "test": self.scores(config, "test", pairs),
            "delta_val": _raw(val_diff, self.sign), "delta_test": _raw(test_diff, self.sign),
            "accepted": accepted, "reason": reason, "seconds": self.seconds(config),
            "recipe_changes": [c.as_dict() for c in config.changes],
        })

    def record_unfinished(self) -> None:
        """Rows for the candidates of a screening the climb stopped in (budget, Ctrl-C) that have a finished run:
        their scores so far are on the leaderboard, undecided; re-running the command decides them."""
        listed = {r["config"] for r in self.rows}
        for stage, config, base in self.screening_now:
            if config.id not in listed and any(v is not None for v in self.scores(config)):
                self.record(stage, config, base, "screen", False, "not decided: the climb stopped during screening")
        self.screening_now = []

    def rung(self, stage: str, config: Config, previous: Config | None, pairs: range | None = None) -> None:
        """One step of the ladder (the baseline, or an accepted change with its difference on `pairs`)."""
        val, test = self.scores(config, pairs=pairs), self.scores(config, "test", pairs)
        self.known[config.id] = config
        val_diff = self.diff(config, previous, pairs=pairs) if previous else None
        test_diff = self.diff(config, previous, "test", pairs) if previous else None
        cumulative = (self.ladder[-1]["cum_seconds"] if self.ladder else 0.0) + self.seconds(config)
        self.ladder.append({
            "step": len(self.ladder), "stage": stage, "change": config.label if previous is None and not
            config.changes else config.changes[-1].name, "config": config.id, "val": val, "test": test,
            **_mean_std("val", val), **_mean_std("test", test),
            "delta_val": _raw(val_diff, self.sign), "delta_test": _raw(test_diff, self.sign),
            "cum_seconds": cumulative,
            "changes": [c.as_dict() for c in config.changes],
        })


def _raw(diff: Paired | None, sign: float) -> dict[str, float] | None:
    """The difference in the metric's own direction (candidate - base: negative is better for rmse); p as tested."""
    if diff is None:
        return None
    out = diff.as_dict()
    if sign < 0:
        out.update(mean=-diff.mean, low=-diff.high, high=-diff.low)
    return out


def _mean_std(split: str, values: list[float | None]) -> dict[str, float | None]:
    mean, std = spread([v for v in values if v is not None])
    return {f"{split}_mean": mean, f"{split}_std": std}


def _substitute(tree: Any, values: dict[str, str]) -> Any:
    """`{ensemble}`-style placeholders in string values replaced by this pair's folder."""
    if not values:
        return tree
    if isinstance(tree, dict):
        return {k: _substitute(v, values) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_substitute(v, values) for v in tree]
    if isinstance(tree, str) and tree in values:
        return values[tree]
    return tree
