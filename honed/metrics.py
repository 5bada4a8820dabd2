"""Scores shared by training, inference and reports: loss, accuracy, macro-F1 for classification;
RMSE, MAE, R², Pearson and Spearman for regression; micro/macro-F1, per-label AP and mAP for multi-label
(with the per-label decision thresholds tuned on val); `TASKS` says which a task uses.

A bottom-layer module (no honed imports) so the training loop can score val without importing
the evaluate layer above it. torch, scipy and scikit-learn are imported when a score is computed: the
recipe reads `TASKS` and must stay quick to import."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    import torch.nn.functional as F
    from sklearn.metrics import f1_score

    logits = logits.float()
    predicted = logits.argmax(dim=-1)
    return {
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((predicted == labels).float().mean()),
        "macro_f1": float(f1_score(labels.numpy(), predicted.numpy(), average="macro", zero_division=0)),
    }


def improved(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value > best if mode == "max" else value < best


def probability_log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-12)."""
    return -float(np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0))))


def probability_metrics(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 of (rows, classes) probabilities against class indices, in float64
    (ensembles combine probabilities, not logits)."""
    from sklearn.metrics import f1_score

    predicted = probs.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }


def regression_metrics(
    outputs: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    names: Sequence[str] = (),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> dict[str, float]:
    """RMSE, MAE, R², Pearson and Spearman of (rows, targets) predictions, averaged over the targets and,
    with several targets, per target (`rmse_NAME` ...). `mean`/`std` un-standardise both sides first, so
    the figures are in the targets' own units; `loss` is the mean squared error in standardised units
    (what the default MSE loss minimises)."""
    pred, true = _as_2d(outputs), _as_2d(targets)
    loss = float(np.mean((pred - true) ** 2))
    if mean is not None and std is not None:
        pred, true = pred * np.asarray(std) + np.asarray(mean), true * np.asarray(std) + np.asarray(mean)
    per = [{name: fn(true[:, j], pred[:, j]) for name, fn in REGRESSION_SCORES.items()} for j in range(true.shape[1])]
    out = {"loss": loss, **{name: float(np.mean([p[name] for p in per])) for name in REGRESSION_SCORES}}
    if len(per) > 1:
        labels = list(names) if len(names) == len(per) else [str(j) for j in range(len(per))]
        out.update({f"{name}_{label}": p[name] for label, p in zip(labels, per) for name in REGRESSION_SCORES})
    return out


def _as_2d(values: torch.Tensor | np.ndarray) -> np.ndarray:
    array = values.double().cpu().numpy() if hasattr(values, "double") else np.asarray(values, dtype=np.float64)
    return array.reshape(len(array), -1)


def _correlation(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """scipy.stats' `name` correlation, 0 rather than NaN when either side is constant (an untrained
    model's outputs)."""

    def score(true: np.ndarray, pred: np.ndarray) -> float:
        if len(true) < 2 or np.ptp(true) == 0 or np.ptp(pred) == 0:
            return 0.0
        import scipy.stats

        return float(getattr(scipy.stats, name)(true, pred)[0])

    return score


def _sklearn(name: str, root: bool = False) -> Callable[[np.ndarray, np.ndarray], float]:
    """scikit-learn's metric `name` (its square root with `root`); R² of fewer than two rows is 0."""

    def score(true: np.ndarray, pred: np.ndarray) -> float:
        import sklearn.metrics

        if name == "r2_score" and len(true) < 2:
            return 0.0
        value = float(getattr(sklearn.metrics, name)(true, pred))
        return float(np.sqrt(value)) if root else value

    return score


REGRESSION_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "rmse": _sklearn("mean_squared_error", root=True),
    "mae": _sklearn("mean_absolute_error"),
    "r2": _sklearn("r2_score"),
    "pearson": _correlation("pearsonr"),
    "spearman": _correlation("spearmanr"),
}


THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95: multi-label decision thresholds


def multilabel_metrics(
    logits: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str] = (),
    thresholds: Sequence[float] | None = None,
) -> dict[str, float]:
    """label_set_metrics of (rows, labels) logits against multi-hot targets, plus `loss`: the mean
    binary cross-entropy with logits (what the default `bce` loss minimises)."""
    import torch
    import torch.nn.functional as F

    loss = float(F.binary_cross_entropy_with_logits(logits.float(), targets.float()))
    probs = torch.sigmoid(logits.double()).numpy()
    return {"loss": loss, **label_set_metrics(probs, targets.numpy(), names, thresholds)}


def label_set_metrics(
    probs: np.ndarray, targets: np.ndarray, names: Sequence[str] = (), thresholds: Sequence[float] | None = None
) -> dict[str, float]:
    """Micro- and macro-F1 of the label sets `probs >= thresholds` (0.5 each when None), mAP (the mean
    average precision over labels with a positive row) and, per label NAME, `precision_NAME`,
    `recall_NAME`, `f1_NAME` and `ap_NAME` (AP only for a label with positives: it is undefined without)."""
    from sklearn.metrics import average_precision_score, f1_score, precision_recall_fscore_support

    probs, true = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    cut = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    predicted = probs >= cut
    labels = list(names) if len(names) == probs.shape[1] else [str(j) for j in range(probs.shape[1])]
    precision, recall, f1, _ = precision_recall_fscore_support(true, predicted, average=None, zero_division=0)
    aps = {name: float(average_precision_score(true[:, j], probs[:, j]))
           for j, name in enumerate(labels) if true[:, j].any()}
    out = {
        "micro_f1": float(f1_score(true, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(true, predicted, average="macro", zero_division=0)),
        "map": float(np.mean(list(aps.values()))) if aps else 0.0,
    }
    for j, name in enumerate(labels):
        out.update({f"precision_{name}": float(precision[j]), f"recall_{name}": float(recall[j]),
                    f"f1_{name}": float(f1[j])})
        if name in aps:
            out[f"ap_{name}"] = aps[name]
    return out


def probability_bce(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean binary cross-entropy of (rows, labels) probabilities (clipped at 1e-12) against multi-hot targets."""
    p, y = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12), np.asarray(targets, dtype=np.float64)
    return -float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def best_thresholds(
    probs: np.ndarray, targets: np.ndarray, grid: Sequence[float] = THRESHOLD_GRID
) -> tuple[float, ...]:
    """Per label, the threshold of `grid` that maximises that label's F1 on (rows, labels) probabilities
    (ties go to the one nearest 0.5); 0.5 for a label without a positive row, which has no F1 to maximise."""
    probs, true = np.asarray(probs, dtype=np.float64), np.asarray(targets) > 0.5
    cuts = np.asarray(grid, dtype=np.float64)
    out = []
    for j in range(probs.shape[1]):
        if not true[:, j].any():
            out.append(0.5)
            continue
        predicted = probs[:, j][None, :] >= cuts[:, None]  # (thresholds, rows)
        tp = (predicted & true[:, j]).sum(axis=1)
        f1 = 2 * tp / (predicted.sum(axis=1) + true[:, j].sum())
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        out.append(float(cuts[best[np.argmin(np.abs(cuts[best] - 0.5))]]))
    return tuple(out)


@dataclass(frozen=True)
class TaskMetrics:
    """What a task scores and how: its metric function (outputs, targets, **scale), the default
    `train.metric` that picks the best checkpoint and the default loss."""

    score: Callable[..., dict[str, float]]
    names: tuple[str, ...]
    default_metric: str
    default_loss: str  # the recipe's `loss.name` when it names none


TASKS: dict[str, TaskMetrics] = {
    "classification": TaskMetrics(
        lambda logits, labels, **_: classification_metrics(logits, labels),
        ("accuracy", "macro_f1", "loss"),
        "accuracy",
        "cross_entropy",
    ),
    "regression": TaskMetrics(regression_metrics, (*REGRESSION_SCORES, "loss"), "rmse", "mse"),
    "multilabel": TaskMetrics(multilabel_metrics, ("micro_f1", "macro_f1", "map", "loss"), "micro_f1", "bce"),
}

# Which way is better, for metrics whose direction is fixed: `train.mode` and early stopping follow it
# when they are not set. Classification's metrics keep their historical default (train.mode, max).
DIRECTION: dict[str, str] = {"rmse": "min", "mae": "min", "r2": "max", "pearson": "max", "spearman": "max",
                             "micro_f1": "max", "map": "max"}


def task_metrics(task: str, outputs: torch.Tensor, targets: torch.Tensor, **scale: Any) -> dict[str, float]:
    """The metrics of `task` (a key of TASKS); `scale` is what the task's label map gives (`LabelMap.scale`)."""
    return TASKS[task].score(outputs, targets, **scale)
