"""What pruning bought: parameter counts, sparsity, size on disk (plain and gzip'd) and CPU latency."""

from __future__ import annotations

import gzip
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from honed.models.masks import global_sparsity, layer_sparsity, prunable

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")


def param_counts(model: nn.Module) -> dict[str, int]:
    """Total and non-zero parameters (tied tensors counted once)."""
    params = list({id(p): p for p in model.parameters()}.values())
    return {"params": sum(p.numel() for p in params), "nonzero_params": sum(int((p != 0).sum()) for p in params)}


def size_on_disk(folder: Path) -> dict[str, int]:
    """Bytes of the whole saved folder, of its weight files, and of those weights gzip'd (zeros compress)."""
    folder = Path(folder)
    weights = [p for pattern in WEIGHT_FILES for p in folder.glob(pattern)]
    return {
        "folder_bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
        "weights_bytes": sum(p.stat().st_size for p in weights),
        "weights_gzip_bytes": sum(len(gzip.compress(p.read_bytes(), compresslevel=6)) for p in weights),
    }


def cpu_latency_ms(predictor: Any, frame: pd.DataFrame, batch: int = 32, repeats: int = 3) -> float:
    """Median milliseconds per example over `repeats` timed passes of a Predictor over one `batch`-row
    slice (preprocessing included, as `honed predict` runs it), after one warm-up pass."""
    rows = frame.head(batch).reset_index(drop=True)
    predictor.predict_proba(rows)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predictor.predict_proba(rows)
        times.append((time.perf_counter() - started) * 1000 / len(rows))
    return statistics.median(times)


def sparsity_report(model: nn.Module) -> dict[str, Any]:
    """Sparsity over the prunable (Linear/Conv) weights, overall and per layer; embeddings and norms are never pruned,
    so the parameter counts also give `prunable_params`."""
    prunable_params = sum(m.weight.numel() for _, m in prunable(model))
    return {
        "global_sparsity": global_sparsity(model),
        "layer_sparsity": layer_sparsity(model),
        "prunable_params": prunable_params,
        **param_counts(model),
    }


def print_table(result: dict[str, Any]) -> None:
    """The before/after figures as a rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"honed prune -> {result['output']}")
    for column in ("", "before", "after"):
        table.add_column(column)
    rows = (
        ("test accuracy", "test_accuracy", "{:.4f}"),
        ("params", "params", "{:,}"),
        ("non-zero params", "nonzero_params", "{:,}"),
        ("sparsity (prunable weights)", "global_sparsity", "{:.3f}"),
        ("weights on disk (MB)", "weights_mb", "{:.2f}"),
        ("weights gzip'd (MB)", "weights_gzip_mb", "{:.2f}"),
        ("CPU latency (ms/example)", "latency_ms", "{:.2f}"),
    )
    for label, key, fmt in rows:
        cells = [
            fmt.format(result[side][key]) if result[side].get(key) is not None else "-" for side in ("before", "after")
        ]
        table.add_row(label, *cells)
    if "recovered" in result:
        table.add_row("test accuracy after recovery", "", f"{result['recovered']['test_accuracy']:.4f}")
    Console().print(table)
