"""The report for a run: after `train` (reusing its final logits), `honed report RUN_DIR`, and
and `honed evaluate MODEL DATA --report DIR` (honed/evaluate/saved.py).

The analysed split is test when the run has one, else val; the temperature is fitted on val and
saved as RUN_DIR/model/calibration.json (`report.calibrate`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from honed.data.build import Tables
from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.evaluate.calibration import fit_temperature, save_calibration
from honed.evaluate.multilabel import multilabel_after_fit, multilabel_run_report
from honed.evaluate.regression import regression_after_fit, regression_run_report
from honed.evaluate.report import build_report, write_report
from honed.inference.calibration import saved_temperature
from honed.recipe import Recipe
from honed.rundir import LOG

Outputs = dict[str, tuple[torch.Tensor, torch.Tensor]]  # split -> (logits, labels)


def analysed_split(outputs: Outputs) -> str:
    """test if the run has test rows, else val."""
    for split in ("test", "val"):
        if split in outputs and len(outputs[split][1]):
            return split
    raise HonedError(
        "report: the run has no val or test rows to analyse; give data.val/data.test or data.split fractions"
    )


def report_from_outputs(
    recipe: Recipe,
    labels: LabelMap,
    frames: dict[str, pd.DataFrame],
    outputs: Outputs,
    history: list[dict[str, Any]],
    run_metrics: dict[str, Any] | None,
    temperature: float | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """build_report on the analysed split's logits; the temperature is fitted on val unless given."""
    split = analysed_split(outputs)
    logits, y_true = outputs[split]
    if temperature is None and recipe.report.calibrate and "val" in outputs and len(outputs["val"][1]):
        temperature = fit_temperature(*outputs["val"])
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    report = build_report(
        labels=labels.names,
        y_true=y_true.numpy(),
        probs=probs,
        frame=frames[split],
        logits=logits.double().numpy(),
        history=history,
        temperature=temperature,
        slices=recipe.report.slices,
        top_k=recipe.report.top_k,
        split=split,
        title=f"honed report: {recipe.name}",
        run_metrics=run_metrics,
        notes=notes,
        group_name=recipe.data.group_column,
    )
    in_sample = " - the same rows it is scored on here (no test split), so the after-scaling ECE is optimistic"
    report["calibration"]["fitted_on"] = None if temperature is None else "val" + (in_sample if split == "val" else "")
    return report


def report_after_fit(
    recipe: Recipe,
    run_dir: Path,
    tables: Tables,
    outputs: Outputs,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    """Save the val-fitted temperature with the model and write the run's report.json/.html.

    A failure here is logged, not raised: the trained model is already saved, and `honed report
    RUN_DIR` can rebuild the report."""
    if not any(len(labels_) for _, labels_ in outputs.values()):
        LOG.info("report: no val or test rows to analyse; no report written")
        return
    try:
        temperature = None
        if recipe.report.calibrate and "val" in outputs and len(outputs["val"][1]):
            temperature = fit_temperature(*outputs["val"])
            save_calibration(run_dir / "model", temperature, "val", len(outputs["val"][1]))
        if recipe.report.enabled:
            report = report_from_outputs(
                recipe, tables.labels, tables.frames, outputs, history, metrics, temperature, tables.notes
            )
            write_report(run_dir, report)
            LOG.info("report: %s (%.1f s)", run_dir / "report.html", report["seconds_to_build"])
    except Exception as exc:  # noqa: BLE001 - see docstring
        LOG.warning("report failed: %s; rebuild it with `honed report %s --debug`", exc, run_dir)
        print(f"honed: warning: the report could not be written ({exc}); try `honed report {run_dir} --debug`")


# The report each task writes after `train` (recipe, run_dir, tables, outputs, metrics, history).
REPORT_AFTER_FIT = {"classification": report_after_fit, "regression": regression_after_fit,
                    "multilabel": multilabel_after_fit}


# `honed report RUN_DIR` for a task with its own page (classification's is report_run's own).
RUN_REPORTS = {"multilabel": multilabel_run_report, "regression": regression_run_report}


def check_run_dir(run_dir: Path) -> None:
    """A run folder holds the resolved recipe and the saved model."""
    if not run_dir.is_dir():
        raise HonedError(
            f"report: '{run_dir}' is not a folder; pass a run folder written by `honed train` (e.g. runs/quickstart)"
        )
    for need in ("recipe.yaml", "model/honed.json"):
        if not (run_dir / need).is_file():
            raise HonedError(
                f"report: '{run_dir}' is not a run folder (no {need}); pass a folder written by `honed train`"
            )


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def report_run(run_dir: str | Path, overrides: dict[str, Any] | None = None, out_dir: str | Path | None = None) -> Path:
    """`honed report RUN_DIR`: rebuild the run's splits from its recipe, predict val and test with the
    saved model and write the report (into the run folder unless `out_dir`). Returns report.html."""
    from honed.data.build import load_tables
    from honed.data.preprocess import filter_tokens
    from honed.inference.logits import logits_for
    from honed.models.build import load_model
    from honed.recipe import load_recipe

    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml", overrides)
    if recipe.data.train is None:
        raise HonedError(
            f"report: run '{run_dir}' was trained on in-memory data (its recipe names no data.train); "
            "pass data.train=FILE (and data.val/data.test) or call honed.evaluate.report.build_report in Python"
        )
    model, labels = load_model(run_dir / "model")
    tables = load_tables(recipe)
    if tables.labels.names != labels.names:
        raise HonedError(
            f"report: the data now has classes {tables.labels.names} but the model in '{run_dir}/model' was trained on "
            f"{labels.names}; report with the run's own data"
        )
    frames = filter_tokens(tables.frames, recipe, model.preprocess, tables.notes)
    if labels.task in RUN_REPORTS:  # another task's page, from the same rebuilt splits
        return RUN_REPORTS[labels.task](recipe, run_dir, model, labels, frames, tables.notes, out_dir)
    outputs = {
        split: (logits_for(model, labels, recipe, frame), torch.tensor(labels.encode(frame["label"])))
        for split, frame in frames.items()
        if split in ("val", "test") and len(frame)
    }
    temperature = saved_temperature(run_dir / "model")
    results = run_dir / "results.json"
    metrics = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None
    report = report_from_outputs(
        recipe, labels, frames, outputs, read_history(run_dir), metrics, temperature, tables.notes
    )
    return write_report(out_dir or run_dir, report)[1]
