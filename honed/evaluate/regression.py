"""The regression report: a small page of its own, since the classification report (honed/evaluate/report.py)
is built around classes, probabilities and calibration, none of which a numeric target has.

`build_regression_report` is a pure function of true and predicted values (in the targets' own units)
and the analysed rows: metrics per target and averaged, predicted-vs-true scatter, residual histogram,
the worst-error examples and metrics by slice. `write_regression_report` writes report.json and a
self-contained report.html, like the classification report.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.data.sources import META
from honed.errors import HonedError
from honed.evaluate.html import CSS, _figure, _num, _table
from honed.evaluate.plots import _encode, plt
from honed.evaluate.report import REPORT_HTML, REPORT_JSON
from honed.metrics import REGRESSION_SCORES, regression_metrics
from honed.rundir import LOG, write_text_atomic

MAX_SLICE_VALUES = 12  # most frequent values of a slice column shown


def build_regression_report(
    *,
    names: list[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    frame: pd.DataFrame,
    top_k: int = 20,
    split: str = "test",
    title: str = "honed report",
    slices: list[str] | tuple[str, ...] = (),
    run_metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Every section as plain data; `y_true`/`y_pred` are (rows, targets) in the targets' units and `frame`
    the analysed rows in the same order (column x, optional meta:NAME slice columns)."""
    started = time.perf_counter()
    true, pred = _two_d(y_true), _two_d(y_pred)
    metrics = regression_metrics(pred, true, names)
    metrics.pop("loss")
    report: dict[str, Any] = {
        "task": "regression",
        "title": title,
        "split": split,
        "labels": list(names),
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": {"rows": int(len(true)), **metrics},
        "run_metrics": run_metrics or {},
        "notes": list(notes or []),
        "per_target": [_target_summary(name, true[:, j], pred[:, j]) for j, name in enumerate(names)],
        "worst_errors": _worst(names, true, pred, frame, top_k),
        "slices": {name: _slice(frame, META + name, true, pred) for name in slices if META + name in frame},
        "history": history or [],
    }
    report["figures"] = {"scatter": _scatter_png(names, true, pred), "residuals": _residuals_png(names, true, pred)}
    report["seconds_to_build"] = time.perf_counter() - started
    return report


def _two_d(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(len(array), -1)


def _target_summary(name: str, true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    residual = pred - true
    scores = {key: fn(true, pred) for key, fn in REGRESSION_SCORES.items()}
    return {
        "target": name,
        **scores,
        "true_mean": float(true.mean()),
        "true_std": float(true.std()),
        "pred_mean": float(pred.mean()),
        "pred_std": float(pred.std()),
        "residual_mean": float(residual.mean()),
    }


def _worst(
    names: list[str], true: np.ndarray, pred: np.ndarray, frame: pd.DataFrame, top_k: int
) -> list[dict[str, Any]]:
    """The rows with the largest absolute error (averaged over targets), worst first."""
    error = np.abs(pred - true).mean(axis=1)
    inputs = frame["x"].map(lambda v: v if isinstance(v, str) else str(v)).tolist()
    rows = []
    for i in np.argsort(-error, kind="stable")[:top_k]:
        row: dict[str, Any] = {"row": int(i), "input": inputs[i], "abs_error": float(error[i])}
        for j, name in enumerate(names):
            row[f"true_{name}"], row[f"predicted_{name}"] = float(true[i, j]), float(pred[i, j])
        rows.append(row)
    return rows


def _slice(frame: pd.DataFrame, column: str, true: np.ndarray, pred: np.ndarray) -> list[dict[str, Any]]:
    """RMSE and MAE (averaged over targets) for the most frequent values of one slice column."""
    values = frame[column].astype(str).to_numpy()
    out = []
    for value in pd.Series(values).value_counts().index[:MAX_SLICE_VALUES]:
        mask = values == value
        err = pred[mask] - true[mask]
        out.append(
            {
                "value": value,
                "rows": int(mask.sum()),
                "rmse": float(np.sqrt((err**2).mean())),
                "mae": float(np.abs(err).mean()),
            }
        )
    return out


def _scatter_png(names: list[str], true: np.ndarray, pred: np.ndarray) -> str:
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4.0), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        ax.scatter(true[:, j], pred[:, j], s=6, alpha=0.4)
        low, high = float(min(true[:, j].min(), pred[:, j].min())), float(max(true[:, j].max(), pred[:, j].max()))
        ax.plot([low, high], [low, high], color="gray", linewidth=1, linestyle="--")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name}")
    return _encode(fig)


def _residuals_png(names: list[str], true: np.ndarray, pred: np.ndarray) -> str:
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], names)):
        ax.hist(pred[:, j] - true[:, j], bins=40)
        ax.axvline(0.0, color="gray", linewidth=1)
        ax.set_xlabel(f"residual (predicted - true) {name}")
        ax.set_ylabel("rows")
    return _encode(fig)


def render_regression_html(report: dict[str, Any]) -> str:
    """The page: summary cards, per-target table, figures, worst errors, slices, history."""
    summary = report["summary"]
    cards = "".join(f'<div class="card"><b>{_num(summary[k])}</b>{k}</div>' for k in ("rows", *REGRESSION_SCORES))
    keys = ["target", *REGRESSION_SCORES, "true_mean", "true_std", "pred_mean", "pred_std", "residual_mean"]
    worst = report["worst_errors"]
    worst_keys = list(worst[0]) if worst else []
    sections = [
        ("Summary", f'<div class="cards">{cards}</div>'),
        ("Per target", _table(keys, [[t[k] for k in keys] for t in report["per_target"]])),
        ("Predicted vs true", _figure(report["figures"]["scatter"], "predicted against true values")),
        ("Residuals", _figure(report["figures"]["residuals"], "histogram of residuals")),
        ("Worst-error examples", _table(worst_keys, [[w[k] for k in worst_keys] for w in worst])),
        (
            "Metrics by slice",
            "".join(
                f"<h3>{escape(name)}</h3>"
                + _table(["value", "rows", "rmse", "mae"], [[r["value"], r["rows"], r["rmse"], r["mae"]] for r in rows])
                for name, rows in report["slices"].items()
            )
            or "<p>No report.slices.</p>",
        ),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    head = (
        f'<h1>{escape(report["title"])}</h1><p class="muted">regression &middot; split: {escape(report["split"])} '
        f"&middot; {summary['rows']} rows &middot; targets: {escape(', '.join(report['labels']))}</p>"
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}</title>'
        f"<style>{CSS}</style></head><body>{head}{body}</body></html>\n"
    )


def write_regression_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """report.json (numbers, no figures) and report.html into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {k: v for k, v in report.items() if k != "figures"}
    write_text_atomic(out / REPORT_JSON, json.dumps(numbers, indent=1, allow_nan=False))
    write_text_atomic(out / REPORT_HTML, render_regression_html(report))
    return out / REPORT_JSON, out / REPORT_HTML


def regression_after_fit(
    recipe: Any,
    run_dir: Path,
    tables: Any,
    outputs: dict[str, Any],
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
) -> None:
    """After `train`: the report of the analysed split (test, else val) from the final outputs, un-standardised.
    A failure is logged, not raised: the model is already saved."""
    if not recipe.report.enabled or not any(len(labels) for _, labels in outputs.values()):
        return
    try:
        split = next(s for s in ("test", "val") if s in outputs and len(outputs[s][1]))
        outputs_, targets = outputs[split]
        decode = tables.labels.decode
        report = build_regression_report(
            names=list(tables.labels.names),
            y_true=decode(targets.numpy()),
            y_pred=decode(outputs_.numpy()),
            frame=tables.frames[split],
            top_k=recipe.report.top_k,
            split=split,
            title=f"honed report: {recipe.name}",
            slices=recipe.report.slices,
            run_metrics=metrics,
            history=history,
            notes=tables.notes,
        )
        write_regression_report(run_dir, report)
        LOG.info("report: %s (%.1f s)", run_dir / REPORT_HTML, report["seconds_to_build"])
    except Exception as exc:  # noqa: BLE001 - see docstring
        LOG.warning("report failed: %s", exc)
        print(f"honed: warning: the regression report could not be written ({exc})")


def regression_run_report(recipe: Any, run_dir: Path, model: Any, labels: Any, frames: dict[str, Any],
                          notes: list[str], out_dir: str | Path | None) -> Path:
    """`honed report RUN_DIR` for a regression run: its saved model on the rebuilt test split (else val), in the
    targets' units; returns report.html."""
    from honed.inference.logits import logits_for

    split = next((s for s in ("test", "val") if len(frames.get(s, ()))), None)
    if split is None:
        raise HonedError("report: the run has no val or test rows to analyse; give data.val/data.test or "
                         "data.split fractions")
    frame = frames[split]
    results, history = Path(run_dir) / "results.json", Path(run_dir) / "metrics.jsonl"
    report = build_regression_report(
        names=list(labels.names), y_true=labels.values(frame),
        y_pred=labels.decode(logits_for(model, labels, recipe, frame).double().numpy()), frame=frame,
        top_k=recipe.report.top_k, split=split, title=f"honed report: {recipe.name}", slices=recipe.report.slices,
        run_metrics=json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None,
        history=[json.loads(line) for line in history.read_text(encoding="utf-8").splitlines() if line.strip()]
        if history.is_file() else None, notes=notes)
    return write_regression_report(out_dir or run_dir, report)[1]

