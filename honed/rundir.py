"""Run folders: never overwritten without --overwrite, resumed only when a checkpoint exists."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from honed.errors import HonedError

LOG = logging.getLogger("honed")
SIDE_FILES = {"lr_find.csv", "lr_find.png"}  # `honed lr-find` output may precede the run


def check_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Fail before any work when the folder's state does not fit the request."""
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise HonedError(f"--resume: run folder '{run_dir}' has no checkpoint to resume (checkpoints/last.pt)")
        return
    if run_dir.exists() and any(p.name not in SIDE_FILES for p in run_dir.iterdir()) and not overwrite:
        raise HonedError(f"run folder '{run_dir}' already exists; pass --overwrite to replace it or --resume to continue it")


def open_run_dir(run_dir: Path, overwrite: bool, resume: bool, main: bool) -> None:
    """Create (or clear, with --overwrite) the folder and attach the log file."""
    if main:
        if overwrite and not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)


def close_log() -> None:
    for handler in list(LOG.handlers):
        if isinstance(handler, logging.FileHandler):
            handler.close()
            LOG.removeHandler(handler)


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it into place: a crash or a reader
    never sees a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
