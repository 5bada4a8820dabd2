"""Would more data help? Held-out accuracy of the linear probe on growing shares of the training rows.

The probe (LogisticRegression on the cached frozen embeddings) is trained on 10/25/50/100% of the
usable train rows (stratified, seeded) and scored on val+test (or, with no held-out rows, on a
20% slice of train). A curve still rising at 100% says more labelled data should pay off; a flat
one says look elsewhere (cleaner labels, a better model, fine-tuning). A regression recipe's curve is a
ridge probe scored by RMSE instead (`honed.audit.ridge_curve`).
"""

from __future__ import annotations

import numpy as np

from honed.audit.base import CHECKS, AuditContext, Finding
from honed.audit.plots import figure, to_png
from honed.audit.ridge_curve import ridge_curve

RISING = 0.01  # accuracy gained over the last doubling that counts as "still rising"


@CHECKS.register("learning_curve")
def learning_curve(ctx: AuditContext) -> Finding:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    if ctx.data.task == "regression":  # no classes: RMSE of a ridge probe instead of a classifier's accuracy
        return ridge_curve(ctx)
    finding = Finding("learning_curve", "Learning curve (would more data help?)")
    index, vectors = ctx.embeddings()
    frame = ctx.data.frame.loc[index]
    names = {n: i for i, n in enumerate(ctx.data.labels)}
    y = frame["label"].map(names).to_numpy()
    train = np.flatnonzero(frame["split"].to_numpy() == "train")
    held = np.flatnonzero(frame["split"].to_numpy() != "train")
    seed = ctx.recipe.seed
    if len(held) == 0:
        try:
            train, held = train_test_split(train, test_size=0.2, random_state=seed, stratify=y[train])
        except ValueError:  # too few rows (or a one-row class) to hold any out
            finding.summary.append("not measured: too few training rows to hold some out")
            return finding
    sizes, scores = [], []
    for fraction in ctx.settings.fractions:
        subset = _subset(train, y, fraction, seed)
        if subset is None or len(np.unique(y[subset])) < 2:
            continue
        probe = LogisticRegression(max_iter=2000).fit(vectors[subset], y[subset])
        sizes.append(len(subset))
        scores.append(float((probe.predict(vectors[held]) == y[held]).mean()))
    if len(scores) < 2:
        finding.summary.append("not measured: too few training rows per class")
        return finding
    finding.data = {
        "fractions": list(ctx.settings.fractions)[-len(sizes) :],
        "train_rows": sizes,
        "accuracy": scores,
        "heldout_rows": len(held),
        "model": f"logistic regression on frozen {ctx.recipe.model.name} embeddings",
    }
    finding.summary.append("held-out accuracy: " + ", ".join(f"{n} rows {s:.3f}" for n, s in zip(sizes, scores)))
    gain = scores[-1] - scores[-2]
    if gain > RISING:
        finding.summary.append(f"still rising (+{gain:.3f} over the last step): more labelled data is likely to help")
        finding.recommendations.append("collect or label more training data; the curve has not flattened")
    else:
        finding.summary.append(
            f"flat at the end ({gain:+.3f} over the last step): more of the same data is unlikely to help much"
        )
    finding.figures["held-out accuracy against training rows (linear probe)"] = _plot(sizes, scores)
    return finding


def _subset(rows: np.ndarray, y: np.ndarray, fraction: float, seed: int) -> np.ndarray | None:
    """A seeded stratified share of `rows` (all of them at 1.0); None when the share holds no row."""
    if fraction >= 1.0:
        return rows
    from sklearn.model_selection import train_test_split

    if int(len(rows) * fraction) < 1:
        return None
    try:
        kept, _ = train_test_split(rows, train_size=fraction, random_state=seed, stratify=y[rows])
    except ValueError:  # a class too small to stratify at this size
        kept, _ = train_test_split(rows, train_size=fraction, random_state=seed)
    return kept


def _plot(sizes: list[int], scores: list[float]) -> bytes:
    fig, ax = figure()
    ax.plot(sizes, scores, marker="o")
    ax.set_xscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    return to_png(fig)
