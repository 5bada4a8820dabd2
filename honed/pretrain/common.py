"""Shared pieces of the pretraining objectives: the run folder, the unlabelled rows, the batch loop."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.tables import read_table, require_columns
from honed.errors import HonedError
from honed.progress import progress_bar
from honed.recipe import Recipe
from honed.rundir import LOG, check_run_dir, close_log, open_run_dir


def start_run(recipe: Recipe, overwrite: bool) -> Path:
    """RUN_DIR (never replaced without --overwrite) with the resolved recipe and log.txt."""
    run_dir = recipe.run_dir()
    check_run_dir(run_dir, overwrite, resume=False)
    open_run_dir(run_dir, overwrite, resume=False, main=True)
    (run_dir / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    return run_dir


def finish_run(run_dir: Path, summary: dict[str, Any], wall_s: float | None = None) -> None:
    if wall_s is not None:
        summary = {**summary, "wall_s": round(wall_s, 1)}
    (run_dir / "pretrain.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    close_log()


def unlabelled_rows(recipe: Recipe) -> list[Any]:
    """Texts (or image paths) to pretrain on: `pretrain.data` when set (only the text/path column is
    needed), else the recipe's training split only, so val/test rows never leak into the backbone."""
    column = recipe.data.text_column if recipe.data.kind == "text" else recipe.data.path_column
    if recipe.pretrain.data:
        from honed.assets import resolve_data_path

        path = resolve_data_path(recipe.pretrain.data, "pretrain.data")
        if recipe.data.kind == "image" and path.is_dir():
            rows = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"})
        else:
            frame = read_table(path, "pretrain.data")
            require_columns(frame, {"data.text_column" if recipe.data.kind == "text" else "data.path_column": column}, str(path))
            values = frame[column].dropna().astype(str)
            rows = values.tolist() if recipe.data.kind == "text" else [str((path.parent / v).resolve()) for v in values]
    else:
        from honed.data.build import load_tables

        rows = [x if isinstance(x, np.ndarray) else str(x) for x in load_tables(recipe).frames["train"]["x"]]  # IDX: arrays
    rows = [r for r in rows if not isinstance(r, str) or r.strip()]
    if recipe.pretrain.max_rows:
        rows = rows[: recipe.pretrain.max_rows]
    if not rows:
        raise HonedError(f"pretrain.data: no non-empty rows in column '{column}' to pretrain on")
    return rows


def run_epochs(recipe: Recipe, batches: Callable[[], Iterable[Any]], n_batches: int, step: Callable[[Any], torch.Tensor],
               params: list[torch.nn.Parameter], quiet: bool, what: str) -> list[float]:
    """AdamW over `epochs` passes, linear warmup over `pretrain.warmup_ratio` of the steps then linear
    decay to 0, gradients clipped to norm 1; returns the mean loss of each epoch."""
    spec = recipe.pretrain
    optim = torch.optim.AdamW(params, lr=spec.lr, weight_decay=0.01)
    total = max(1, spec.epochs * n_batches)
    warmup = round(spec.warmup_ratio * total)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: warmup_linear(s, warmup, total))
    losses: list[float] = []
    with progress_bar(not quiet) as bar:
        task = bar.add_task(what, total=total, info="")
        for epoch in range(spec.epochs):
            seen: list[float] = []
            for batch in batches():
                loss = step(batch)
                if not torch.isfinite(loss):  # e.g. a short batch in which no token was masked: no target, skip it
                    sched.step()
                    bar.update(task, advance=1, info="skipped a batch without targets")
                    continue
                optim.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optim.step()
                sched.step()
                seen.append(float(loss.detach()))
                bar.update(task, advance=1, info=f"loss {seen[-1]:.3f}")
            losses.append(float(np.mean(seen)) if seen else float("nan"))
            LOG.info("pretrain epoch %d: %s loss %.4f", epoch + 1, what, losses[-1])
    return losses


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """LR multiplier: rises linearly over `warmup` steps, then falls linearly to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def shuffled_chunks(rows: list[Any], size: int, seed: int) -> list[list[Any]]:
    order = np.random.default_rng(seed).permutation(len(rows))
    return [[rows[i] for i in order[s: s + size]] for s in range(0, len(rows), size)]


__all__ = ["finish_run", "pd", "run_epochs", "shuffled_chunks", "start_run", "unlabelled_rows", "warmup_linear"]
