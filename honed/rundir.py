"""Run folders: never overwritten without --overwrite, resumed only when a checkpoint exists, and written by
one process at a time (RUN_DIR/.lock, held with flock while the run writes: the kernel releases it when the
process dies, so a stale lock from a killed run is simply taken over)."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
from pathlib import Path
from typing import IO

from honed.errors import HonedError

LOG = logging.getLogger("honed")
SIDE_FILES = {"lr_find.csv", "lr_find.png", ".lock"}  # `honed lr-find` output may precede the run
LOCK = ".lock"
_HELD: dict[Path, IO[str]] = {}  # run folder -> its open, locked .lock file (released by close_log)


def check_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Fail before any work when the folder's state does not fit the request."""
    refuse_if_locked(run_dir)
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise HonedError(f"--resume: run folder '{run_dir}' has no checkpoint to resume (checkpoints/last.pt)")
        return
    if run_dir.exists() and any(p.name not in SIDE_FILES for p in run_dir.iterdir()) and not overwrite:
        raise HonedError(
            f"run folder '{run_dir}' already exists; pass --overwrite to replace it or --resume to continue it"
        )


def open_run_dir(run_dir: Path, overwrite: bool, resume: bool, main: bool) -> None:
    """Create (or clear, with --overwrite) the folder and attach the log file."""
    if main:
        if overwrite and not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)
        handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)


def close_log() -> None:
    """Detach the run's log file and release the run folders this process locked."""
    for handler in list(LOG.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            LOG.removeHandler(handler)
    for folder in list(_HELD):
        (folder / LOCK).unlink(missing_ok=True)  # a finished run leaves no lock file behind (a killed one does:
        _HELD.pop(folder).close()  # the kernel drops its flock, so the next run takes it over); closing releases it


def _try_lock(run_dir: Path) -> IO[str] | None:
    """The folder's .lock file, opened and flock-ed by this process; None when another process holds it."""
    handle = (run_dir / LOCK).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _holder(run_dir: Path) -> str:
    try:
        return (run_dir / LOCK).read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


def refuse_if_locked(run_dir: Path) -> None:
    """One line when a live process is writing `run_dir` (a second train into it, or --resume while it runs)."""
    if run_dir.resolve() in _HELD or not (run_dir / LOCK).is_file():
        return
    handle = _try_lock(run_dir)
    if handle is None:
        raise HonedError(
            f"run folder '{run_dir}' is in use by {_holder(run_dir)}; wait for that run to finish or "
            "stop it (then --resume), or write this run to another folder (--output DIR)"
        )
    handle.close()


def lock_run_dir(run_dir: Path) -> None:
    """Hold RUN_DIR/.lock until `close_log`; the file names the holder (pid and host) for the refusal line.
    A lock left by a dead process is no longer held by the kernel, so this takes it over."""
    key = run_dir.resolve()
    if key in _HELD:
        return
    handle = _try_lock(run_dir)
    if handle is None:
        refuse_if_locked(run_dir)
        raise HonedError(f"run folder '{run_dir}' is in use by another process")
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    _HELD[key] = handle


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place: a crash or a reader
    never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
