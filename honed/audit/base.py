"""What every audit check shares: its settings, the context it reads, the finding it returns.

A check is a function `check(ctx) -> Finding` registered by name in `CHECKS`; `ORDER` is the order
they run in (the corrupt-row check first, because it marks the rows the others must skip) and
`DEFAULTS` the checks each task runs when none are named. A check that cannot run on the data (too
few rows for k folds, no group column) returns a Finding that says why rather than failing the whole
audit; a check that means nothing for the task (class balance of numeric targets) is not run at all:
`SKIPPED` holds its title and the reason the report gives instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honed.audit.data import AuditData
from honed.recipe import Recipe
from honed.registry import Registry


@dataclass
class AuditSettings:
    """Thresholds and sizes of the checks (CLI flags / keyword arguments of `honed.audit`)."""

    near_duplicate: float = (
        0.95  # cosine similarity of normalised embeddings at or above which two rows are near-duplicates
    )
    outlier_z: float = 3.5  # robust z-score (median/MAD) beyond which a length, distance or target is an outlier
    target_tolerance: float = 0.5  # regression: identical rows whose targets differ by more (robust stds) conflict
    folds: int = 5  # k of the out-of-fold linear probe that feeds cleanlab
    label_threshold: float = (
        0.0  # `honed clean` acts on a flagged label only when the other class's probability is above this
    )
    oof: str | None = None  # a CSV of out-of-fold probabilities (id + one column per class) instead of the linear probe
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)  # learning-curve training fractions
    batch_size: int = 64  # embedding batch size
    checks: tuple[str, ...] = ()  # run only these checks (empty: all)
    max_listed: int = 50  # rows listed per finding in the HTML (all are in audit.json)


@dataclass
class Finding:
    """One check's result: a title, one-line facts, recommendations, flagged rows, figures, raw data."""

    name: str
    title: str
    summary: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    rows: pd.DataFrame | None = None  # flagged rows: split, source, row, label, reason, detail, ...
    figures: dict[str, bytes] = field(default_factory=dict)  # caption -> PNG bytes
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        rows = [] if self.rows is None else _json_rows(self.rows)
        return {
            "name": self.name,
            "title": self.title,
            "summary": self.summary,
            "recommendations": self.recommendations,
            "rows": rows,
            "data": self.data,
        }


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in rec.items()} for rec in out.to_dict("records")
    ]


@dataclass
class AuditContext:
    """The data, settings and lazily computed shared results (embeddings, out-of-fold probabilities)."""

    recipe: Recipe
    data: AuditData
    settings: AuditSettings
    quiet: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    def embeddings(self) -> tuple[pd.Index, np.ndarray]:
        """Frame index of the usable rows and their normalised embeddings (computed once per audit)."""
        if "embeddings" not in self.cache:
            from honed.audit.embeddings import embed

            usable = self.data.usable()
            pairs = usable["x2"].tolist() if "x2" in usable else None
            vectors = embed(self.recipe, usable["x"].tolist(), pairs, self.settings.batch_size, self.quiet)
            self.cache["embeddings"] = (usable.index, vectors)
        return self.cache["embeddings"]


Check = Callable[[AuditContext], Finding]
CHECKS: Registry[Finding] = Registry("audit check")
ORDER = (
    "corrupt",
    "balance",
    "targets",
    "label_variants",
    "duplicates",
    "target_conflicts",
    "leakage",
    "outliers",
    "label_issues",
    "learning_curve",
)
DEFAULTS = {
    "classification": tuple(n for n in ORDER if n not in ("targets", "target_conflicts")),
    "regression": ORDER,  # the classification-only checks are listed as skipped, with their reason
}
NO_CLASSES = "regression targets are numbers, not classes"
SKIPPED: dict[str, dict[str, tuple[str, str]]] = {  # task -> check -> (title, why it is not run)
    "regression": {
        "balance": ("Class balance", f"skipped: {NO_CLASSES}; the target distribution check takes its place"),
        "label_variants": ("Labels spelled several ways", f"skipped: {NO_CLASSES}; a target that is not a number "
                           "stops the audit with the row it is in"),
        "label_issues": ("Likely label errors (cleanlab)", f"skipped: {NO_CLASSES}; confident learning needs class "
                         "probabilities. Target outliers and duplicates with conflicting targets cover what it would"),
    },
    "classification": {
        "targets": ("Target distribution and outliers", "skipped: a classification recipe has no numeric targets"),
        "target_conflicts": ("Duplicates with conflicting targets", "skipped: a classification recipe has no "
                             "numeric targets; conflicting class labels are in the duplicates check"),
    },
}


def skipped(name: str, task: str) -> Finding | None:
    """The Finding that stands for a check that means nothing for `task` (None when it runs)."""
    if name not in SKIPPED.get(task, {}):
        return None
    title, why = SKIPPED[task][name]
    return Finding(name, title, summary=[why], data={"skipped": why})


def row_table(frame: pd.DataFrame, reason: str | pd.Series, detail: str | pd.Series = "") -> pd.DataFrame:
    """The flagged-row table every finding uses: where the row lives, its label, why, a text preview."""
    out = frame[["split", "source", "row", "label"]].copy()
    out["reason"] = reason
    out["detail"] = detail
    out["preview"] = frame["x"].map(preview)
    return out


def preview(value: Any, width: int = 120) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.shape}"
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = " ".join(str(value).split())
    if isinstance(value, str) and Path(text).suffix and "/" in text:
        return text[-width:]
    return text if len(text) <= width else text[: width - 1] + "…"
