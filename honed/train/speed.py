"""Speed settings a fit applies before training: torch threads, torch.compile and channels-last.

Each is a small pure decision plus its application, so the loop does not change. Figures behind the
defaults: bench/RESULTS.md, "Speed" (bench/compile.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

# torch's own thread count when this module was imported: a different count later means someone
# (the user, a tune/ensemble worker) called torch.set_num_threads, and that choice is kept.
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def set_threads() -> int | None:
    """Use every core this process may run on for torch's intra-op threads, unless the user chose a
    count (OMP_NUM_THREADS, or torch.set_num_threads before the fit): returns the count set, or None."""
    if os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads() != _TORCH_DEFAULT_THREADS:
        return None
    cores = machine_cores()
    if cores != torch.get_num_threads():
        torch.set_num_threads(cores)
    return cores


def is_cnn(model: nn.Module) -> bool:
    """A model with 2-d convolutions: the kind channels-last memory layout speeds up."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def wants_channels_last(setting: bool | str, model: nn.Module, device: torch.device) -> bool:
    """`train.channels_last`: auto means on for CNNs on CUDA (tensor cores want NHWC) and on CPU too,
    where MobileNetV2 trained 1.35x faster with NHWC weights (bench/RESULTS.md, "Speed")."""
    if setting == "auto":
        return device.type in ("cuda", "cpu") and is_cnn(model)
    return bool(setting) and is_cnn(model)


def to_channels_last(model: nn.Module, on: bool) -> nn.Module:
    """Lay 4-d weights out as NHWC (on) or back to the plain contiguous layout (off; safetensors needs it)."""
    return model.to(memory_format=torch.channels_last if on else torch.contiguous_format)


def compile_model(model: nn.Module, probe: Callable[[], Any], log: logging.Logger) -> bool:
    """torch.compile `model` in place (nn.Module.compile: same module, same state_dict keys) and run
    `probe` (one forward) so a platform where compilation fails shows it now: then one log line, and
    training continues uncompiled. Returns whether the model is compiled."""
    try:
        model.compile()
        probe()
    except Exception as exc:  # noqa: BLE001 - any backend failure (no compiler, unsupported op) means eager
        model._compiled_call_impl = None  # nn.Module.compile's slot: None restores the eager call
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        log.warning("train.compile: torch.compile failed on this platform (%s: %s); training uncompiled",
                    type(exc).__name__, first)
        return False
    log.info("train.compile: model compiled with torch.compile")
    return True
