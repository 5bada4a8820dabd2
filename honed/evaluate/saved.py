"""`honed evaluate MODEL DATA`: scores of any saved Predictor (a model, an ensemble) on labelled
data, and with `report_dir` its error-analysis report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from honed.data.labels import TARGET
from honed.data.sources import META
from honed.evaluate.multilabel import evaluate_label_sets
from honed.evaluate.regression import build_regression_report, write_regression_report
from honed.evaluate.report import build_report, write_report
from honed.inference import Predictor, load_predictor
from honed.inference.calibration import scale_probs
from honed.inference.frames import labelled_frame
from honed.metrics import classification_metrics, regression_metrics


def evaluate_saved(model_dir: str | Path, source: Any, overrides: dict[str, Any] | None = None,
                   calibrated: bool = False, report_dir: str | Path | None = None) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of a saved model or ensemble on labelled data (RMSE, MAE, R², Pearson and
    Spearman for a regression model; micro/macro-F1, mAP and per-label scores for a multi-label one);
    `calibrated` applies the saved temperature (the loss changes, the predictions do not); `report_dir`
    also writes report.json/.html there."""
    predictor = load_predictor(model_dir, overrides)
    return EVALUATORS[predictor.task](predictor, source, calibrated, report_dir)


def evaluate_predictor(predictor: Predictor, source: Any, calibrated: bool = False,
                       report_dir: str | Path | None = None) -> dict[str, float]:
    """evaluate_saved for a predictor already loaded (pruning scores one before and after)."""
    temperature = predictor.require_temperature() if calibrated else None
    frame = labelled_frame(source, predictor.recipe, predictor.labels, with_slices=report_dir is not None)
    probs = predictor.predict_proba(frame)
    y = np.asarray([predictor.labels.index(v) for v in frame["label"]])
    if report_dir is not None:
        report_labelled(predictor, frame, probs, y, report_dir)
    scored = probs if temperature is None else scale_probs(probs, temperature)
    logits = torch.log(torch.from_numpy(scored).clamp_min(1e-12))
    return classification_metrics(logits, torch.from_numpy(y))


def evaluate_values(predictor: Predictor, source: Any, calibrated: bool = False,
                    report_dir: str | Path | None = None) -> dict[str, float]:
    """evaluate_saved for a regression predictor: its metrics in the targets' units (no `loss`: that is
    the training loss in standardised units), and with `report_dir` the regression report."""
    if calibrated:
        predictor.require_temperature()  # regression saves no temperature: one line saying so
    frame = labelled_frame(source, predictor.recipe, predictor.labels, with_slices=report_dir is not None,
                           task=predictor.task)
    true = frame[[TARGET + name for name in predictor.labels]].to_numpy(dtype=np.float64)
    pred = predictor.predict_values(frame)
    if report_dir is not None:
        slices = [name for name in predictor.recipe.report.slices if META + name in frame]
        write_regression_report(report_dir, build_regression_report(
            names=list(predictor.labels), y_true=true, y_pred=pred, frame=frame, top_k=predictor.recipe.report.top_k,
            split="evaluate", title=f"honed report: {predictor.describe()}", slices=slices))
    scores = regression_metrics(pred, true, predictor.labels)
    scores.pop("loss")
    return scores


# How `honed evaluate` scores each task's predictor.
EVALUATORS = {"classification": evaluate_predictor, "regression": evaluate_values, "multilabel": evaluate_label_sets}


def report_labelled(predictor: Predictor, frame: pd.DataFrame, probs: np.ndarray, y: np.ndarray,
                    out_dir: str | Path) -> Path:
    """The report of a predictor on labelled rows; a temperature saved with it is measured, not refitted."""
    recipe = predictor.recipe
    slices = [name for name in recipe.report.slices if META + name in frame]  # training-only columns may be absent
    report = build_report(labels=list(predictor.labels), y_true=y, probs=probs, frame=frame,
                          temperature=predictor.saved_temperature(), slices=slices,
                          top_k=recipe.report.top_k, split="evaluate", title=f"honed report: {predictor.describe()}",
                          group_name=recipe.data.group_column if "group" in frame else None)
    if report["calibration"]["temperature"] is not None:
        report["calibration"]["fitted_on"] = "val (saved with the model)"
    return write_report(out_dir, report)[1]
