"""Leakage across splits: the same (or nearly the same) row, or the same group, in train and val/test.

A test row that also sits in train is scored on memory, not generalisation; so is a movie whose
other reviews were trained on. The train-side copy is what `honed clean` drops.
"""

from __future__ import annotations

import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.audit.similarity import exact_groups, near_pairs, where


@CHECKS.register("leakage")
def leakage(ctx: AuditContext) -> Finding:
    frame = ctx.data.frame
    flagged: list[tuple[int, str, str]] = []
    for group in exact_groups(ctx):
        rows = frame.loc[group]
        held = rows[rows["split"] != "train"]
        if len(held) and (rows["split"] == "train").any():
            flagged += [
                (i, "leak: exact duplicate", f"same as {where(frame, held.index[0])}")
                for i in rows.index[rows["split"] == "train"]
            ]
    pairs = near_pairs(ctx)
    split_a, split_b = frame.loc[pairs["a"], "split"].to_numpy(), frame.loc[pairs["b"], "split"].to_numpy()
    cross = pairs[(split_a != split_b) & ((split_a == "train") | (split_b == "train"))]
    for a, b, cosine in cross.itertuples(index=False):
        train, other = (a, b) if frame.loc[a, "split"] == "train" else (b, a)
        flagged.append((train, "leak: near duplicate", f"cosine {cosine:.3f} with {where(frame, other)}"))
    finding = Finding("leakage", "Leakage across splits")
    exact = sum(1 for _, r, _ in flagged if r == "leak: exact duplicate")
    finding.summary.append(f"{exact} train rows duplicated exactly in val/test")
    finding.summary.append(
        f"{len(cross)} train/held-out near-duplicate pairs (cosine >= {ctx.settings.near_duplicate})"
    )
    groups = _group_leaks(ctx, flagged, finding)
    finding.data = {"exact_leaks": exact, "near_leak_pairs": len(cross), **groups}
    if exact or len(cross):
        finding.recommendations.append(
            "drop the train copies of held-out rows (`honed clean` does), or the test score flatters the model"
        )
    if flagged:
        index, reason, detail = zip(*flagged)
        finding.rows = row_table(frame.loc[list(index)], pd.Series(reason, index=index), pd.Series(detail, index=index))
    return finding


def _group_leaks(ctx: AuditContext, flagged: list[tuple[int, str, str]], finding: Finding) -> dict[str, int | None]:
    frame = ctx.data.frame
    if "group" not in frame:
        finding.summary.append("no data.group_column set: group leakage not checked (set it to e.g. movie_name)")
        return {"leaked_groups": None}
    grouped = frame[frame["group"].notna()]
    train_groups = set(grouped.loc[grouped["split"] == "train", "group"])
    held = grouped[(grouped["split"] != "train") & grouped["group"].isin(train_groups)]
    leaked = sorted(set(held["group"]))
    rows = grouped[(grouped["split"] == "train") & grouped["group"].isin(leaked)]
    flagged += [
        (i, "leak: group", f"group '{g}' also in {'/'.join(sorted(set(held.loc[held['group'] == g, 'split'])))}")
        for i, g in zip(rows.index, rows["group"])
    ]
    total = grouped["group"].nunique()
    finding.summary.append(
        f"{len(leaked)} of {total} groups appear in train and in val/test ({len(rows)} train rows, "
        f"{len(held)} held-out rows)"
    )
    if leaked:
        finding.recommendations.append(
            "split by group so no group spans splits: `data.split.method=group` "
            "(or `honed clean --drop-group-leaks` to drop the train rows of leaked groups)"
        )
    return {
        "leaked_groups": len(leaked),
        "groups": int(total),
        "group_leak_train_rows": len(rows),
        "group_leak_heldout_rows": len(held),
        "leaked_group_names": leaked[:100],
    }
