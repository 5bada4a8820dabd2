"""`honed batch-find RECIPE`: the largest (GPU) or fastest (CPU) per-device batch size, and the
batch_size/grad_accum_steps pair that keeps the recipe's effective batch."""

from __future__ import annotations

import argparse
from typing import Any

from honed.cli import common


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("batch-find", help="largest (GPU) or fastest (CPU) per-device batch size")
    common.add_recipe(parser)
    common.add_overrides(parser, "data.max_length=128")
    parser.add_argument(
        "--max",
        type=int,
        default=None,
        dest="max_batch",
        help="largest batch to try (default 256 on CPU, 16384 on CUDA)",
    )
    parser.add_argument("--steps", type=int, default=3, help="timed steps per batch size (default 3)")
    common.add_quiet(parser, "no progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from honed.train.batch_find import batch_find

    report = batch_find(
        args.recipe, max_batch=args.max_batch, timed_steps=args.steps, quiet=args.quiet, overrides=args.overrides
    )
    Console().print(_batch_table(report))
    why = "largest that fits" if report.goal == "memory" else "most samples/s"
    print(f"best per-device batch ({why}): {report.best}")
    for note in report.notes:
        print(note)
    processes = f"{report.processes} process{'es' if report.processes > 1 else ''}"
    print(
        f"the recipe's effective batch is {report.effective} (batch_size x grad_accum_steps x {processes}); "
        "keep it with:"
    )
    print(f"train.batch_size={report.batch_size} train.grad_accum_steps={report.grad_accum_steps}")
    return 0


def _batch_table(report: Any) -> Any:
    """One row per batch size tried: whether it ran, its speed, and its peak memory on CUDA."""
    from rich.table import Table

    cuda = report.trials[0].peak_gib is not None
    table = Table(title=f"honed: batch sizes on {report.device}")
    for name in ("batch", "runs", "samples/s", *(("peak GiB",) if cuda else ())):
        table.add_column(name, justify="right")
    for t in report.trials:
        peak = (f"{t.peak_gib:.2f}",) if cuda else ()
        speed = f"{t.samples_per_s:.1f}" if t.fits else "-"
        table.add_row(str(t.batch), "yes" if t.fits else "out of memory", speed, *peak)
    return table
