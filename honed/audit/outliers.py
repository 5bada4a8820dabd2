"""Outliers: rows far longer/shorter (or larger/smaller) than the rest, and rows unlike their class
or unlike the data as a whole in embedding space.

Scores are robust z-scores, (value - median) / (1.4826 * MAD), so the outliers themselves do not
inflate the spread that judges them (1.253314 * the mean absolute deviation when the MAD is 0). Length
is judged on a log scale over all rows (texts: characters; images: pixels). In embedding space a row's
cosine distance to its class centroid is judged within its class, and its distance to the centroid of all
rows is judged over all rows: the second finds a minority population (e.g. plot synopses among reviews)
that is coherent inside its own class.
Regression rows have no classes: only the length and whole-data checks run (the targets check judges
the target values themselves).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from honed.audit.base import CHECKS, AuditContext, Finding, row_table
from honed.audit.plots import figure, to_png

MIN_CLASS = 5  # rows a class needs before its own spread is trusted
CLASS_RATIO = 3.0  # a class whose median length/size is this far from the median row is called out
MAD = 1.4826  # 1 / the normal distribution's 75% quantile: 1.4826 * MAD estimates the std
MEAN_AD = 1.253314  # sqrt(pi / 2): 1.253314 * mean absolute deviation estimates the std


def robust_scale(values: np.ndarray) -> tuple[float, float]:
    """The median and 1.4826 * MAD (the standard deviation, were the values normal). When at least half the
    values are equal (MAD 0, e.g. a zero-inflated target) the mean absolute deviation around the median stands
    in, scaled by MEAN_AD (its own consistency constant, as in the modified z-score); when every value is equal
    the scale is 1.0, so every z is exactly 0 and nothing is flagged."""
    median = float(np.median(values))
    deviation = np.abs(values - median)
    mad = MAD * float(np.median(deviation))
    if mad == 0:
        mad = MEAN_AD * float(np.mean(deviation)) or 1.0
    return median, mad


def robust_z(values: np.ndarray) -> np.ndarray:
    median, scale = robust_scale(values)
    return (values - median) / scale


def size_of(item: Any, kind: str) -> float:
    """Characters of a text, pixels of an image."""
    if kind == "text":
        return float(len(str(item)))
    if isinstance(item, np.ndarray):
        return float(item.shape[0] * item.shape[1]) if item.ndim >= 2 else float(item.size)
    with Image.open(item) as img:
        return float(img.size[0] * img.size[1])


@CHECKS.register("outliers")
def outliers(ctx: AuditContext) -> Finding:
    usable, limit = ctx.data.usable(), ctx.settings.outlier_z
    unit = "characters" if ctx.data.kind == "text" else "pixels"
    sizes = usable["x"].map(lambda v: size_of(v, ctx.data.kind)).to_numpy()
    z_size = robust_z(np.log1p(sizes))
    flagged: list[tuple[int, str, str]] = []
    median = float(np.median(sizes))
    for i, size, z in zip(usable.index, sizes, z_size):
        if abs(z) > limit:
            flagged.append((i, "length outlier" if ctx.data.kind == "text" else "size outlier",
                            f"{size:.0f} {unit} vs median {median:.0f} (robust z {z:+.1f})"))
    index, vectors = ctx.embeddings()
    labels = usable.loc[index, "label"].to_numpy()
    z_class = np.full(len(index), np.nan)
    for name in ctx.data.labels:
        members = np.flatnonzero(labels == name)
        if len(members) >= MIN_CLASS:
            z_class[members] = robust_z(_centroid_distance(vectors[members]))
    z_all = robust_z(_centroid_distance(vectors))
    for pos in np.flatnonzero(z_class > limit):
        flagged.append((index[pos], "unlike its class",
                        f"embedding distance to the '{labels[pos]}' centroid: robust z {z_class[pos]:+.1f}"))
    for pos in np.flatnonzero(z_all > limit):
        flagged.append((index[pos], "unlike the data",
                        f"embedding distance to the centroid of all rows: robust z {z_all[pos]:+.1f}"))
    finding = Finding("outliers", "Outliers (length/size and embedding space)")
    reasons = pd.Series([r for _, r, _ in flagged], dtype=object)
    counts = {str(k): int(v) for k, v in reasons.value_counts().items()}
    by_class = pd.Series(sizes, index=usable.index).groupby(usable["label"]).median() if ctx.data.labels else {}
    finding.data = {"threshold_z": limit, "median_size": median, "unit": unit, "by_reason": counts,
                    "rows": len({i for i, _, _ in flagged}),
                    "median_size_by_class": {k: float(v) for k, v in by_class.items()}}
    finding.summary.append(f"median {unit} per row {median:.0f}" + ("; per class: " if ctx.data.labels else "") +
                           ", ".join(f"{k} {v:.0f}" for k, v in finding.data["median_size_by_class"].items()))
    finding.summary.append(f"{finding.data['rows']} outlier rows (robust z > {limit}): " +
                           (", ".join(f"{v} {k}" for k, v in counts.items()) or "none"))
    for name, size in finding.data["median_size_by_class"].items():
        ratio = size / max(median, 1.0)
        if ratio >= CLASS_RATIO or ratio <= 1 / CLASS_RATIO:
            finding.summary.append(f"class '{name}': median {size:.0f} {unit}, {ratio:.1f}x the median row: "
                                   "a different kind of row?")
            finding.recommendations.append(f"class '{name}' differs in {unit} from the rest ({ratio:.1f}x the median): "
                                           "check that its rows are the same kind of input the model will see "
                                           "(`data.labels` can leave a class out)")
    if flagged:
        finding.recommendations.append("read the flagged rows: a different kind of row (another source, a synopsis "
                                       "among reviews, a blank scan) belongs in its own class or out of the data "
                                       "(`honed clean --drop-outliers`)")
        index_, reason, detail = zip(*flagged)
        finding.rows = row_table(usable.loc[list(index_)], pd.Series(reason, index=index_),
                                 pd.Series(detail, index=index_))
    finding.figures[f"log {unit} per row, by class"] = _plot(sizes, usable["label"].to_numpy(), ctx.data.labels, unit)
    return finding


def _centroid_distance(vectors: np.ndarray) -> np.ndarray:
    centroid = vectors.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    return 1.0 - vectors @ centroid


def _plot(sizes: np.ndarray, labels: np.ndarray, names: list[str], unit: str) -> bytes:
    """Histograms of log size per class (one of all rows when there are no classes: regression)."""
    fig, ax = figure()
    bins = np.linspace(np.log10(max(sizes.min(), 1.0)), np.log10(max(sizes.max(), 10.0)), 40)
    groups = [(name, labels == name) for name in names] or [("all rows", np.ones(len(sizes), dtype=bool))]
    for name, members in groups:
        ax.hist(np.log10(np.maximum(sizes[members], 1.0)), bins=bins, alpha=0.5, label=name)
    ax.set_xlabel(f"log10 {unit}")
    ax.set_ylabel("rows")
    ax.legend()
    return to_png(fig)
