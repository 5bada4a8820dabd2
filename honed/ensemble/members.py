"""Ensemble members: each one is its own honed recipe (base recipe + overrides), a prefit model
folder, or a trial of a `honed tune` study; trained by `honed.fit` on splits shared by all members,
then asked for class probabilities (or a regression member's predicted values) as a Predictor
(honed.inference), through its own tokenizer/transforms."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.labels import LabelMap
from honed.ensemble.spec import EnsembleSpec, MemberSpec
from honed.errors import HonedError
from honed.inference import load_predictor, model_folder
from honed.inference.outputs import outputs_in
from honed.progress import console
from honed.recipe import Recipe, build_recipe, parse_override, read_yaml
from honed.train.interrupt import raise_if_pending

TOP_TRIALS = "top_trials.json"


@dataclass
class Member:
    """A trained member: its name and saved model folder (RUN_DIR/model)."""

    name: str
    model_dir: Path


def expand_members(spec: EnsembleSpec) -> list[MemberSpec]:
    """The listed members plus the top-k trials of a tune study (`from_tune`), best first."""
    members = list(spec.members)
    if spec.from_tune:
        members += tune_members(Path(spec.from_tune), spec.top_k)
    for i, member in enumerate(members):
        if member.prefit is not None:
            model_folder(member.prefit, f"ensemble.members.{i}.prefit")
    names = [m.name for m in members]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise HonedError(f"ensemble.members: two members are named '{dup}'; give each a unique name")
    return members


def tune_members(run_dir: Path, top_k: int) -> list[MemberSpec]:
    """Members from RUN_DIR/top_trials.json (written by `honed tune`): a trial whose model folder
    still exists is used as trained (prefit); otherwise its overrides are trained again."""
    path = run_dir / TOP_TRIALS
    if not path.is_file():
        raise HonedError(f"ensemble.from_tune: '{path}' not found; run `honed tune` first or point at its run folder")
    try:
        trials = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HonedError(f"ensemble.from_tune: '{path}' is not valid JSON ({exc.msg})") from exc
    members = []
    for trial in trials[:top_k]:
        model_dir = trial.get("model_dir")
        overrides = trial.get("overrides") or {}
        if isinstance(overrides, list):
            overrides = dict(parse_override(str(o)) for o in overrides)
        prefit = str(model_dir) if model_dir and (Path(model_dir) / "honed.json").is_file() else None
        members.append(MemberSpec(name=f"trial{trial['number']}", overrides=overrides, prefit=prefit))
    return members


def member_recipe(base: dict[str, Any], member: MemberSpec, run_dir: Path, pin: str | None = None,
                  extra: dict[str, Any] | None = None) -> Recipe:
    """The member's recipe: its own file or the base, with its overrides (and `extra` ones); splits come
    from the ensemble (in memory), so row limits and report slices are switched off. `pin` is the task a
    recipe of task auto is given (in-memory regression targets or label lists are not guessed again)."""
    tree = read_yaml(member.recipe) if member.recipe else dict(base)
    tree.pop("ensemble", None)
    forced = {"output_dir": str(run_dir), "data.max_rows": {}, "report.slices": [], **(extra or {})}
    changes = {**member.overrides, **forced}
    if pin and changes.get("task", tree.get("task", "auto")) == "auto":
        changes["task"] = pin
    return build_recipe(tree, changes, source=f"ensemble member '{member.name}'")


def as_data(train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
    """Train and val frames as (X, labels) pairs for `honed.fit(data=...)`; test is left empty: the
    ensemble predicts its own splits through each saved member, so the fit need not evaluate it."""
    return {"train": _pair(train), "val": _pair(val), "test": ([], [])}


def _pair(frame: pd.DataFrame) -> tuple[list[Any], list[str]]:
    return frame["x"].tolist(), frame["label"].tolist()


def fit_member(
    recipe: Recipe,
    data: dict[str, Any],
    overwrite: bool,
    quiet: bool,
    keep_checkpoints: bool = False,
    threads: int | None = None,
) -> Path:
    """Train one member (also the worker of a process pool) and return its model folder. Without `overwrite`
    (re-running an ensemble that was stopped) a member that finished is kept as it is and one that was
    stopped mid-way resumes from its checkpoint; `overwrite` trains it afresh."""
    from honed.fit import fit

    if threads:
        torch.set_num_threads(threads)
    run_dir = recipe.run_dir()
    if not overwrite and (run_dir / "results.json").is_file() and (run_dir / "model" / "honed.json").is_file():
        return run_dir / "model"
    resume = not overwrite and (run_dir / "checkpoints" / "last.pt").is_file()
    run = fit(recipe, data=data, overwrite=not resume, resume=resume, quiet=quiet)
    if not keep_checkpoints:
        shutil.rmtree(run.run_dir / "checkpoints", ignore_errors=True)
    return run.model_dir


def fit_all(
    jobs: list[tuple[str, Recipe, dict[str, Any]]],
    workers: int,
    overwrite: bool,
    quiet: bool,
    keep_checkpoints: bool = False,
) -> dict[str, Path]:
    """Train members one after another, or in `workers` processes (each a separate honed.fit)."""
    if workers <= 1 or len(jobs) <= 1:
        dirs = {}
        for i, (name, recipe, data) in enumerate(jobs):
            raise_if_pending()  # Ctrl-C/SIGTERM between members: the finished ones are kept for the re-run
            if not quiet:  # each fit draws its own bars; one line says which member they belong to
                console.print(f"[bold]ensemble member {i + 1}/{len(jobs)}: {name}[/bold] ({recipe.run_dir()})")
            dirs[name] = fit_member(recipe, data, overwrite, quiet, keep_checkpoints)
        return dirs
    if not quiet:
        console.print(f"training {len(jobs)} ensemble members in {workers} processes: {', '.join(j[0] for j in jobs)}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
        futures = {
            name: pool.submit(fit_member, r, d, overwrite, True, keep_checkpoints, threads) for name, r, d in jobs
        }
        return {name: f.result() for name, f in futures.items()}


def _context() -> Any:
    """fork where it is safe (POSIX, CUDA not started: the children skip re-importing torch), else spawn."""
    methods = multiprocessing.get_all_start_methods()
    fork = "fork" in methods and not torch.cuda.is_initialized()
    return multiprocessing.get_context("fork" if fork else "spawn")


def member_probs(
    model_dir: Path, frame: pd.DataFrame, order: tuple[str, ...] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class probabilities of a saved model (or any saved Predictor) on a standard frame, columns in
    `order` (default: the predictor's own label order)."""
    predictor = load_predictor(model_dir)
    order = predictor.labels if order is None else tuple(order)
    return predictor.proba_in(frame, order), order


def member_outputs(model_dir: Path, frame: pd.DataFrame, order: tuple[str, ...], task: str) -> np.ndarray:
    """What an ensemble of `task` combines from a saved member: probabilities, or predicted values, columns
    in `order` (honed/inference/outputs.py)."""
    return outputs_in(load_predictor(model_dir), frame, order, task)


def member_task(model_dir: Path) -> str:
    """The task a saved model (or sklearn member) folder was trained for, read off its label map."""
    return LabelMap.load(model_dir).task


def check_labels(names: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The common label set of all members (the first member's order); different sets are an error."""
    items = list(names.items())
    first, order = items[0]
    for name, labels in items[1:]:
        if set(labels) != set(order):
            raise HonedError(
                f"ensemble member '{name}' was trained on labels ({', '.join(labels)}) but member "
                f"'{first}' on ({', '.join(order)}); members must share one label set"
            )
    return order


def read_labels(model_dir: Path) -> tuple[str, ...]:
    return tuple(json.loads((model_dir / "labels.json").read_text(encoding="utf-8")))
