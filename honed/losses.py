"""Losses by name: `loss(logits, target) -> scalar`. Factories take flat keyword arguments.

Every loss takes either hard labels (N,) or soft targets (N, C) of class probabilities (what mixup
and cutmix produce), and computes in float32 whatever precision the logits come in. One-hot soft
targets give exactly the loss of the hard labels.

Label smoothing works the same way in every loss: `label_smoothing: e` replaces the target t (hard
labels one-hot first) by (1 - e) * t + e / C before the loss, as torch's `cross_entropy` does; class
weights and the focal factor then apply to the smoothed target.

A user's own loss is named by import path, `loss: {name: "mypkg.losses:MyLoss", ...}`: a class (an
nn.Module whose forward takes logits and target) or a factory function returning such a callable;
the other keys are its keyword arguments, and it receives `class_counts` if it has that parameter.

Each built-in loss declares the tasks it serves (`@for_tasks`, read by `build_loss`): the classification
losses above (and with them class weights, focal and label smoothing) are refused for a regression
recipe in one line. Regression losses (mse, huber, l1) take (rows, targets) outputs and standardised
float targets; multi-label losses (bce, focal_bce: honed/multilabel_losses.py) take (rows, labels) logits
and multi-hot targets. A user's loss declares nothing and is trusted with any task.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from honed.errors import HonedError, did_you_mean
from honed.multilabel_losses import MULTILABEL_LOSSES
from honed.proposals import Change, Situation, proposes
from honed.registry import Registry

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")
WEIGHT_SCHEMES = ("balanced", "inverse_sqrt", "effective")
F_ = Callable[..., Any]


def for_tasks(*tasks: str) -> Callable[[F_], F_]:
    """Declare the tasks a loss factory serves (its `tasks` attribute); undeclared factories serve any."""

    def mark(factory: F_) -> F_:
        factory.tasks = frozenset(tasks)  # type: ignore[attr-defined]
        return factory

    return mark


def serves(factory: Any, task: str) -> bool:
    """Whether a loss factory may train `task` (by its declared `tasks`; a user's undeclared loss may)."""
    tasks = getattr(factory, "tasks", None)
    return tasks is None or task in tasks


def soft_targets(target: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """(N, C) float32 class probabilities from hard labels (N,) or soft targets (N, C), smoothed."""
    probs = F.one_hot(target.long(), num_classes).float() if target.ndim == 1 else target.float()
    return probs * (1.0 - label_smoothing) + label_smoothing / num_classes if label_smoothing else probs


def weighted_cross_entropy_loss(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Class-weighted cross-entropy: sum_i sum_c w_c t'_ic (-log p_ic) / sum_i sum_c w_c t_ic.

    t' is the smoothed target, t the target before smoothing. For hard labels this is exactly
    torch's `cross_entropy(weight=w, label_smoothing=e)` (a mean weighted by each row's class
    weight); soft targets weight each row by its expected class weight, so one-hot rows agree.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    raw = soft_targets(target, log_p.shape[-1])
    smoothed = soft_targets(target, log_p.shape[-1], label_smoothing)
    weights = weights.to(log_p.device, torch.float32)
    return -(smoothed * weights * log_p).sum() / (raw @ weights).sum()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | Sequence[float] | torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), softmax form: the mean over rows of -sum_c a_c t_c (1 - p_c)^gamma log p_c.

    `alpha` weighs classes: None (all 1), one weight per class, or a float a for two classes,
    meaning [1 - a, a] (a weighs class index 1, as in RetinaNet). With gamma 0 and no alpha this
    is cross-entropy exactly. Rows are averaged plainly (not by their alpha, unlike weighted CE).
    """
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    if not gamma and alpha is None:  # plain cross-entropy: the same call, so the same number to the last bit
        return F.cross_entropy(
            logits.float(), target if target.ndim == 1 else target.float(), label_smoothing=label_smoothing
        )
    log_p = F.log_softmax(logits.float(), dim=-1)
    t = soft_targets(target, log_p.shape[-1], label_smoothing)
    terms = -t * log_p
    if gamma:  # 1 - p from log p stays accurate near p = 1; the floor keeps gradients finite for gamma < 1
        terms = terms * (-torch.expm1(log_p)).clamp_min(1e-12).pow(gamma)
    if alpha is not None:
        terms = terms * alpha_vector(alpha, log_p.shape[-1]).to(log_p.device)
    return terms.sum(dim=-1).mean()


def alpha_vector(alpha: float | Sequence[float] | torch.Tensor, num_classes: int) -> torch.Tensor:
    """Focal alpha as one float32 weight per class."""
    if isinstance(alpha, torch.Tensor):
        return alpha.float()
    if isinstance(alpha, (int, float)):
        if num_classes != 2:
            raise ValueError(
                f"alpha as one number needs two classes, the training data has {num_classes}; "
                "give one weight per class or 'balanced'"
            )
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha as one number must be in (0, 1), got {alpha}")
        return torch.tensor([1.0 - alpha, alpha])
    return _per_class(alpha, num_classes, "alpha")


def class_weights(counts: Sequence[int], scheme: str | Sequence[float], beta: float | None = None) -> torch.Tensor:
    """One float32 weight per class from the training-label counts (label-index order).

    - a list: used as given (one non-negative weight per class);
    - "balanced": n / (k * n_c), scikit-learn's `compute_class_weight("balanced")`;
    - "inverse_sqrt": 1 / sqrt(n_c), scaled so the weights average 1 over the classes;
    - "effective": Cui et al. 2019, (1 - beta) / (1 - beta^n_c) (beta default 0.999), scaled so
      the weights sum to k (the paper's normalisation; also an average of 1).
    """
    if beta is not None and scheme != "effective":
        raise ValueError("beta applies only to weights: effective")
    if not isinstance(scheme, str):
        return _per_class(scheme, len(counts), "weights")
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(
            f"weights must be a list of numbers or one of {', '.join(WEIGHT_SCHEMES)}; got '{scheme}'"
            f"{did_you_mean(scheme, WEIGHT_SCHEMES)}"
        )
    empty = [i for i, c in enumerate(counts) if c <= 0]
    if empty:
        raise ValueError(
            f"class {empty[0]} (label index order) has no training rows; weights '{scheme}' need every class"
        )
    n = torch.tensor(counts, dtype=torch.float64)
    k = len(counts)
    if scheme == "balanced":
        weights = n.sum() / (k * n)
    elif scheme == "inverse_sqrt":
        weights = n.rsqrt()
        weights = weights * k / weights.sum()
    else:
        beta = 0.999 if beta is None else _number(beta, "beta")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        weights = (1.0 - beta) / (1.0 - torch.tensor(beta, dtype=torch.float64) ** n)
        weights = weights * k / weights.sum()
    return weights.float()


def _per_class(values: Sequence[float] | torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    if isinstance(values, str) or not isinstance(values, (Sequence, torch.Tensor)):
        raise TypeError(f"{name} must be a list of numbers, one per class; got {values!r}")
    weights = torch.tensor([_number(v, name) for v in values], dtype=torch.float32)
    if len(weights) != num_classes:
        raise ValueError(
            f"{name} has {len(weights)} values but the training data has {num_classes} classes; "
            "give one per class in label order"
        )
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError(f"{name} must be finite and >= 0")
    return weights


class _PerDevice:
    """A constant tensor copied once to each device it is used on, not once per step."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.copies = {tensor.device: tensor}

    def on(self, device: torch.device) -> torch.Tensor:
        if device not in self.copies:
            self.copies[device] = next(iter(self.copies.values())).to(device)
        return self.copies[device]


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _smoothing(value: Any) -> float:
    value = _number(value, "label_smoothing")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {value}")
    return value


@LOSSES.register("cross_entropy")
@for_tasks("classification")
def cross_entropy(label_smoothing: float = 0.0) -> Loss:
    """torch's cross-entropy; hard labels or soft targets."""
    eps = _smoothing(label_smoothing)
    return lambda logits, target: F.cross_entropy(
        logits.float(), target if target.ndim == 1 else target.float(), label_smoothing=eps
    )


@LOSSES.register("weighted_cross_entropy")
@for_tasks("classification")
def weighted_cross_entropy(
    class_counts: tuple[int, ...],
    weights: str | list[float] = "balanced",
    beta: float | None = None,
    label_smoothing: float = 0.0,
) -> Loss:
    """Cross-entropy with class weights (see `class_weights` for the schemes)."""
    w, eps = _PerDevice(class_weights(class_counts, weights, beta)), _smoothing(label_smoothing)
    return lambda logits, target: weighted_cross_entropy_loss(logits, target, w.on(logits.device), eps)


@LOSSES.register("focal")
@for_tasks("classification")
def focal(
    class_counts: tuple[int, ...],
    gamma: float = 2.0,
    alpha: float | str | list[float] | None = None,
    label_smoothing: float = 0.0,
) -> Loss:
    """Focal loss; alpha 'balanced' uses the balanced class weights n / (k * n_c)."""
    gamma, eps = _number(gamma, "gamma"), _smoothing(label_smoothing)
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    if isinstance(alpha, str):
        if alpha != "balanced":
            raise ValueError(f"alpha must be a number, a list of numbers or 'balanced'; got '{alpha}'")
        alpha = class_weights(class_counts, "balanced")
    elif alpha is not None:
        alpha = alpha_vector(alpha if isinstance(alpha, list) else _number(alpha, "alpha"), len(class_counts))
    alphas = _PerDevice(alpha) if alpha is not None else None
    return lambda logits, target: focal_loss(logits, target, gamma, alphas.on(logits.device) if alphas else None, eps)


def _targets(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs and targets in float32, both (rows, targets)."""
    output = output.float()
    return output, target.float().reshape(output.shape)


@LOSSES.register("mse")
@for_tasks("regression")
def mse() -> Loss:
    """Mean squared error over rows and targets (regression's default)."""
    return lambda output, target: F.mse_loss(*_targets(output, target))


@LOSSES.register("huber")
@for_tasks("regression")
def huber(delta: float = 1.0) -> Loss:
    """Huber loss: squared below `delta` (in standardised target units), linear beyond: robust to outliers."""
    delta = _number(delta, "delta")
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    return lambda output, target: F.huber_loss(*_targets(output, target), delta=delta)


@LOSSES.register("l1")
@for_tasks("regression")
def l1() -> Loss:
    """Mean absolute error: the median-seeking loss."""
    return lambda output, target: F.l1_loss(*_targets(output, target))


for _name, _factory in MULTILABEL_LOSSES.items():  # bce, focal_bce: honed/multilabel_losses.py
    LOSSES.register(_name)(for_tasks("multilabel")(_factory))


def build_loss(spec: Any, class_counts: tuple[int, ...], task: str = "classification",
               train_rows: int | None = None) -> Loss:
    """The recipe's loss; a factory (or class) that takes `class_counts` gets the training-label counts
    (and one that takes `train_rows`, the number of training rows). A built-in loss that does not serve
    `task` (its `for_tasks` declaration) is refused in one line."""
    kwargs = {k: v for k, v in spec.model_dump().items() if k != "name"}
    factory = LOSSES.get(spec.name, "loss.name")
    if not callable(factory):
        raise HonedError(f"loss.name '{spec.name}': names a {type(factory).__name__}, not a loss class or factory")
    if not serves(factory, task):
        fitting = [name for name in LOSSES.names() if serves(LOSSES.get(name), task)]
        only = "/".join(sorted(factory.tasks))
        raise HonedError(
            f"loss.name '{spec.name}': a {only}-only loss (as are class weights, "
            f"focal and label smoothing); task {task} trains with {', '.join(fitting)}"
        )
    try:
        takes = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        takes = {}
    if "class_counts" in takes:
        kwargs["class_counts"] = class_counts
    if "train_rows" in takes and train_rows is not None:
        kwargs["train_rows"] = train_rows
    loss = LOSSES.build(spec.name, "loss.name", **kwargs)
    if not callable(loss):
        raise HonedError(
            f"loss.name '{spec.name}': its factory gave a {type(loss).__name__}, not a loss; "
            "name a class or a factory returning a callable loss(logits, target)"
        )
    return loss


def _switch_loss(spec: Any, name: str, **settings: Any) -> dict[str, Any]:
    """Overrides that switch the loss to `name` with `settings`: dotted keys when the current loss's other
    settings are ones the new loss takes too (so they compose with a kept label smoothing), else the
    whole section (keeping label smoothing where both take it)."""
    current = {k: v for k, v in spec.model_dump().items() if k != "name"}
    takes = set(inspect.signature(LOSSES.get(name)).parameters)
    if set(current) <= takes:
        return {"loss.name": name, **{f"loss.{k}": v for k, v in settings.items()}}
    kept = {k: v for k, v in current.items() if k == "label_smoothing" and k in takes}
    return {"loss": {"name": name, **kept, **settings}}


@proposes("techniques")
def _climb_candidates(s: Situation) -> list[Change]:
    """Label smoothing, focal loss and class weights for classification; Huber in place of MSE for regression."""
    spec = s.recipe.loss
    if spec.name not in LOSSES:  # a user's own loss: its settings are its own business
        return []
    if s.task == "regression":
        if spec.name != "mse":
            return []
        return [Change("loss huber", _switch_loss(spec, "huber", delta=1.0), group="loss",
                       why="Huber loss: squared for small errors, linear for large ones, so outliers pull less")]
    out = []
    smooths = "label_smoothing" in inspect.signature(LOSSES.get(spec.name)).parameters
    if smooths and not getattr(spec, "label_smoothing", 0.0):
        out.append(Change("loss label_smoothing 0.1", {"loss.label_smoothing": 0.1}, group="label_smoothing",
                          why="softened targets keep the head from over-confident logits on a small training set"))
    if spec.name != "focal":
        out.append(Change("loss focal gamma 2", _switch_loss(spec, "focal", gamma=2.0), group="loss",
                          why="focal loss down-weights the rows the model already gets right"))
    if s.class_skew >= 1.5 and spec.name != "weighted_cross_entropy":
        out.append(Change("loss class-weighted cross entropy", _switch_loss(spec, "weighted_cross_entropy",
                          weights="balanced"), group="loss",
                          why=f"the largest class is {s.class_skew:.1f}x the smallest: balanced class weights"))
    return out
