"""Storage, sampler and pruner registries, and opening (or joining) a study safely.

Storage is Optuna's RDBStorage: an SQLite file in the run folder by default, or any database URL
Optuna supports (PostgreSQL lets workers on many machines share one study). A heartbeat marks a
trial whose worker died as failed, and Optuna's retry callback (RetryHeartbeatStaleTrialCallback,
called RetryFailedTrialCallback before Optuna 4.9) queues it again.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from honed.errors import HonedError
from honed.tune.space import grid_space
from honed.tune.spec import SearchSpec

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.ERROR)  # honed prints its own progress and failure lines

SAMPLERS: dict[str, Callable[[SearchSpec, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda spec, seed: optuna.samplers.GridSampler(grid_space(spec), seed=seed),
    "random": lambda spec, seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda spec, seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, spec.startup_trials)),
}

PRUNERS: dict[str, Callable[[SearchSpec, int], optuna.pruners.BasePruner]] = {
    "none": lambda spec, epochs: optuna.pruners.NopPruner(),
    "median": lambda spec, epochs: optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials, n_warmup_steps=0),
    "hyperband": lambda spec, epochs: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=max(1, epochs), reduction_factor=3
    ),
    "successive_halving": lambda spec, epochs: optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3
    ),
}


def default_storage(run_dir: Path) -> str:
    return f"sqlite:///{(run_dir / 'study.db').resolve()}"


def masked(url: str) -> str:
    """The URL with any password hidden, for messages and reports."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def sqlalchemy_url(url: str) -> str:
    """`postgresql://` means psycopg 3 to SQLAlchemy 2.1; use psycopg2 when only that is installed."""
    if (
        url.startswith("postgresql://")
        and importlib.util.find_spec("psycopg") is None
        and importlib.util.find_spec("psycopg2")
    ):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(url: str, spec: SearchSpec) -> RDBStorage:
    """Connect (creating Optuna's tables on first use); an unreachable URL is one clear line."""
    given, url = url, sqlalchemy_url(url)
    engine: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=int(spec.heartbeat),
            grace_period=int(2 * spec.heartbeat),
            **_retry(spec.max_retry),
        )
    except Exception as exc:  # sqlalchemy's OperationalError/ArgumentError, a missing driver, a bad path ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HonedError(
            f"--storage '{masked(given)}': cannot open the study database ({reason[:200]}); "
            "check the URL, that the server runs and the database exists"
        ) from exc


def _retry(max_retry: int) -> dict[str, Any]:
    """The stale-trial retry callback under the name this Optuna version uses."""
    storages = optuna.storages
    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)}
    return {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=max_retry)}


def open_study(storage: RDBStorage, name: str, spec: SearchSpec, seed: int, epochs: int) -> optuna.Study:
    """Create the study or join the existing one, refusing one made for another direction or metric
    before anything is written to it."""
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if name in existing:
        old = existing[name]
        direction = old.directions[0].name.lower()
        if direction != spec.direction:
            raise HonedError(
                f"study '{name}' already exists with direction {direction}, but search.direction is {spec.direction}; "
                "start another study with search.study_name and its own --output folder "
                "(the existing one is left as it was)"
            )
        old_metric = old.user_attrs.get("metric")
        if old_metric not in (None, spec.metric):
            raise HonedError(
                f"study '{name}' already exists optimising val {old_metric}, but search.metric is {spec.metric}; "
                "start another study with search.study_name and its own --output folder "
                "(the existing one is left as it was)"
            )
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        direction=spec.direction,
        load_if_exists=True,
        sampler=SAMPLERS[spec.sampler](spec, seed),
        pruner=PRUNERS[spec.pruner](spec, epochs),
    )
    if name not in existing:
        study.set_user_attr("metric", spec.metric)
        study.set_user_attr("sampler", spec.sampler)
        study.set_user_attr("pruner", spec.pruner)
    return study


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (complete, pruned, fail, running, waiting)."""
    out = {s.name.lower(): 0 for s in optuna.trial.TrialState}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name.lower()] += 1
    return out


def finished(study: optuna.Study) -> int:
    c = counts(study)
    return c["complete"] + c["pruned"] + c["fail"]


def used(study: optuna.Study) -> int:
    """Trials that count against the budget: finished or running, a failed trial and its retry once."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    trials = study.get_trials(deepcopy=False, states=live)
    retries = sum(1 for t in trials if "failed_trial" in t.system_attrs)
    return len(trials) - retries


class StopAtBudget:
    """Stop this worker once finished + running trials (all workers) reach the budget, so workers
    do not start trials past it (unlike counting finished trials only)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if used(study) >= self.budget:
            study.stop()


def best_value(study: optuna.Study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no completed trial yet
        return None


def requeue_interrupted(study: optuna.Study) -> None:
    """This process's running trial, stopped by Ctrl-C/SIGTERM: failed and queued again through the storage's
    retry callback, exactly like the trial of a dead worker (so `used` counts it once, and re-running the
    command runs it with the same parameters)."""
    me = f"{socket.gethostname()}:{os.getpid()}"
    storage = study._storage
    retry = (
        storage.get_heartbeat_stale_trial_callback() if hasattr(storage, "get_heartbeat_stale_trial_callback") else None
    )
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") != me:
            continue
        study.tell(trial.number, state=TrialState.FAIL)
        if retry is not None:
            retry(study, study._storage.get_trial(trial._trial_id))
