"""Class distribution and skew: counts per split, the imbalance ratio and the loss it suggests."""

from __future__ import annotations

import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding
from honed.audit.plots import figure, to_png

SKEWED = 1.5  # largest/smallest class count at which a weighted loss is worth trying
SEVERE = 10.0  # ... at which a focal loss or resampling is worth trying as well


@CHECKS.register("balance")
def balance(ctx: AuditContext) -> Finding:
    labelled = ctx.data.frame[ctx.data.frame["label"].notna()]
    table = pd.crosstab(labelled["label"], labelled["split"]).reindex(index=ctx.data.labels, fill_value=0)
    train = table["train"] if "train" in table else table.sum(axis=1)
    present = train[train > 0]
    ratio = float(present.max() / present.min()) if len(present) else float("inf")
    shares = (train / max(int(train.sum()), 1)).round(4)
    finding = Finding(
        "balance",
        "Class balance",
        data={
            "counts": {split: {k: int(v) for k, v in table[split].items()} for split in table.columns},
            "train_share": {k: float(v) for k, v in shares.items()},
            "imbalance_ratio": ratio,
        },
    )
    finding.summary.append("train: " + ", ".join(f"{k} {int(v)} ({shares[k]:.0%})" for k, v in train.items()))
    finding.summary.append(f"imbalance ratio (largest / smallest class in train): {ratio:.2f}")
    missing = [k for k, v in train.items() if v == 0]
    if missing:
        finding.summary.append(f"classes with no training rows: {', '.join(missing)}")
        finding.recommendations.append(
            f"add training rows for {', '.join(missing)}: a model cannot learn a class it never sees"
        )
    if ratio >= SKEWED:
        finding.recommendations.append(
            "weight the loss by class: `loss.name=weighted_cross_entropy loss.weights=balanced`"
            " (report macro_f1 too: `train.metric=macro_f1`)"
        )
    if ratio >= SEVERE:
        finding.recommendations.append("severe skew: also try `loss.name=focal loss.gamma=2 loss.alpha=balanced`")
    if ratio < SKEWED and not missing:
        finding.summary.append("classes are balanced enough for plain cross-entropy")
    finding.figures["class counts per split"] = _plot(table)
    return finding


def _plot(table: pd.DataFrame) -> bytes:
    fig, ax = figure()
    table.plot.bar(ax=ax)
    ax.set_ylabel("rows")
    ax.set_xlabel("")
    return to_png(fig)
