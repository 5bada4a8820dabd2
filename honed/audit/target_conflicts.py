"""Duplicates with conflicting targets: the same input (normalised as the duplicates check does) given
targets that differ by more than `--target-tolerance` standard deviations of the target (0.5).

Identical inputs with different targets cap what any model can reach (it can at best predict their mean)
and often mark rater disagreement or a unit slip. Sets are found over all splits at once: a set that
spans splits is also leakage, and its held-out row is scored against a target its train copy contradicts.
The spread unit is each target's robust standard deviation, 1.4826 * MAD (1.253314 * the mean absolute
deviation when the MAD is 0, as the targets check scales), on the usable train rows (all usable rows when
train has fewer than two): it reads as the std on well-behaved targets, and the outliers
the targets check flags do not inflate it (a std would, and hide the conflicts).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.audit.outliers import robust_scale
from honed.audit.similarity import exact_groups, where

LISTED_SETS = 100  # conflicting sets kept in audit.json's data (every row is in the row table)


def target_scale(ctx: AuditContext) -> np.ndarray:
    """Each target's robust std (1.4826 * MAD; 1.2533 * the mean absolute deviation when the MAD is 0) on the
    usable train rows (all usable rows if train has under two)."""
    usable = ctx.data.usable()
    train = usable[usable["split"] == "train"]
    values = ctx.data.target_values(train if len(train) >= 2 else usable)
    return np.array([robust_scale(values[:, j])[1] for j in range(values.shape[1])])


@CHECKS.register("target_conflicts")
def target_conflicts(ctx: AuditContext) -> Finding:
    """Flag every row of a set of identical rows whose targets spread wider than the tolerance."""
    frame, tolerance, names = ctx.data.frame, ctx.settings.target_tolerance, ctx.data.targets
    scale = target_scale(ctx)
    flagged: list[tuple[int, str, str]] = []
    sets: list[dict[str, Any]] = []
    consistent = 0
    for group in exact_groups(ctx):
        rows = frame.loc[group]
        values = ctx.data.target_values(rows)
        spread = (values.max(axis=0) - values.min(axis=0)) / scale  # in robust target stds
        if not (spread > tolerance).any():
            consistent += 1
            continue
        j = int(np.argmax(spread))
        across = rows["split"].nunique() > 1
        shown = " / ".join(f"{v:.4g}" for v in values[:, j])
        detail = f"same content: {names[j]} {shown} (spread {spread[j]:.1f} robust std) in " + ", ".join(
            where(frame, i) for i in group)
        reason = "conflicting targets across splits" if across else "conflicting targets"
        flagged += [(i, reason, detail) for i in group]
        sets.append({"rows": [where(frame, i) for i in group], "across_splits": bool(across),
                     "spread_std": {n: round(float(s), 4) for n, s in zip(names, spread)}})
    finding = Finding("target_conflicts", "Duplicates with conflicting targets")
    across_sets = sum(s["across_splits"] for s in sets)
    finding.data = {"tolerance_std": tolerance, "scale": {n: float(s) for n, s in zip(names, scale)},
                    "conflicting_sets": len(sets), "across_splits": across_sets, "consistent_sets": consistent,
                    "sets": sets[:LISTED_SETS]}
    _lines(finding, tolerance)
    if flagged:
        index, reason, detail = zip(*flagged)
        finding.rows = row_table(frame.loc[list(index)], pd.Series(reason, index=index), pd.Series(detail, index=index))
    return finding


def _lines(finding: Finding, tolerance: float) -> None:
    """The summary and recommendations of the conflict counts."""
    data = finding.data
    finding.summary.append(
        f"{data['conflicting_sets']} sets of identical rows whose targets differ by more than {tolerance} "
        f"robust std ({data['across_splits']} of them span splits)"
    )
    finding.summary.append(f"{data['consistent_sets']} sets of identical rows agree within {tolerance} robust std")
    if data["conflicting_sets"]:
        finding.recommendations.append(
            "identical inputs with different targets: a model can at best predict their mean; check them at the "
            "source (rater disagreement, a unit slip) or average each set into one row"
        )
    if data["across_splits"]:
        finding.recommendations.append(
            "a held-out row whose identical copy sits in train with another target scores noise, not skill: "
            "drop the train copies (`honed clean` drops exact leaks)"
        )
