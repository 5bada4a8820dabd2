"""Exact and near duplicates inside one split (wasted rows, over-weighted examples, conflicting labels).

Regression targets conflict by more than a tolerance, not by being unequal: the target_conflicts check
judges those, so here only classes are compared.
"""

from __future__ import annotations

import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.audit.similarity import exact_groups, near_pairs, where


@CHECKS.register("duplicates")
def duplicates(ctx: AuditContext) -> Finding:
    frame = ctx.data.frame
    flagged: list[tuple[int, str, str]] = []  # (frame index, reason, detail)
    conflicts = 0
    for group in exact_groups(ctx):
        rows = frame.loc[group]
        if ctx.data.labels and rows["label"].nunique() > 1:  # classes (regression: target_conflicts)
            conflicts += 1
            labels = "/".join(sorted(rows["label"].dropna().unique()))
            flagged += [(i, "conflicting labels", f"same content labelled {labels}") for i in group]
        for _split, members in rows.groupby("split"):
            first = members.index[0]
            flagged += [(i, "exact duplicate", f"same as {where(frame, first)}") for i in members.index[1:]]
    pairs = near_pairs(ctx)
    same = pairs[frame.loc[pairs["a"], "split"].to_numpy() == frame.loc[pairs["b"], "split"].to_numpy()]
    for a, b, cosine in same.itertuples(index=False):
        flagged.append((b, "near duplicate", f"cosine {cosine:.3f} with {where(frame, a)}"))
    finding = Finding("duplicates", "Duplicates within a split")
    exact = sum(1 for _, reason, _ in flagged if reason == "exact duplicate")
    finding.data = {
        "exact_duplicates": exact,
        "conflicting_groups": conflicts,
        "near_duplicate_pairs": len(same),
        "near_duplicate_threshold": ctx.settings.near_duplicate,
        "near_pairs_truncated": bool(ctx.cache.get("near_truncated")),
    }
    finding.summary.append(f"{exact} exact duplicate rows (copies after the first in their split)")
    if ctx.data.labels:
        finding.summary.append(f"{conflicts} sets of identical rows with conflicting labels")
    finding.summary.append(f"{len(same)} near-duplicate pairs within a split (cosine >= {ctx.settings.near_duplicate})")
    if ctx.cache.get("near_truncated"):
        finding.summary.append("near-duplicate search stopped early: too many pairs; raise --near-duplicate")
    if exact:
        finding.recommendations.append("drop the extra copies: `honed clean` keeps the first of each")
    if conflicts:
        finding.recommendations.append(
            "identical rows with different labels: fix the labels at the source (at least one is wrong)"
        )
    if len(same):
        finding.recommendations.append(
            "review near-duplicate pairs; many pairs of one kind (templates, reposts) over-weight it"
        )
    if flagged:
        index, reason, detail = zip(*flagged)
        finding.rows = row_table(frame.loc[list(index)], pd.Series(reason, index=index), pd.Series(detail, index=index))
    return finding
