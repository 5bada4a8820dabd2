"""What an export bought and what it cost: agreement with the PyTorch outputs, size on disk, CPU
latency per example at batch 1 and batch 32, and accuracy, measured the same way before and after."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.onnx")

Run = Callable[[dict[str, torch.Tensor]], Any]


def size_on_disk(folder: Path) -> dict[str, int]:
    """Bytes of the whole folder (tokenizer and metadata included) and of its weight or model files."""
    files = [p for p in Path(folder).rglob("*") if p.is_file()]
    weights = {p for pattern in WEIGHT_FILES for p in Path(folder).glob(pattern)}
    return {"folder_bytes": sum(p.stat().st_size for p in files), "model_bytes": sum(p.stat().st_size for p in weights)}


def agreement(reference: np.ndarray, exported: np.ndarray) -> dict[str, Any]:
    """How closely the exported model's probabilities follow PyTorch's on the same rows."""
    same = reference.argmax(axis=1) == exported.argmax(axis=1)
    return {
        "rows": len(same),
        "label_agreement": float(same.mean()) if len(same) else 1.0,
        "disagreeing_rows": int((~same).sum()),
        "max_abs_prob_diff": float(np.abs(reference - exported).max()) if len(same) else 0.0,
    }


def accuracy(probs: np.ndarray, targets: list[int]) -> float:
    return float((probs.argmax(axis=1) == np.asarray(targets)).mean())


def torch_run(model: torch.nn.Module) -> Run:
    """The PyTorch model's forward on one collated batch (what the exported file replaces)."""

    @torch.inference_mode()
    def run(inputs: dict[str, torch.Tensor]) -> Any:
        return model(**inputs)

    return run


def _per_example_ms(run: Run, batches: list[dict[str, torch.Tensor]]) -> float:
    rows = sum(len(next(iter(b.values()))) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        run(batch)
    return (time.perf_counter() - started) * 1000 / rows


def latency_ms(
    runs: dict[str, Run], batches: dict[str, list[dict[str, torch.Tensor]]], repeats: int = 5
) -> dict[str, dict[str, float]]:
    """Median milliseconds per example of each run over each list of batches (preprocessing excluded:
    both sides read the same tensors), after one warm-up pass; runs alternate within every repeat so
    the machine's drift falls on both alike. Returns {run: {"latency_ms_<batches>": ms}}."""
    for run in runs.values():
        for group in batches.values():
            _per_example_ms(run, group)
    times: dict[str, dict[str, list[float]]] = {name: {key: [] for key in batches} for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            for key, group in batches.items():
                times[name][key].append(_per_example_ms(run, group))
    return {
        name: {f"latency_ms_{key}": statistics.median(values) for key, values in per.items()}
        for name, per in times.items()
    }


def print_table(result: dict[str, Any]) -> None:
    """The before/after figures as a rich table, with the check above it."""
    from rich.console import Console
    from rich.table import Table

    checks = result["checks"]
    table = Table(
        title=f"honed export -> {result['output']} ({result['format']}"
        f"{', ' + result['quantized'] if result['quantized'] else ''})"
    )
    for column in ("", "PyTorch (before)", "exported (after)"):
        table.add_column(column)
    mb = 1024 * 1024
    rows = (
        ("folder on disk (MB)", "folder_bytes", lambda v: f"{v / mb:.2f}"),
        ("model file(s) (MB)", "model_bytes", lambda v: f"{v / mb:.2f}"),
        ("CPU ms/example, batch 1", "latency_ms_batch1", lambda v: f"{v:.2f}"),
        ("CPU ms/example, batch 32", "latency_ms_batch32", lambda v: f"{v:.2f}"),
        (f"accuracy ({checks['split']}, {checks['rows']} rows)", "accuracy", lambda v: f"{v:.4f}"),
    )
    for label, key, fmt in rows:
        table.add_row(label, *(fmt(result[side][key]) for side in ("before", "after")))
    console = Console()
    console.print(table)
    console.print(
        f"labels agree on {checks['label_agreement']:.2%} of rows; max |probability difference| "
        f"{checks['max_abs_prob_diff']:.2e}"
    )
