"""The multi-label report and `honed evaluate` for a multi-label model.

The classification report (honed/evaluate/report.py) is built around one class per row (confusion
matrix, calibration of the top probability); a multi-label row holds a set, so this page is its own:
summary cards (micro/macro-F1 with the saved thresholds and at 0.5, mAP, labels per row), one row per
label (threshold, positives, predicted, precision, recall, F1, AP) and the rows with the most wrong
labels. `build_multilabel_report` is a pure function of the multi-hot truth, the probabilities and the
thresholds; `write_multilabel_report` writes report.json and a self-contained report.html.
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
import torch

from honed.data.labels import MultiLabelMap
from honed.data.multilabel import as_trained, check_known
from honed.errors import HonedError
from honed.evaluate.html import CSS, _num, _table
from honed.evaluate.report import REPORT_HTML, REPORT_JSON
from honed.inference import Predictor
from honed.inference.frames import labelled_frame
from honed.metrics import label_set_metrics, probability_bce
from honed.rundir import LOG, write_text_atomic

PER_LABEL = ("threshold", "positives", "predicted", "precision", "recall", "f1", "ap", "f1_at_0.5")


def build_multilabel_report(*, labels: MultiLabelMap, y_true: np.ndarray, probs: np.ndarray, frame: pd.DataFrame,
                            top_k: int = 20, split: str = "test", title: str = "honed report",
                            run_metrics: dict[str, Any] | None = None, history: list[dict[str, Any]] | None = None,
                            notes: list[str] | None = None) -> dict[str, Any]:
    """Every section as plain data; `y_true` is (rows, labels) multi-hot, `probs` the model's (rows, labels)
    probabilities and `frame` the analysed rows in the same order (column x)."""
    started = time.perf_counter()
    names, true = list(labels.names), np.asarray(y_true) > 0.5
    tuned = label_set_metrics(probs, true, names, labels.thresholds)
    half = label_set_metrics(probs, true, names, None)
    predicted = probs >= np.asarray(labels.thresholds)
    per_label = [{"label": name, "threshold": labels.thresholds[j], "positives": int(true[:, j].sum()),
                  "predicted": int(predicted[:, j].sum()), "precision": tuned[f"precision_{name}"],
                  "recall": tuned[f"recall_{name}"], "f1": tuned[f"f1_{name}"], "ap": tuned.get(f"ap_{name}"),
                  "f1_at_0.5": half[f"f1_{name}"]} for j, name in enumerate(names)]
    report: dict[str, Any] = {
        "task": "multilabel", "title": title, "split": split, "labels": names,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "thresholds_tuned_on": labels.tuned_on or "default 0.5",
        "summary": {"rows": int(len(true)), "micro_f1": tuned["micro_f1"], "macro_f1": tuned["macro_f1"],
                    "map": tuned["map"], "micro_f1_at_0.5": half["micro_f1"], "macro_f1_at_0.5": half["macro_f1"],
                    "labels_per_row": float(true.sum(axis=1).mean()) if len(true) else 0.0,
                    "predicted_per_row": float(predicted.sum(axis=1).mean()) if len(true) else 0.0},
        "per_label": per_label,
        "worst_rows": _worst(labels, true, probs, predicted, frame, top_k),
        "run_metrics": run_metrics or {}, "notes": list(notes or []), "history": history or [],
    }
    report["seconds_to_build"] = time.perf_counter() - started
    return report


def _worst(labels: MultiLabelMap, true: np.ndarray, probs: np.ndarray, predicted: np.ndarray, frame: pd.DataFrame,
           top_k: int) -> list[dict[str, Any]]:
    """The rows with the most wrong labels (missed + extra), then the largest probability error, worst first."""
    wrong = (true != predicted).sum(axis=1)
    error = np.abs(probs - true).sum(axis=1)
    order = np.lexsort((-error, -wrong))[:top_k]
    inputs = frame["x"].map(lambda v: v if isinstance(v, str) else str(v)).tolist()
    join = labels.delimiter.join
    return [{"row": int(i), "input": inputs[i], "wrong_labels": int(wrong[i]),
             "true": join(n for n, on in zip(labels.names, true[i]) if on),
             "predicted": join(n for n, on in zip(labels.names, predicted[i]) if on),
             "missed": join(n for n, t, p in zip(labels.names, true[i], predicted[i]) if t and not p),
             "extra": join(n for n, t, p in zip(labels.names, true[i], predicted[i]) if p and not t)}
            for i in order if wrong[i]]


def render_multilabel_html(report: dict[str, Any]) -> str:
    """The page: summary cards, the per-label table, the rows with the most wrong labels."""
    summary = report["summary"]
    cards = "".join(f'<div class="card"><b>{_num(v)}</b>{escape(k)}</div>' for k, v in summary.items())
    worst = report["worst_rows"]
    worst_keys = list(worst[0]) if worst else []
    sections = [
        ("Summary", f'<div class="cards">{cards}</div><p class="muted">decision thresholds: '
                    f'{escape(report["thresholds_tuned_on"])}</p>'),
        ("Per label", _table(["label", *PER_LABEL], [[p["label"], *(p[k] for k in PER_LABEL)]
                                                    for p in report["per_label"]])),
        ("Rows with the most wrong labels", _table(worst_keys, [[w[k] for k in worst_keys] for w in worst])
         if worst else "<p>No mistakes on this split.</p>"),
    ]
    body = "".join(f"<section><h2>{escape(title)}</h2>{html}</section>" for title, html in sections)
    head = (f'<h1>{escape(report["title"])}</h1><p class="muted">multi-label &middot; split: '
            f'{escape(report["split"])} &middot; {summary["rows"]} rows &middot; labels: '
            f'{escape(", ".join(report["labels"]))}</p>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(report["title"])}</title>'
            f"<style>{CSS}</style></head><body>{head}{body}</body></html>\n")


def write_multilabel_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """report.json and report.html into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / REPORT_JSON, json.dumps(report, indent=1, allow_nan=False))
    write_text_atomic(out / REPORT_HTML, render_multilabel_html(report))
    return out / REPORT_JSON, out / REPORT_HTML


def multilabel_after_fit(recipe: Any, run_dir: Path, tables: Any, outputs: dict[str, Any], metrics: dict[str, Any],
                         history: list[dict[str, Any]]) -> None:
    """After `train`: the report of the analysed split (test, else val) from the final logits, with the
    thresholds tuned on val. A failure is logged, not raised: the model is already saved."""
    if not recipe.report.enabled or not any(len(labels) for _, labels in outputs.values()):
        return
    try:
        split = next(s for s in ("test", "val") if s in outputs and len(outputs[s][1]))
        logits, targets = outputs[split]
        report = build_multilabel_report(
            labels=tables.labels, y_true=targets.numpy(), probs=torch.sigmoid(logits.double()).numpy(),
            frame=tables.frames[split], top_k=recipe.report.top_k, split=split, title=f"honed report: {recipe.name}",
            run_metrics=metrics, history=history, notes=tables.notes)
        write_multilabel_report(run_dir, report)
        LOG.info("report: %s (%.1f s)", run_dir / REPORT_HTML, report["seconds_to_build"])
    except Exception as exc:  # noqa: BLE001 - see docstring
        LOG.warning("report failed: %s", exc)
        print(f"honed: warning: the multi-label report could not be written ({exc})")


def multilabel_run_report(recipe: Any, run_dir: Path, model: Any, labels: MultiLabelMap,
                          frames: dict[str, pd.DataFrame], notes: list[str], out_dir: str | Path | None) -> Path:
    """`honed report RUN_DIR` for a multi-label run: its saved model (and thresholds) on the rebuilt test
    split (else val); returns report.html."""
    from honed.inference.logits import logits_for

    split = next((s for s in ("test", "val") if len(frames.get(s, ()))), None)
    if split is None:
        raise HonedError("report: the run has no val or test rows to analyse; give data.val/data.test or "
                         "data.split fractions")
    frame = frames[split]
    probs = labels.probabilities(logits_for(model, labels, recipe, frame).double()).numpy()
    results = Path(run_dir) / "results.json"
    history = Path(run_dir) / "metrics.jsonl"
    report = build_multilabel_report(
        labels=labels, y_true=labels.multi_hot(frame), probs=probs, frame=frame, top_k=recipe.report.top_k,
        split=split, title=f"honed report: {recipe.name}", notes=notes,
        run_metrics=json.loads(results.read_text(encoding="utf-8")) if results.is_file() else None,
        history=[json.loads(line) for line in history.read_text(encoding="utf-8").splitlines() if line.strip()]
        if history.is_file() else None)
    return write_multilabel_report(out_dir or run_dir, report)[1]


def evaluate_label_sets(predictor: Predictor, source: Any, calibrated: bool = False,
                        report_dir: str | Path | None = None) -> dict[str, float]:
    """evaluate_saved for a multi-label predictor: micro/macro-F1 with its saved thresholds, mAP, per-label
    precision/recall/F1/AP and the BCE of its probabilities; a label the model never saw is one line."""
    if calibrated:
        predictor.require_temperature()  # multi-label saves no temperature: one line saying so
    frame = labelled_frame(source, predictor.recipe, predictor.labels, task=predictor.task)
    frame = as_trained(frame, predictor.recipe.data, predictor.labels)
    check_known(frame, predictor.labels, "data", "the model cannot score it; drop it from those rows")
    labels = predictor.decision_map()
    if not isinstance(labels, MultiLabelMap):
        labels = MultiLabelMap(tuple(predictor.labels), delimiter=predictor.recipe.data.label_delimiter)
    probs, true = predictor.predict_proba(frame), labels.multi_hot(frame)
    if report_dir is not None:
        write_multilabel_report(report_dir, build_multilabel_report(
            labels=labels, y_true=true, probs=probs, frame=frame, top_k=predictor.recipe.report.top_k,
            split="evaluate", title=f"honed report: {predictor.describe()}"))
    return {"loss": probability_bce(probs, true), **label_set_metrics(probs, true, labels.names, labels.thresholds)}
