"""Error analysis from predictions: per-class scores, confusion matrix, confused pairs, top losses.

Everything here takes predictions (probabilities), never a model, so a single fine-tune and an
ensemble are analysed the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from honed.data.sources import META

TEXT_LIMIT = 1000  # characters of an example's text kept in the report


def summary(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Headline metrics of the analysed split."""
    pred = probs.argmax(axis=1)
    k = list(range(len(labels)))
    return {
        "rows": len(y_true),
        "accuracy": float((pred == y_true).mean()) if len(y_true) else float("nan"),
        "macro_f1": float(f1_score(y_true, pred, labels=k, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, pred, labels=k, average="weighted", zero_division=0)),
        "loss": float(example_losses(y_true, probs).mean()) if len(y_true) else float("nan"),
    }


def per_class(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support of every class (scikit-learn)."""
    pred = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, pred, labels=list(range(len(labels))), zero_division=0
    )
    predicted = np.bincount(pred, minlength=len(labels))
    return [
        {
            "label": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(labels)
    ]


def confusion(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Counts (rows: true class, columns: predicted) and the row-normalised matrix (recall per cell)."""
    counts = confusion_matrix(y_true, probs.argmax(axis=1), labels=list(range(len(labels))))
    totals = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    return {"labels": labels, "counts": counts.tolist(), "normalised": normalised.round(6).tolist()}


def example_losses(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy -log p(true class)."""
    picked = probs[np.arange(len(y_true)), y_true]
    return -np.log(np.clip(picked, 1e-12, 1.0))


def describe_input(value: Any) -> str:
    """An input as report text: the text itself (cut at TEXT_LIMIT), an image path, or '<image array>'."""
    if isinstance(value, str):
        return value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT] + " ..."
    return "<image array>"


def example(
    frame: pd.DataFrame, position: int, y_true: np.ndarray, probs: np.ndarray, labels: list[str], losses: np.ndarray
) -> dict[str, Any]:
    """One analysed row: its source row number, input, true and predicted class, confidence and loss."""
    row = frame.iloc[position]
    pred = int(probs[position].argmax())
    out: dict[str, Any] = {
        "row": int(frame.index[position])
        if isinstance(frame.index[position], (int, np.integer))
        else str(frame.index[position]),
        "input": describe_input(row["x"]),
        "true": labels[int(y_true[position])],
        "predicted": labels[pred],
        "confidence": float(probs[position, pred]),
        "p_true": float(probs[position, int(y_true[position])]),
        "loss": float(losses[position]),
    }
    if "x2" in frame:
        out["input_pair"] = describe_input(row["x2"])
    meta = {c.removeprefix(META): _plain(row[c]) for c in frame.columns if c.startswith(META)}
    if "group" in frame:
        meta = {"group": _plain(row["group"]), **meta}
    if meta:
        out["meta"] = meta
    return out


def _plain(value: Any) -> Any:
    """A JSON-safe scalar."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if isinstance(value, (int, float, bool, str)) or value is None else str(value)


def top_losses(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], frame: pd.DataFrame, k: int
) -> list[dict[str, Any]]:
    """The k rows the model got most wrong (highest loss), worst first."""
    losses = example_losses(y_true, probs)
    order = np.argsort(-losses, kind="stable")[:k]
    return [{**example(frame, int(i), y_true, probs, labels, losses), "position": int(i)} for i in order]


def confused_pairs(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], frame: pd.DataFrame, pairs: int = 5, examples: int = 3
) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, each with its most confident wrong examples."""
    pred = probs.argmax(axis=1)
    counts = confusion_matrix(y_true, pred, labels=list(range(len(labels))))
    np.fill_diagonal(counts, 0)
    losses = example_losses(y_true, probs)
    out = []
    for flat in np.argsort(-counts, axis=None, kind="stable")[:pairs]:
        t, p = divmod(int(flat), len(labels))
        if counts[t, p] == 0:
            break
        rows = np.flatnonzero((y_true == t) & (pred == p))
        rows = rows[np.argsort(-probs[rows, p], kind="stable")][:examples]
        support = int((y_true == t).sum())
        out.append(
            {
                "true": labels[t],
                "predicted": labels[p],
                "count": int(counts[t, p]),
                "share_of_true": float(counts[t, p] / support) if support else 0.0,
                "examples": [
                    {**example(frame, int(i), y_true, probs, labels, losses), "position": int(i)} for i in rows
                ],
            }
        )
    return out
