"""Likely label errors: cleanlab's confident learning on out-of-fold predicted probabilities.

The probabilities come, by default, from a cheap linear probe: scikit-learn's LogisticRegression on
the cached frozen-backbone embeddings, predicted out-of-fold with `cross_val_predict` (k stratified
folds), so no row is judged by a model that saw its label. A CSV of out-of-fold probabilities from a
real fine-tune (`--oof FILE`: an `id` column holding the 0-based row of data.train's file, and one
column per class name, e.g. RUN_DIR/oof.csv of `honed cv`) replaces the probe for the train rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.errors import HonedError

ID_COLUMNS = ("id", "row", "index")


def oof_probabilities(ctx: AuditContext) -> tuple[pd.Index, np.ndarray, str]:
    """Frame index, (N, C) probabilities in label order, and where they came from (cached per audit)."""
    if "oof" not in ctx.cache:
        ctx.cache["oof"] = _from_csv(ctx) if ctx.settings.oof else _linear_probe(ctx)
    return ctx.cache["oof"]


def _linear_probe(ctx: AuditContext) -> tuple[pd.Index, np.ndarray, str]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    index, vectors = ctx.embeddings()
    labels = ctx.data.frame.loc[index, "label"]
    counts = labels.value_counts().reindex(list(ctx.data.labels), fill_value=0)  # a class with no usable row counts 0
    folds = min(ctx.settings.folds, int(counts.min()))
    if folds < 2:
        raise _Skip(
            f"class '{counts.idxmin()}' has {int(counts.min())} usable rows; "
            "out-of-fold probabilities need 2 or more per class"
        )
    y = labels.map({name: i for i, name in enumerate(ctx.data.labels)}).to_numpy()
    probe = LogisticRegression(max_iter=2000, C=1.0)
    cv = StratifiedKFold(folds, shuffle=True, random_state=ctx.recipe.seed)
    probs = cross_val_predict(probe, vectors, y, cv=cv, method="predict_proba")
    return index, probs, f"logistic regression on frozen {ctx.recipe.model.name} embeddings, {folds}-fold out-of-fold"


def _from_csv(ctx: AuditContext) -> tuple[pd.Index, np.ndarray, str]:
    path = Path(ctx.settings.oof)
    if not path.is_file():
        raise HonedError(f"--oof: file '{path}' not found")
    table = pd.read_csv(path)
    id_column = next((c for c in ID_COLUMNS if c in table.columns), None)
    prefix = next((p for p in ("", "p_", "prob_") if all(f"{p}{n}" in table.columns for n in ctx.data.labels)), "")
    missing = [name for name in ctx.data.labels if f"{prefix}{name}" not in table.columns]
    if id_column is None or missing:
        what = f"row id column ({'/'.join(ID_COLUMNS)})" if id_column is None else f"column for class '{missing[0]}'"
        raise HonedError(
            f"--oof: '{path}' has no {what}; it needs an id column and one probability column per class, "
            "named CLASS, p_CLASS (honed cv's oof.csv) or prob_CLASS "
            f"({', '.join(ctx.data.labels)})"
        )
    frame = ctx.data.usable()
    train = frame[frame["source"] == "train"]
    by_row = pd.Series(train.index, index=train["row"].to_numpy())
    known = table[table[id_column].isin(by_row.index)]
    if known.empty:
        raise HonedError(
            f"--oof: no id in '{path}' matches a usable row of data.train (ids are 0-based rows of its file)"
        )
    probs = known[[f"{prefix}{n}" for n in ctx.data.labels]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(probs)) or (probs < 0).any():
        raise HonedError(f"--oof: '{path}' holds negative or non-numeric probabilities")
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return pd.Index(by_row.loc[known[id_column]].to_numpy()), probs, f"out-of-fold probabilities from {path}"


class _Skip(Exception):
    """The check cannot run on this data; the finding says why."""


@CHECKS.register("label_issues")
def label_issues(ctx: AuditContext) -> Finding:
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    finding = Finding("label_issues", "Likely label errors (cleanlab)")
    try:
        index, probs, origin = oof_probabilities(ctx)
    except _Skip as exc:
        finding.summary.append(f"not checked: {exc}")
        return finding
    frame = ctx.data.frame
    names = list(ctx.data.labels)
    y = frame.loc[index, "label"].map({n: i for i, n in enumerate(names)}).to_numpy()
    present = np.unique(y)
    if len(present) < 2:
        finding.summary.append("not checked: the rows with probabilities hold one class")
        return finding
    issues = find_label_issues(y, probs, filter_by="prune_by_noise_rate")
    quality = get_label_quality_scores(y, probs)
    suggested = probs.argmax(axis=1)
    accuracy = float((suggested == y).mean())
    flagged = np.flatnonzero(issues)
    flagged = flagged[np.argsort(quality[flagged])]  # worst first
    finding.data = {"source": origin, "rows_scored": len(y), "flagged": len(flagged), "oof_accuracy": accuracy}
    finding.summary.append(f"probabilities: {origin} (accuracy {accuracy:.3f} on {len(y)} rows)")
    finding.summary.append(f"{len(flagged)} rows flagged as likely label errors ({len(flagged) / len(y):.1%})")
    if len(flagged):
        finding.recommendations.append(
            "review the flagged rows worst first; `honed clean --labels drop` (or relabel) acts on those "
            "whose suggested class has probability above --label-threshold"
        )
        rows = frame.loc[index[flagged]]
        detail = [
            f"suggested '{names[suggested[p]]}' (p={probs[p, suggested[p]]:.2f}), label quality {quality[p]:.3f}"
            for p in flagged
        ]
        table = row_table(rows, "likely label error", pd.Series(detail, index=rows.index))
        table["suggested"] = [names[suggested[p]] for p in flagged]
        table["suggested_p"] = probs[flagged, suggested[flagged]].round(4)
        table["label_quality"] = quality[flagged].round(4)
        finding.rows = table
    return finding
