"""Atomic checkpoints (temp file + rename) and RNG state capture, loaded with weights_only=True.

A write that fails (a full disk) leaves the previous checkpoint as it was and says how much space the
new one needed; `keep_previous` keeps the replaced file as NAME.prev.pt, so a checkpoint damaged after
it was written (a bad sector, a copy cut short) still leaves one to resume from. A damaged file is
one line naming it.
"""

from __future__ import annotations

import errno
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from honed.errors import HonedError

# What torch.load raises on a truncated or overwritten file.
DAMAGE = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError, OSError)


class DamagedCheckpoint(HonedError):
    """A checkpoint file that cannot be read back."""


def previous(path: Path) -> Path:
    """Where `atomic_save(..., keep_previous=True)` keeps the file it replaced: last.pt -> last.prev.pt."""
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def atomic_save(obj: Any, path: Path, keep_previous: bool = False) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a kill leaves the old file intact. With
    `keep_previous` the old file is hard-linked to NAME.prev.pt first, so at every moment one of the two
    is a whole checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HonedError(_disk_full(obj, path)) from exc
        raise
    if keep_previous and path.is_file():
        link = path.with_name(f".{path.name}.prev.tmp{os.getpid()}")
        link.unlink(missing_ok=True)
        os.link(path, link)
        link.replace(previous(path))
    tmp.replace(path)


def _disk_full(obj: Any, path: Path) -> str:
    needed = _size(obj)
    free = shutil.disk_usage(path.parent).free
    kept = f"the previous {path.name} is intact" if path.is_file() else f"no earlier {path.name} existed"
    return (
        f"no space left on the device to write checkpoint '{path}' (it needs {_mb(needed)}, "
        f"{_mb(free)} free); {kept}; free some space, then re-run with --resume"
    )


def _size(obj: Any) -> int:
    """The serialised size of `obj`, counted without writing it anywhere (only on the failure path)."""

    class Counter:
        written = 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            return len(data)

        def flush(self) -> None:
            pass

    counter = Counter()
    torch.save(obj, counter)
    return counter.written


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def load(path: Path) -> Any:
    """A checkpoint file read with weights_only=True; a truncated or damaged one is one line naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except DAMAGE as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise DamagedCheckpoint(
            f"checkpoint '{path}' is damaged or truncated ({reason}); "
            "delete it to use an earlier one, or start the run again with --overwrite"
        ) from exc


def load_with_fallback(path: Path) -> tuple[Any, Path]:
    """`path`'s contents, or those of its NAME.prev.pt when `path` is damaged; (contents, the file read)."""
    try:
        return load(path), path
    except DamagedCheckpoint:
        if not previous(path).is_file():
            raise
    return load(previous(path)), previous(path)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_pos": random.getstate()[2]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore RNG state saved by `rng_state` (extra keys such as 'step' are ignored)."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
