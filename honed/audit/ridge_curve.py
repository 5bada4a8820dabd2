"""Would more data help (regression)? Held-out RMSE of a ridge probe on growing shares of the training rows.

The learning curve of a regression recipe: scikit-learn's RidgeCV (its alpha picked from ALPHAS by
efficient leave-one-out on the training share, all targets fitted at once) on the cached frozen
embeddings, trained on 10/25/50/100% of the usable train rows (nested shares of one seeded shuffle, so
each share holds the smaller ones) and scored by RMSE on val+test (or, with no held-out rows, on a
seeded 20% slice of train). RMSE is reported per target in its units; the verdict reads the mean over
targets of RMSE / the target's train std, so targets on different scales weigh alike. Lower is better:
a curve still falling at 100% says more labelled data should pay off; a flat one says look elsewhere.
Predicting the train mean is the baseline that says whether the embeddings carry the target at all.
"""

from __future__ import annotations

import numpy as np

from honed.audit.base import AuditContext, Finding
from honed.audit.plots import figure, to_png

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
FALLING = 0.01  # relative fall of the (normalised) RMSE over the last step that counts as "still falling"
MIN_ROWS = 5  # fewest training rows a share needs for a probe
HELD_OUT = 0.2  # share of train held out when the recipe has no val/test rows
TIE = 0.005  # relative RMSE difference from predicting the mean that reads as "no better"
BARELY = 0.05  # the most the probe can beat the mean by and still read as "barely better"


def held_out_split(frame_splits: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of the training and scoring rows: train vs val+test, else a seeded slice of train
    (None when too few rows to hold any out)."""
    train = np.flatnonzero(frame_splits == "train")
    held = np.flatnonzero(frame_splits != "train")
    if len(held):
        return train, held
    if len(train) < 2 * MIN_ROWS:
        return None
    from sklearn.model_selection import train_test_split

    train, held = train_test_split(train, test_size=HELD_OUT, random_state=seed)
    return np.sort(train), np.sort(held)


def shares(train: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Nested seeded shares of `train` (all of it at 1.0), each with at least MIN_ROWS rows, smallest first."""
    order = np.random.default_rng(seed).permutation(train)
    out = []
    for fraction in sorted(fractions):
        size = len(train) if fraction >= 1.0 else int(len(train) * fraction)
        if size >= MIN_ROWS and (not out or size > len(out[-1])):
            out.append(np.sort(order[:size]))
    return out


def rmse(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-target root mean squared error of (rows, targets) arrays."""
    return np.sqrt(((predicted.reshape(actual.shape) - actual) ** 2).mean(axis=0))


def ridge_curve(ctx: AuditContext) -> Finding:
    """The regression learning curve (the `learning_curve` check of a regression recipe)."""
    from sklearn.linear_model import RidgeCV

    finding = Finding("learning_curve", "Learning curve (would more data help?)")
    index, vectors = ctx.embeddings()
    frame = ctx.data.frame.loc[index]
    y = ctx.data.target_values(frame)
    split = held_out_split(frame["split"].to_numpy(), ctx.recipe.seed)
    subsets = shares(split[0], ctx.settings.fractions, ctx.recipe.seed) if split is not None else []
    if len(subsets) < 2:
        finding.summary.append(f"not measured: too few training rows (a probe needs {MIN_ROWS} or more per share, "
                               "and some rows held out)")
        return finding
    train, held = split
    scale = y[train].std(axis=0, ddof=1)
    scale = np.where(scale > 0, scale, 1.0)
    errors, alphas = [], []
    for subset in subsets:
        probe = RidgeCV(alphas=ALPHAS).fit(vectors[subset], y[subset])
        errors.append(rmse(probe.predict(vectors[held]), y[held]))
        alphas.append(float(probe.alpha_))
    baseline = rmse(np.broadcast_to(y[train].mean(axis=0), y[held].shape), y[held])
    normalised = [float((e / scale).mean()) for e in errors]
    sizes = [len(s) for s in subsets]
    finding.data = {
        "fractions": [round(n / len(train), 4) for n in sizes],
        "train_rows": sizes,
        "rmse": {name: [float(e[j]) for e in errors] for j, name in enumerate(ctx.data.targets)},
        "normalised_rmse": normalised,
        "baseline_rmse": {name: float(b) for name, b in zip(ctx.data.targets, baseline)},
        "alpha": alphas,
        "heldout_rows": len(held),
        "model": f"ridge regression (RidgeCV) on frozen {ctx.recipe.model.name} embeddings",
    }
    _verdict(finding, ctx.data.targets, float((baseline / scale).mean()))
    finding.figures["held-out RMSE against training rows (ridge probe)"] = _plot(sizes, errors, baseline,
                                                                                 ctx.data.targets)
    return finding


def _verdict(finding: Finding, names: list[str], baseline: float) -> None:
    """Per-target RMSE lines, then "would more data help": still falling over the last step, or flat."""
    data = finding.data
    for name in names:
        curve = ", ".join(f"{n} rows {e:.4g}" for n, e in zip(data["train_rows"], data["rmse"][name]))
        finding.summary.append(f"held-out RMSE of {name}: {curve} (predicting the train mean: "
                               f"{data['baseline_rmse'][name]:.4g})")
    scores = data["normalised_rmse"]
    fall = (scores[-2] - scores[-1]) / max(scores[-2], 1e-12)
    if fall > FALLING:
        finding.summary.append(f"still falling ({fall:.1%} lower over the last step): more labelled data is "
                               "likely to help")
        finding.recommendations.append("collect or label more training data; the curve has not flattened")
    else:
        finding.summary.append(f"flat at the end ({-fall:+.1%} over the last step): more of the same data is "
                               "unlikely to help much")
    finding.summary.append(against_mean(scores[-1], baseline))


def against_mean(score: float, baseline: float) -> str:
    """How the probe's final normalised RMSE compares with predicting the train mean, worded by its sign:
    worse, no better (within TIE), barely better (within BARELY) or better."""
    ratio = score / max(baseline, 1e-12)  # RMSE over the mean's: under 1 is better
    change = ratio - 1.0
    if ratio < 1.0 - BARELY:
        return f"the probe is better than predicting the mean ({change:+.1%} RMSE): the embeddings carry the target"
    word = "worse than" if ratio > 1.0 + TIE else "no better than" if ratio >= 1.0 - TIE else "barely better than"
    return (f"the probe is {word} predicting the mean ({change:+.1%} RMSE): the frozen embeddings carry little of "
            "the target, so fine-tuning (or another backbone) has to find it")


def _plot(sizes: list[int], errors: list[np.ndarray], baseline: np.ndarray, names: list[str]) -> bytes:
    """RMSE per target against training rows; dotted: predicting the train mean."""
    fig, ax = figure()
    for j, name in enumerate(names):
        line = ax.plot(sizes, [e[j] for e in errors], marker="o", label=name)[0]
        ax.axhline(baseline[j], color=line.get_color(), linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training rows")
    ax.set_ylabel("held-out RMSE")
    ax.legend()
    ax.grid(alpha=0.3)
    return to_png(fig)
