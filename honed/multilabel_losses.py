"""Multi-label losses: each takes (rows, labels) logits and multi-hot float targets, one independent
sigmoid per label. honed.losses registers `MULTILABEL_LOSSES` in its registry as serving task multilabel
(this module imports nothing of honed, so the registry's module can import it).

    bce        binary cross-entropy with logits (multi-label's default); `pos_weight: balanced` weighs
               each label's positive rows by its negatives / positives in training (torch's
               `pos_weight`: the class-weighted variant), or one weight per label
    focal_bce  the sigmoid focal loss of Lin et al. 2017 (RetinaNet): BCE times (1 - p_t)^gamma, with
               an optional alpha weighing positives (alpha) against negatives (1 - alpha)

Both take `label_smoothing: e`, which moves each target towards 1/2: t (1 - e) + e / 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _number(value: Any, name: str, low: float | None = None, high: float | None = None) -> float:
    """`value` as a float, checked: a number (not a bool or NaN), inside [low, high) where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value}")
    if high is not None and value >= high:
        raise ValueError(f"{name} must be below {high:g}, got {value}")
    return float(value)


def smoothed(target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Multi-hot targets in float32, moved towards 1/2 by `label_smoothing`."""
    t = target.float()
    return t * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else t


def sigmoid_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, alpha: float | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The mean over rows and labels of -a_t (1 - p_t)^gamma log p_t, p_t the probability of the target
    side (torchvision.ops.sigmoid_focal_loss's terms). gamma 0 without alpha is BCE with logits exactly."""
    x, t = logits.float(), smoothed(target, label_smoothing).reshape(logits.shape)
    terms = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if gamma:
        p = torch.sigmoid(x)
        terms = terms * (1.0 - (p * t + (1.0 - p) * (1.0 - t))).clamp_min(1e-12).pow(gamma)
    if alpha is not None:
        terms = terms * (alpha * t + (1.0 - alpha) * (1.0 - t))
    return terms.mean()


def positive_weights(
    class_counts: Sequence[int], train_rows: int | None, scheme: str | Sequence[float]
) -> torch.Tensor:
    """One float32 weight per label for its positive terms: 'balanced' is negatives / positives among the
    training rows (torch's suggested `pos_weight`), or the given list (one non-negative number per label)."""
    if not isinstance(scheme, str):
        if not isinstance(scheme, Sequence) or len(scheme) != len(class_counts):
            raise ValueError(f"pos_weight as a list needs one number per label ({len(class_counts)}), got {scheme!r}")
        return torch.tensor([_number(v, "pos_weight", 0.0) for v in scheme], dtype=torch.float32)
    if scheme != "balanced":
        raise ValueError(f"pos_weight must be 'balanced' or a list of numbers, one per label; got '{scheme}'")
    if not train_rows:
        raise ValueError("pos_weight 'balanced' needs the number of training rows")
    empty = [i for i, c in enumerate(class_counts) if c <= 0]
    if empty:
        raise ValueError(f"label {empty[0]} (label order) has no positive training row; pos_weight 'balanced' "
                         "needs every label")
    counts = torch.tensor(class_counts, dtype=torch.float64)
    return ((train_rows - counts) / counts).float()


def bce(
    class_counts: tuple[int, ...] = (),
    train_rows: int | None = None,
    pos_weight: str | list[float] | None = None,
    label_smoothing: float = 0.0,
) -> Loss:
    """Binary cross-entropy with logits, averaged over rows and labels; `pos_weight` as in positive_weights."""
    eps = _number(label_smoothing, "label_smoothing", 0.0, 1.0)
    weights = positive_weights(class_counts, train_rows, pos_weight) if pos_weight is not None else None
    copies: dict[torch.device, torch.Tensor] = {}  # the weights copied once to each device, not once per step

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        x = logits.float()
        w = None if weights is None else copies.setdefault(x.device, weights.to(x.device))
        return F.binary_cross_entropy_with_logits(x, smoothed(target, eps).reshape(x.shape), pos_weight=w)

    return loss


def focal_bce(gamma: float = 2.0, alpha: float | None = None, label_smoothing: float = 0.0) -> Loss:
    """The sigmoid focal loss; `alpha` in (0, 1) weighs positive terms (RetinaNet used 0.25), None: no weighting."""
    gamma, eps = _number(gamma, "gamma", 0.0), _number(label_smoothing, "label_smoothing", 0.0, 1.0)
    if alpha is not None and not 0.0 < _number(alpha, "alpha") < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return lambda logits, target: sigmoid_focal_loss(logits, target, gamma, alpha, eps)


MULTILABEL_LOSSES: dict[str, Callable[..., Loss]] = {"bce": bce, "focal_bce": focal_bce}
