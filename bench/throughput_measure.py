"""Training throughput, how the figures are taken and shown: the contenders and the targets, the Clock that each
contender's training loop feeds (bench/throughput.py runs the loops), and the table of medians and ratios that the
parent process prints and `--write` appends to bench/RESULTS.md. Split from bench/throughput.py, which imports it."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CONTENDERS = {
    "honed": "honed.fit (default: length-grouped)",
    "honed-plain": "honed.fit, data.group_by_length=false",
    "hand": "hand-written PyTorch",
    "trainer": "HF Trainer (default)",
    "trainer-grouped": "HF Trainer, train_sampling_strategy=group_by_length",
}
# (numerator, denominator, target): the goals on samples/s
TARGETS = [("honed", "trainer", 1.5), ("honed", "trainer-grouped", 1.0), ("honed-plain", "hand", 0.97)]


class Clock:
    """Marks (time, samples seen) after optimizer steps `warmup` and `total`, synchronising CUDA at those two only."""

    def __init__(self, warmup: int, total: int, cuda: bool) -> None:
        self.warmup, self.total, self.cuda = warmup, total, cuda
        self.marks: dict[int, tuple[float, int]] = {}
        self.tokens: list[int] = []  # padded input_ids elements of each batch, in training order
        self.threads = 0

    def batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.tokens.append(batch["input_ids"].numel())
        return batch

    def tick(self, step: int, samples_seen: int) -> None:
        if step in (self.warmup, self.total):
            import torch

            if self.cuda:
                torch.cuda.synchronize()
            self.marks[step], self.threads = (time.perf_counter(), samples_seen), torch.get_num_threads()

    def rates(self) -> tuple[float, float]:
        """Samples/s and padded tokens/s over the timed steps."""
        assert len(self.tokens) == self.total, f"counted {len(self.tokens)} batches, expected {self.total}"
        (t0, seen0), (t1, seen1) = self.marks[self.warmup], self.marks[self.total]
        return (seen1 - seen0) / (t1 - t0), sum(self.tokens[self.warmup : self.total]) / (t1 - t0)


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    names = (
        [line.split(":", 1)[1].strip() for line in info.read_text().splitlines() if line.startswith("model name")]
        if info.is_file()
        else []
    )
    return names[0] if names else platform.processor() or "unknown"


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], load: tuple[float, float]) -> str:
    med = {k: statistics.median(r["samples_per_s"] for r in v) for k, v in runs.items()}
    tok = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in runs.items()}
    own = {k: [r["own_figure"] for r in v if r["own_figure"] is not None] for k, v in runs.items()}
    first = next(iter(runs.values()))[0]
    threads = sorted({r["threads_seen"] for v in runs.values() for r in v})
    lines = [
        f"- command: `{' '.join(['python', 'bench/throughput.py', *sys.argv[1:]])}`",
        f"- machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"1-min load average {load[0]:.2f} at start, {load[1]:.2f} at end"
        + (f", GPU {first['gpu']}" if first["gpu"] else ""),
        f"- software: torch {first['torch']}, transformers {first['transformers']}, accelerate {first['accelerate']}, "
        f"Python {platform.python_version()}; torch threads {args.threads} (seen in the loops: {threads})",
        f"- setup: {args.samples} samples, batch {args.batch_size}, "
        f"max_length {args.max_length}, device {args.device}, "
        f"precision {args.precision}, {args.repeats} rounds, {args.warmup} warmup steps untimed",
        "",
        "| contender | median samples/s | each round | median padded tokens/s | tool's own samples/s (median) |",
        "|---|---:|---|---:|---:|",
    ]
    for key, label in ((k, v) for k, v in CONTENDERS.items() if k in runs):
        each = ", ".join(f"{r['samples_per_s']:.1f}" for r in runs[key])
        mine = f"{statistics.median(own[key]):.1f}" if own[key] else "-"
        lines.append(f"| {label} | {med[key]:.1f} | {each} | {tok[key]:.0f} | {mine} |")
    lines.append("")
    for mine, theirs, target in TARGETS:
        if mine in med and theirs in med:
            ratio = med[mine] / med[theirs]
            verdict = "met" if ratio >= target else "NOT met"
            lines.append(
                f"- {CONTENDERS[mine]} / {CONTENDERS[theirs]}: {ratio:.3f}x samples/s (target >= {target:.2f}x: "
                f"{verdict}); {tok[mine] / tok[theirs]:.3f}x padded tokens/s"
            )
    return "\n".join(lines)
