"""The error-analysis report: a pure function of predictions, and the writer of report.json/.html.

`build_report` takes labels, true classes and probabilities (plus the analysed rows and optional
training history and validation logits), never a model, so a fine-tune, a saved model being
evaluated and an ensemble all produce the same report. `write_report` writes `report.json` (the
numbers) and a self-contained `report.html` (the same numbers with embedded PNG figures).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.errors import HonedError
from honed.evaluate import analysis
from honed.evaluate.calibration import calibration_summary, fit_temperature
from honed.evaluate.slices import all_slices
from honed.rundir import write_text_atomic

REPORT_JSON, REPORT_HTML = "report.json", "report.html"


def build_report(*, labels: list[str], y_true: np.ndarray, probs: np.ndarray, frame: pd.DataFrame,
                 history: list[dict[str, Any]] | None = None, val_logits: np.ndarray | None = None,
                 val_labels: np.ndarray | None = None, temperature: float | None = None,
                 logits: np.ndarray | None = None, slices: list[str] | tuple[str, ...] = (), top_k: int = 20,
                 split: str = "test", title: str = "honed report", run_metrics: dict[str, Any] | None = None,
                 notes: list[str] | None = None, group_name: str | None = None,
                 thumbnails: bool = True) -> dict[str, Any]:
    """Every section of the report as plain data (JSON-safe, except image thumbnails kept under
    'thumbnail' keys for the HTML).

    `probs` (rows x classes) are the analysed split's probabilities and `frame` its rows in the same
    order (column x, optional x2, group and meta:NAME columns; `group_name` names the group column).
    Temperature scaling is fitted on `val_logits`/`val_labels` when given, or `temperature` is used as is;
    calibration is measured on `logits` (default: log of `probs`, which softmax maps back to `probs`).
    """
    started = time.perf_counter()
    y_true, probs = np.asarray(y_true, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    _check(labels, y_true, probs, frame)
    if temperature is None and val_logits is not None and val_labels is not None and len(val_labels):
        temperature = fit_temperature(np.asarray(val_logits), np.asarray(val_labels))
    logits = np.log(np.clip(probs, 1e-12, 1.0)) if logits is None else np.asarray(logits, dtype=np.float64)
    losses = analysis.example_losses(y_true, probs)
    report: dict[str, Any] = {
        "title": title, "split": split, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "labels": list(labels), "summary": analysis.summary(y_true, probs, labels),
        "run_metrics": run_metrics or {}, "notes": list(notes or []),
        "per_class": analysis.per_class(y_true, probs, labels),
        "confusion": analysis.confusion(y_true, probs, labels),
        "confused_pairs": analysis.confused_pairs(y_true, probs, labels, frame),
        "top_losses": analysis.top_losses(y_true, probs, labels, frame, top_k),
        "slices": all_slices(frame, y_true, probs, losses, len(labels), slices, group_name),
        "calibration": calibration_summary(logits, y_true, temperature),
        "history": history or [],
    }
    fitted_on = "val" if val_logits is not None else ("given" if temperature is not None else None)
    report["calibration"]["fitted_on"] = fitted_on
    report["summary"]["ece"] = report["calibration"]["ece"]
    if group_name:
        _name_group(report, group_name)
    if thumbnails:
        _add_thumbnails(report, frame)
    report["seconds_to_build"] = time.perf_counter() - started
    return report


def _check(labels: list[str], y_true: np.ndarray, probs: np.ndarray, frame: pd.DataFrame) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise HonedError(f"report: probabilities have shape {probs.shape}, expected (rows, {len(labels)} classes)")
    if len(y_true) != len(probs) or len(frame) != len(probs):
        raise HonedError(f"report: {len(y_true)} labels, {len(probs)} probability rows "
                         f"and {len(frame)} input rows must match")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= len(labels)):
        raise HonedError("report: true classes must be indices into labels (unlabelled rows cannot be analysed)")


def _examples(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [*report["top_losses"], *(e for pair in report["confused_pairs"] for e in pair["examples"])]


def _name_group(report: dict[str, Any], group_name: str) -> None:
    """Examples show the group under its column's name (once, even when it is also a slice column)."""
    for row in _examples(report):
        meta = row.get("meta", {})
        if "group" in meta:
            rest = {k: v for k, v in meta.items() if k not in ("group", group_name)}
            row["meta"] = {group_name: meta["group"], **rest}


def _add_thumbnails(report: dict[str, Any], frame: pd.DataFrame) -> None:
    """Image inputs get a small base64 PNG for the HTML (texts need none)."""
    from honed.evaluate.plots import thumbnail_png

    for row in _examples(report):
        item = frame["x"].iloc[row["position"]]
        if isinstance(item, str) and not _is_image_path(item):
            continue  # text
        thumb = thumbnail_png(item)
        if thumb:
            row["thumbnail"] = thumb


def _is_image_path(text: str) -> bool:
    suffix = os.path.splitext(text)[1].lower()
    return suffix in {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"} and Path(text).is_file()


def _without_thumbnails(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_thumbnails(v) for k, v in value.items() if k != "thumbnail"}
    if isinstance(value, list):
        return [_without_thumbnails(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """report.json (numbers, no thumbnails) and the self-contained report.html into `out_dir`."""
    from honed.evaluate.html import render_html

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HonedError(f"report: '{out}' is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / REPORT_JSON, out / REPORT_HTML
    write_text_atomic(json_path, json.dumps(_without_thumbnails(report), indent=1, allow_nan=False))
    write_text_atomic(html_path, render_html(report))
    return json_path, html_path
