"""Running a batch of the climb's runs: here, in worker processes, or shared with other machines.

`execute(jobs, ...)` returns when every job has a result or a recorded failure in the study. With one
worker the runs happen in this process; with N, N processes (`python -m honed.climb.executor PLAN`)
each claim the next free run until none is left; another machine running the same climb with the
same storage claims runs too, and this process waits for the ones it holds.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from honed.climb.runners import RUNNERS, Job
from honed.climb.store import Heartbeat, Store
from honed.train.interrupt import Interrupted, raise_if_pending, stop_on_signals
from honed.train.speed import machine_cores

POLL = 3.0
STOP_GRACE = 120.0  # seconds a worker has to stop at a safe point after SIGTERM before it is killed


class BudgetSpent(Exception):
    """The climb's wall-clock or run budget is used up: stop where it is and write the outputs."""


def check_budget(plan: dict[str, Any], store: Store) -> None:
    """Before each run: the deadline (plan["deadline"], seconds since the epoch) and the run budget
    (plan["max_runs"]: finished and failed runs of the whole climb)."""
    if plan.get("deadline") is not None and time.time() >= plan["deadline"]:
        raise BudgetSpent("the time budget is spent")
    if plan.get("max_runs") is not None and store.runs_used() >= plan["max_runs"]:
        raise BudgetSpent(f"the run budget ({plan['max_runs']} runs) is spent")


def _relative(path: str, root: str) -> str:
    """A model folder inside the climb folder is stored relative to it (the climb folder may move)."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def run_one(job: Job, store: Store, metric: str, root: str) -> bool:
    """Claim and run `job`; False when it is finished, failed or taken by another process."""
    trial = store.claim(job.key, {"config": job.config, "pair": job.pair})
    if trial is None:
        return False
    try:
        with Heartbeat(trial):
            result = RUNNERS[job.runner](job)
    except (Interrupted, KeyboardInterrupt):
        store.release_mine()
        raise
    except Exception as exc:  # a run that raises is recorded with its reason and the climb goes on
        store.fail(trial, f"{type(exc).__name__}: {exc}")
        return True
    value = result["val"].get(metric, math.nan)
    result["model_dir"] = _relative(result["model_dir"], root)
    store.finish(trial, result, value if math.isfinite(value) else 0.0)
    return True


def execute(jobs: list[Job], store: Store, plan: dict[str, Any], workers: int, show: Callable[[str], None]) -> None:
    """Every job run (here or elsewhere) or failed; `show(text)` is told what runs now."""
    open_jobs = [j for j in jobs if store.result(j.key) is None and store.failure(j.key) is None]
    if not open_jobs:
        return
    workers = min(workers, len(open_jobs))  # a round of one run gets the whole machine, not one worker's share
    if workers == 1:
        with stop_on_signals():
            for job in open_jobs:
                raise_if_pending()
                if store.result(job.key) is None:
                    check_budget(plan, store)
                show(f"{job.config} pair {job.pair + 1}")
                run_one(job, store, plan["metric"], plan["folder"])
    else:
        _processes(open_jobs, plan, workers, store, show)
    while any(store.result(j.key) is None and store.failure(j.key) is None for j in open_jobs):
        raise_if_pending()
        show("waiting for runs held by other workers")
        if not any(store.taken(j.key) for j in open_jobs if store.result(j.key) is None):
            for job in open_jobs:  # released or dead elsewhere: run what is left here
                if store.result(job.key) is None and store.failure(job.key) is None:
                    check_budget(plan, store)
                    run_one(job, store, plan["metric"], plan["folder"])
        time.sleep(POLL)


def _processes(jobs: list[Job], plan: dict[str, Any], workers: int, store: Store, show: Callable[[str], None]) -> None:
    chosen = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(chosen) if chosen.isdigit() and int(chosen) > 0 else max(1, machine_cores() // workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    folder = Path(plan["folder"])
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir=folder, prefix=".jobs-", delete=False) as handle:
        json.dump({**plan, "jobs": [j.as_dict() for j in jobs]}, handle)
    processes: list[subprocess.Popen] = []
    try:
        with stop_on_signals():  # Ctrl-C or SIGTERM here: the workers are told (terminate), waited for, then raised
            for _ in range(workers):
                raise_if_pending()
                command = [sys.executable, "-m", "honed.climb.executor", handle.name, str(threads)]
                processes.append(subprocess.Popen(command, env=env))
                time.sleep(2.0)  # staggered, so two workers rarely claim the same run at the same moment
            while any(p.poll() is None for p in processes):
                raise_if_pending()
                done = sum(store.result(j.key) is not None for j in jobs)
                show(f"{done}/{len(jobs)} runs of this round done ({workers} workers)")
                time.sleep(POLL)
            raise_if_pending()  # a signal in the last sleep: the climb stops here too
    finally:
        try:
            _stop(processes)
        finally:
            Path(handle.name).unlink(missing_ok=True)


def _stop(processes: list[subprocess.Popen], grace: float = STOP_GRACE) -> None:
    """Every live worker told at once (SIGTERM: it stops at its next safe point and gives its run back), then
    waited for; one that does not stop within `grace` seconds is killed (its claim dies with its pid)."""
    live = [p for p in processes if p.poll() is None]
    for process in live:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in live:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _worker_main(argv: list[str]) -> None:
    import torch

    plan = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    torch.set_num_threads(int(argv[1]))
    store = Store(plan["storage"], plan["study"], plan["fingerprint"], plan["metric"])
    with stop_on_signals():
        for raw in plan["jobs"]:
            raise_if_pending()
            try:
                check_budget(plan, store)
            except BudgetSpent:
                return
            run_one(Job(**raw), store, plan["metric"], plan["folder"])


if __name__ == "__main__":
    try:
        _worker_main(sys.argv[1:])
    except Interrupted as stopped:  # its run was given back; the parent reports the stop
        sys.exit(stopped.exit_code)
