"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM: one mechanism for train, tune, cv, ensemble, pretrain.

`stop_on_signals()` is entered around every fit (and around the studies that run many): its handler
only records the signal. The loop asks `pending()` after each optimizer step (the next safe point),
writes a checkpoint and raises `Interrupted`, which the CLI turns into one line and exit 128 + signal
(130 for SIGINT, 143 for SIGTERM). A second Ctrl-C raises KeyboardInterrupt at once, for a user
who does not want to wait for the step to end.

`Interrupted` is a BaseException, like KeyboardInterrupt, so that `except Exception` in a study
(Optuna's `catch`) or a worker pool does not record it as a failed trial and carry on.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run stopped at a safe point because the user (or the machine) asked; its checkpoint is written."""

    def __init__(self, signum: int, step: int | None = None, run_dir: str | Path | None = None) -> None:
        self.signum, self.step, self.run_dir = int(signum), step, None if run_dir is None else str(run_dir)
        where = f" at step {step}" if step is not None else ""
        saved = f"; checkpoint saved in {self.run_dir}" if self.run_dir else ""
        super().__init__(f"stopped by {signal.Signals(self.signum).name}{where}{saved}")

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process pools (ensemble workers) intact
        return (Interrupted, (self.signum, self.step, self.run_dir))

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


class _Signals:
    """What the handler saw (process-wide, as signal handlers are) and how deep the nesting is."""

    received: int | None = None
    depth = 0
    previous: dict[int, Any] = {}


def _handle(signum: int, _frame: Any) -> None:
    if _Signals.received is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt  # second Ctrl-C: stop at once
    _Signals.received = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Record SIGINT/SIGTERM instead of dying mid-step while the block runs; nested blocks (a fit inside a
    study) share the outer handler. Outside the main thread (where handlers cannot be set) it does nothing."""
    owner = _Signals.depth == 0 and threading.current_thread() is threading.main_thread()
    if owner:
        _Signals.received = None
        _Signals.previous = {s: signal.signal(s, _handle) for s in SIGNALS}
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
        if owner:
            for signum, handler in _Signals.previous.items():
                signal.signal(signum, handler)
            _Signals.received = None


def pending() -> int | None:
    """The signal received since the outermost `stop_on_signals` began, if any."""
    return _Signals.received


def raise_if_pending(step: int | None = None, run_dir: str | Path | None = None) -> None:
    """Between units of work (trials, members, folds): stop here if a signal came."""
    if _Signals.received is not None:
        raise Interrupted(_Signals.received, step, run_dir)


def agreed(accelerator: Any, step: int, every: int = 10) -> int | None:
    """The pending signal as all processes see it. One process needs no exchange; with several, every rank
    must stop at the same step (the checkpoint waits for all), so they compare flags every `every` steps
    (an all-reduce: not every step) and the largest signal number wins."""
    if accelerator.num_processes == 1:
        return pending()
    if step % every:
        return None
    import torch

    mine = torch.tensor([pending() or 0], device=accelerator.device)
    value = int(accelerator.reduce(mine, reduction="max").item())
    return value or None
