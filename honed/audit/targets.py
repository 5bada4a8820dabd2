"""Regression targets: each target column's distribution, and the rows whose target lies far from the rest.

The distribution (count, mean, sample std, min/max, 5/25/50/75/95% quantiles, bias-corrected skew) is
given over all usable rows and per split, so a held-out split centred elsewhere shows. Outliers are
robust z-scores, (value - median) / (1.4826 * MAD) over all usable rows, beyond `--outlier-z` (3.5):
the median and MAD are not dragged by the outliers they judge, as a mean and std would be. When half the
rows or more share one value (a zero-inflated target: MAD 0) the scale is 1.253314 * the mean absolute
deviation around the median (the modified z-score's fallback); a constant target flags nothing. A unit slip
(a rating of 25 among 0-3), a sentinel (-1, 999) or a typo lands far outside; under MSE one such row
pulls the fit more than hundreds of ordinary ones. Flagged rows are listed worst first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.audit.outliers import robust_scale
from honed.audit.plots import figure, to_png
from honed.audit.similarity import where

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
SKEWED = 1.0  # |skew| at which a robust loss or a transformed target is worth trying
WORST_LISTED = 5  # outlier rows named in the summary (all are in the row table)
METHOD = "robust z-score (median / 1.4826 MAD; 1.253314 mean absolute deviation when the MAD is 0), all usable rows"


def describe(values: np.ndarray) -> dict[str, Any]:
    """count, mean, std (sample, ddof 1), min, quantiles, max and skew (pandas' bias-corrected) of `values`;
    None where a statistic needs more rows than there are."""
    series = pd.Series(values, dtype=np.float64)
    stats: dict[str, Any] = {"count": int(series.size)}
    if series.empty:
        return stats
    stats.update(mean=series.mean(), std=series.std(ddof=1), min=series.min(), max=series.max())
    stats.update({f"q{round(q * 100):02d}": series.quantile(q) for q in QUANTILES})
    stats["skew"] = series.skew()
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in stats.items()}


@CHECKS.register("targets")
def targets(ctx: AuditContext) -> Finding:
    """Describe each target and flag the rows whose target is a robust-z outlier."""
    usable, limit = ctx.data.usable(), ctx.settings.outlier_z
    values = ctx.data.target_values(usable)
    splits = usable["split"].to_numpy()
    finding = Finding("targets", "Target distribution and outliers")
    per_target: dict[str, Any] = {}
    flagged: list[tuple[int, float, str, str]] = []  # (frame index, |z|, target, detail)
    for j, name in enumerate(ctx.data.targets):
        column = values[:, j]
        median, scale = robust_scale(column)
        z = (column - median) / scale
        per_target[name] = {
            "all": describe(column),
            "by_split": {s: describe(column[splits == s]) for s in dict.fromkeys(splits)},
            "median": median,
            "robust_scale": scale,
            "outliers": int((np.abs(z) > limit).sum()),
        }
        for pos in np.flatnonzero(np.abs(z) > limit):
            detail = f"{name} {column[pos]:.4g} vs median {median:.4g} (robust z {z[pos]:+.1f})"
            flagged.append((usable.index[pos], abs(float(z[pos])), name, detail))
        finding.figures[f"distribution of {name} (dashed: the outlier fences)"] = _plot(
            column, splits, median - limit * scale, median + limit * scale
        )
    flagged.sort(key=lambda item: -item[1])
    finding.data = {"method": METHOD, "threshold_z": limit, "targets": per_target,
                    "rows": len({i for i, *_ in flagged})}
    _describe_lines(finding, per_target)
    _outlier_lines(ctx, finding, flagged, limit)
    return finding


def _describe_lines(finding: Finding, per_target: dict[str, Any]) -> None:
    """One line per target with its distribution, one with its per-split means; advice for skew and constants."""
    for name, info in per_target.items():
        s = info["all"]
        if s["count"] == 0:
            finding.summary.append(f"{name}: no usable rows")
            continue
        quantiles = "/".join(f"{s[f'q{round(q * 100):02d}']:.4g}" for q in QUANTILES)
        skew = "n/a" if s["skew"] is None else f"{s['skew']:+.2f}"
        std = "n/a" if s["std"] is None else f"{s['std']:.4g}"
        finding.summary.append(
            f"{name}: {s['count']} rows, mean {s['mean']:.4g}, std {std}, min {s['min']:.4g}, "
            f"quantiles 5/25/50/75/95% {quantiles}, max {s['max']:.4g}, skew {skew}"
        )
        finding.summary.append(f"{name} by split: " + ", ".join(
            f"{split} mean {d['mean']:.4g} ({d['count']} rows)" for split, d in info["by_split"].items()))
        if s["max"] == s["min"]:
            finding.recommendations.append(f"target {name} is constant ({s['min']:.4g}): there is nothing to learn")
        elif s["skew"] is not None and abs(s["skew"]) >= SKEWED:
            finding.recommendations.append(
                f"target {name} is skewed (skew {s['skew']:+.2f}): try `loss.name=huber` (less pull from the long "
                "tail) or train on a log or rank transform of it"
            )


def _outlier_lines(ctx: AuditContext, finding: Finding, flagged: list[tuple[int, float, str, str]],
                   limit: float) -> None:
    """The outlier count, the worst rows by name, their row table, and what to do about them."""
    frame = ctx.data.frame
    counts = ", ".join(f"{info['outliers']} in {name}" for name, info in finding.data["targets"].items())
    finding.summary.append(f"{finding.data['rows']} rows with an outlying target (robust z > {limit}): {counts}")
    if not flagged:
        return
    finding.summary.append("worst: " + "; ".join(
        f"{where(frame, i)}: {detail}" for i, _, _, detail in flagged[:WORST_LISTED]))
    finding.recommendations.append(
        "check the outlying targets at the source (a unit slip, a sentinel such as -1 or 999, a typo): fix them, "
        "drop them (`honed clean --drop-outliers`) or train with `loss.name=huber`"
    )
    index = [i for i, *_ in flagged]
    rows = row_table(frame.loc[index], "target outlier")  # a row outlying in two targets is listed twice
    rows["detail"] = [d for *_, d in flagged]
    rows["target"] = [t for _, _, t, _ in flagged]
    rows["robust_z"] = [round(z, 2) for _, z, _, _ in flagged]
    finding.rows = rows


def _plot(values: np.ndarray, splits: np.ndarray, low: float, high: float) -> bytes:
    """A histogram of the target per split, with the outlier fences."""
    fig, ax = figure()
    bins = np.histogram_bin_edges(values, bins=40)
    for split in dict.fromkeys(splits):
        ax.hist(values[splits == split], bins=bins, alpha=0.5, label=str(split))
    for fence in (low, high):
        if values.min() <= fence <= values.max():
            ax.axvline(fence, color="k", linestyle="--", linewidth=1)
    ax.set_ylabel("rows")
    ax.legend()
    return to_png(fig)
