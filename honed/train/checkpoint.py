"""Atomic checkpoints (temp file + rename) and RNG state capture, loaded with weights_only=True."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch


def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temp file beside `path`, fsync, then rename: a kill leaves the old file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with tmp.open("wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


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
