"""The climb's runs kept in an Optuna study: one trial per run (one configuration on one seed or fold).

A finished trial holds the run's scores as user attributes, so re-running the climb (after Ctrl-C, a
crash or kill -9) reads them back instead of training again, and several processes or machines that
share the storage URL split the runs between them: a process claims a run by creating its RUNNING
trial, and keeps it alive with a heartbeat attribute. A RUNNING trial whose process is gone (same
machine: the pid no longer exists; any machine: no heartbeat for STALE seconds) is failed and the run
is claimed again, so a killed run is retried, not lost.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from typing import Any

import optuna
from optuna.trial import TrialState

from honed.errors import HonedError
from honed.tune.study import masked, sqlalchemy_url

REBUILD = "/rebuild-"  # in the key of a run made again for its model folder only (honed/climb/state.py)
BEAT = 30.0  # seconds between heartbeats of a running run
STALE = 300.0  # a running run silent this long on another machine is taken to be dead


TOKEN = uuid.uuid4().hex[:8]  # this process: a restarted container may reuse the host name and the pid
MINE: set[int] = set()  # trial numbers this process claimed


def me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{TOKEN}"


class Store:
    """The study of one climb: results by run key, claims, and the climb's identity (recipe, metric)."""

    def __init__(self, url: str, name: str, fingerprint: str, metric: str) -> None:
        storage = _open(url)
        existing = {s.study_name: s for s in storage.get_all_studies()}
        if name in existing:
            attrs = existing[name].user_attrs
            if attrs.get("metric") not in (None, metric):
                raise HonedError(f"climb study '{name}' was made for val {attrs['metric']}, not {metric}; give this "
                                 "climb its own --output folder or climb.study_name "
                                 "(the existing one is left as it was)")
            started = any(t.state == TrialState.COMPLETE for t in storage.get_all_trials(existing[name]._study_id))
            if attrs.get("fingerprint") not in (None, fingerprint) and started:
                raise HonedError(f"climb study '{name}' was made for another recipe (its data, model or settings "
                                 "differ); give this climb its own --output folder or climb.study_name "
                                 "(the existing one is left as it was)")
        self._done: dict[str, tuple[int, dict[str, Any]]] = {}  # run key -> (trial number, result) of its first finish
        self.study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True)
        self.study.set_user_attr("metric", metric)  # new, or a study with no finished run: this climb's now
        self.study.set_user_attr("fingerprint", fingerprint)

    def trials(self, key: str | None = None) -> list[optuna.trial.FrozenTrial]:
        found = self.study.get_trials(deepcopy=False)
        for t in found:  # a finished run never changes: kept, so the hot paths (scores, diffs) read no database
            if t.state == TrialState.COMPLETE and "key" in t.user_attrs:
                done = t.user_attrs["key"]  # two finished copies of a run (a race): every process takes the first
                if done not in self._done or t.number < self._done[done][0]:
                    self._done[done] = (t.number, t.user_attrs["result"])
        return [t for t in found if key is None or t.user_attrs.get("key") == key]

    def result(self, key: str) -> dict[str, Any] | None:
        if key not in self._done:
            self.trials()
        return dict(self._done[key][1]) if key in self._done else None

    def results(self) -> dict[str, dict[str, Any]]:
        """Every finished run's result by key (rebuilds left out)."""
        self.trials()
        return {k: dict(v) for k, (_, v) in self._done.items() if REBUILD not in k}

    def runs_used(self) -> int:
        """Runs that count against the run budget: finished, and failed with a reason (not killed, not duplicates,
        not the rebuilds of model folders gone from disk: the same command must stop at the same place)."""
        return sum(1 for t in self.trials() if (t.state == TrialState.COMPLETE
                   or (t.state == TrialState.FAIL and "fail_reason" in t.user_attrs))
                   and REBUILD not in str(t.user_attrs.get("key", "")))

    def failure(self, key: str) -> str | None:
        """Why `key`'s run raised, when it did and no copy finished (a run that was killed has no reason and is
        run again)."""
        if self.result(key) is not None:
            return None
        reasons = [t.user_attrs["fail_reason"] for t in self.trials(key)
                   if t.state == TrialState.FAIL and "fail_reason" in t.user_attrs]
        return reasons[-1] if reasons else None

    def taken(self, key: str) -> bool:
        """Whether a live process is running `key` now (a dead one's trial is failed here)."""
        for trial in self.trials(key):
            if trial.state == TrialState.RUNNING:
                if _alive(trial):
                    return True
                self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        return False

    def claim(self, key: str, info: dict[str, Any]) -> optuna.Trial | None:
        """A RUNNING trial for `key` owned by this process, or None when it is finished or taken."""
        if self.result(key) is not None or self.failure(key) is not None or self.taken(key):
            return None
        trial = self.study.ask()
        for name, value in {**info, "key": key, "owner": me(), "beat": time.time()}.items():
            trial.set_user_attr(name, value)
        MINE.add(trial.number)
        rivals = [t for t in self.trials(key) if t.number < trial.number
                  and (t.state == TrialState.COMPLETE or (t.state == TrialState.RUNNING and _alive(t)))]
        if rivals:  # another process claimed it a moment before: leave it to that one
            trial.set_user_attr("duplicate", True)
            self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
        return trial

    def finish(self, trial: optuna.Trial, result: dict[str, Any], value: float) -> None:
        trial.set_user_attr("result", result)
        self.study.tell(trial, value, skip_if_finished=True)

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        trial.set_user_attr("fail_reason", reason[:500])
        self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)

    def release_mine(self) -> None:
        """This process's running trials, after Ctrl-C/SIGTERM: failed, so a re-run claims them again."""
        for trial in self.trials():
            if trial.state == TrialState.RUNNING and trial.user_attrs.get("owner") == me():
                self.study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)

    def attr(self, name: str, default: Any = None) -> Any:
        """A value the climb keeps in the study for every process and machine (the LR finder's suggestion,
        the wall clock spent)."""
        return self.study.user_attrs.get(name, default)

    def set_attr(self, name: str, value: Any) -> None:
        self.study.set_user_attr(name, value)


def _open(url: str) -> optuna.storages.RDBStorage:
    """Connect (creating Optuna's tables on first use); an unreachable URL is one clear line. No Optuna
    heartbeat: runs are claimed by ask/tell, and their liveness is the `beat` attribute below."""
    engine: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(sqlalchemy_url(url), engine_kwargs=engine)
    except Exception as exc:  # sqlalchemy's OperationalError/ArgumentError, a missing driver, a bad path ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HonedError(f"--storage '{masked(url)}': cannot open the climb's database ({reason[:200]}); "
                         "check the URL, that the server runs and the database exists") from exc


def _alive(trial: optuna.trial.FrozenTrial) -> bool:
    """A running run's process lives: this process's own claim; on this machine, its pid exists (and it is
    not this pid under another token, i.e. before a restart); anywhere, a heartbeat in the last STALE s."""
    owner = str(trial.user_attrs.get("owner", ""))
    if owner == me():
        return trial.number in MINE
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    fresh = time.time() - float(trial.user_attrs.get("beat", 0.0)) < STALE
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False  # our pid, another token: the process that claimed it is gone
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return fresh
        return fresh
    return fresh


class Heartbeat:
    """Refreshes a running trial's `beat` attribute every BEAT seconds from a daemon thread."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial, self._stop = trial, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(BEAT):
            with contextlib.suppress(Exception):  # a storage hiccup must not kill the run; the next beat tries
                self.trial.set_user_attr("beat", time.time())

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
