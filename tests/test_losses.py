"""Losses: class-weight formulas, focal loss, soft targets, label smoothing, user losses by import path, bad input."""

from __future__ import annotations

import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from sklearn.utils.class_weight import compute_class_weight

import honed
from honed.cli import main
from honed.errors import HonedError
from honed.losses import LOSSES, build_loss, class_weights, focal_loss
from honed.recipe import LossSpec
from tests.conftest import tiny_recipe

COUNTS = (6, 3, 1)


def _batch(n: int = 6, k: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=gen) * 2, torch.tensor([0, 1, 2, 2, 1, 0][:n])


def test_balanced_weights_match_sklearn_and_hand_numbers() -> None:
    weights = class_weights(COUNTS, "balanced")
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])  # n / (k * n_c), n = 10, k = 3
    y = np.repeat(np.arange(3), COUNTS)
    assert weights.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(3), y=y).tolist())


def test_inverse_sqrt_weights_average_one() -> None:
    raw = [1 / math.sqrt(6), 1 / math.sqrt(3), 1.0]  # 0.408248, 0.577350, 1.0; sum 1.985598
    assert class_weights(COUNTS, "inverse_sqrt").tolist() == pytest.approx([0.616814, 0.872307, 1.510879], abs=1e-6)
    assert class_weights(COUNTS, "inverse_sqrt").tolist() == pytest.approx([3 * w / sum(raw) for w in raw])


def test_effective_number_weights_sum_to_k() -> None:
    # beta 0.9: (1 - 0.9) / (1 - 0.9^n) = 0.213420, 0.369004, 1.0 (sum 1.582424), scaled to sum 3
    assert class_weights(COUNTS, "effective", beta=0.9).tolist() == pytest.approx(
        [0.404608, 0.699567, 1.895826], abs=1e-6
    )
    default = class_weights(COUNTS, "effective")  # beta 0.999
    raw = [(1 - 0.999) / (1 - 0.999**c) for c in COUNTS]
    assert default.tolist() == pytest.approx([3 * w / sum(raw) for w in raw])


def test_weight_list_and_its_errors() -> None:
    assert class_weights(COUNTS, [1, 2.5, 0]).tolist() == [1.0, 2.5, 0.0]
    with pytest.raises(ValueError, match="2 values but the training data has 3 classes"):
        class_weights(COUNTS, [1.0, 2.0])
    with pytest.raises(ValueError, match="class 1 .* has no training rows"):
        class_weights((4, 0, 2), "balanced")
    with pytest.raises(ValueError, match="did you mean 'balanced'"):
        class_weights(COUNTS, "balancd")


def test_weighted_cross_entropy_is_torchs_for_hard_labels() -> None:
    logits, labels = _batch()
    w = class_weights(COUNTS, "balanced")
    for eps in (0.0, 0.1):
        loss = LOSSES.build("weighted_cross_entropy", class_counts=COUNTS, label_smoothing=eps)
        assert loss(logits, labels) == pytest.approx(
            float(F.cross_entropy(logits, labels, weight=w, label_smoothing=eps)), rel=1e-6
        )


def test_focal_matches_a_hand_computation() -> None:
    logits = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]]
    labels = [0, 2]
    gamma, alpha = 2.0, [0.25, 1.0, 2.0]
    total = 0.0
    for row, y in zip(logits, labels):
        p = math.exp(row[y]) / sum(math.exp(v) for v in row)
        total += -alpha[y] * (1 - p) ** gamma * math.log(p)
    got = focal_loss(torch.tensor(logits), torch.tensor(labels), gamma, alpha)
    assert float(got) == pytest.approx(total / 2, rel=1e-6)
    soft = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.5, 0.5]])  # -sum_c a_c t_c (1 - p_c)^gamma log p_c
    p = torch.tensor(logits).softmax(-1).double()
    hand = -(soft.double() * torch.tensor(alpha).double() * (1 - p) ** gamma * p.log()).sum(-1).mean()
    assert float(focal_loss(torch.tensor(logits), soft, gamma, alpha)) == pytest.approx(float(hand), rel=1e-6)


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy() -> None:
    logits, labels = _batch()
    assert torch.equal(focal_loss(logits, labels, 0.0), F.cross_entropy(logits, labels))
    smoothed = LOSSES.build("focal", class_counts=COUNTS, gamma=0, label_smoothing=0.1)
    assert torch.equal(smoothed(logits, labels), F.cross_entropy(logits, labels, label_smoothing=0.1))
    ones = torch.ones(3)  # the general formula (alpha all 1) agrees to float32 rounding
    assert torch.allclose(focal_loss(logits, labels, 0.0, ones), F.cross_entropy(logits, labels), rtol=0, atol=1e-6)


def test_focal_alpha_forms() -> None:
    logits, labels = _batch(4, 2)
    labels = torch.tensor([0, 1, 1, 0])
    assert torch.allclose(focal_loss(logits, labels, 1.0, 0.25), focal_loss(logits, labels, 1.0, [0.75, 0.25]))
    balanced = LOSSES.build("focal", class_counts=(3, 1), alpha="balanced", gamma=1.0)
    assert torch.allclose(balanced(logits, labels), focal_loss(logits, labels, 1.0, [4 / 6, 4 / 2]))
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        focal_loss(logits, labels, -1.0)
    with pytest.raises(ValueError, match="needs two classes"):
        focal_loss(*_batch(), 2.0, 0.25)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("cross_entropy", {}),
        ("cross_entropy", {"label_smoothing": 0.1}),
        ("weighted_cross_entropy", {"weights": "effective"}),
        ("weighted_cross_entropy", {"weights": [1, 2, 3], "label_smoothing": 0.2}),
        ("focal", {}),
        ("focal", {"gamma": 0.5, "alpha": "balanced", "label_smoothing": 0.1}),
    ],
)
def test_one_hot_soft_targets_equal_hard_labels_in_float32(name: str, kwargs: dict) -> None:
    loss = build_loss(LossSpec(name=name, **kwargs), COUNTS)
    logits, labels = _batch()
    hard = loss(logits.half(), labels)
    assert hard.dtype == torch.float32
    assert torch.allclose(hard, loss(logits.half(), F.one_hot(labels, 3).half()), atol=1e-6)
    mixed = 0.6 * F.one_hot(labels, 3) + 0.4 * F.one_hot(labels.roll(1), 3)
    value = loss(logits, mixed)
    assert torch.isfinite(value) and value > 0


USER_MODULE = """
import torch
import torch.nn.functional as F

CALLS = []


class ScaledLoss(torch.nn.Module):
    def __init__(self, scale: float, class_counts: tuple = ()) -> None:
        super().__init__()
        self.scale, self.counts = scale, class_counts

    def forward(self, logits, target):
        CALLS.append(tuple(target.shape))
        return self.scale * F.cross_entropy(logits.float(), target)


def make_loss(scale: float = 1.0):
    return lambda logits, target: scale * F.cross_entropy(logits.float(), target)


def not_a_factory():
    return 0.5
"""


@pytest.fixture
def user_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / "honed_test_user_losses.py").write_text(textwrap.dedent(USER_MODULE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "honed_test_user_losses", raising=False)
    return "honed_test_user_losses"


def test_user_loss_class_or_factory_by_import_path(user_losses: str) -> None:
    logits, labels = _batch()
    module_loss = build_loss(LossSpec(name=f"{user_losses}:ScaledLoss", scale=2.0), COUNTS)
    assert isinstance(module_loss, torch.nn.Module) and module_loss.counts == COUNTS
    assert float(module_loss(logits, labels)) == pytest.approx(2 * float(F.cross_entropy(logits, labels)))
    factory_loss = build_loss(LossSpec(name=f"{user_losses}:make_loss", scale=3.0), COUNTS)
    assert float(factory_loss(logits, labels)) == pytest.approx(3 * float(F.cross_entropy(logits, labels)))
    with pytest.raises(HonedError, match=r"^loss.name '.*make_loss': .*unexpected keyword argument 'gamma'"):
        build_loss(LossSpec(name=f"{user_losses}:make_loss", gamma=2), COUNTS)
    with pytest.raises(HonedError, match=r"^loss.name '.*CALLS': names a list, not a loss class or factory"):
        build_loss(LossSpec(name=f"{user_losses}:CALLS"), COUNTS)
    with pytest.raises(HonedError, match=r"^loss.name '.*not_a_factory': its factory gave a float, not a loss"):
        build_loss(LossSpec(name=f"{user_losses}:not_a_factory"), COUNTS)


def _fit(tiny_bert: str, text_csv: Path, run_dir: Path, loss: dict) -> honed.Run:
    return honed.fit(tiny_recipe(tiny_bert, text_csv, run_dir, loss=loss), quiet=True)


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "focal", "gamma": 2.0, "alpha": "balanced"},
        {"name": "weighted_cross_entropy", "weights": "inverse_sqrt", "label_smoothing": 0.1},
    ],
    ids=["focal", "weighted_cross_entropy"],
)
def test_fit_with_loss(loss: dict, tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    run = _fit(tiny_bert, text_csv, tmp_path / "run", loss)
    assert run.metrics["epochs_run"] == 2 and math.isfinite(run.history[-1]["train_loss"])
    assert yaml.safe_load((run.run_dir / "recipe.yaml").read_text())["loss"] == loss


def test_fit_with_user_loss_class(user_losses: str, tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    run = _fit(tiny_bert, text_csv, tmp_path / "run", {"name": f"{user_losses}:ScaledLoss", "scale": 0.5})
    calls = sys.modules[user_losses].CALLS
    assert run.metrics["steps"] == len(calls) > 0 and calls[0] == (8,)


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["loss.name=focal", "loss.gamma=-1"], "loss.name 'focal': gamma must be >= 0"),
        (["loss.name=focal", "loss.alpha=[1, 2, 3]"], "alpha has 3 values but the training data has 2 classes"),
        (["loss.name=focal", "loss.alpha=sometimes"], "alpha must be a number, a list of numbers or 'balanced'"),
        (
            ["loss.name=weighted_cross_entropy", "loss.weights=[1, 2, 3]"],
            "weights has 3 values but the training data has 2 classes",
        ),
        (["loss.name=weighted_cross_entropy", "loss.weights=balancd"], "did you mean 'balanced'"),
        (["loss.name=weighted_cross_entropy", "loss.beta=0.9"], "beta applies only to weights: effective"),
        (["loss.label_smoothing=1.5"], "loss.name 'cross_entropy': label_smoothing must be in [0, 1)"),
        (["loss.name=focal", "loss.gama=2"], "unexpected keyword argument 'gama'"),
        (["loss.name=focla"], "loss.name: unknown loss 'focla' (did you mean 'focal'?)"),
        (["loss.name=nope.mod:Loss"], "loss.name: cannot import 'nope.mod:Loss'"),
    ],
)
def test_bad_loss_settings_are_one_line_exit_2(
    overrides: list[str], named: str, tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert, text_csv, tmp_path / "run")), encoding="utf-8")
    assert main(["train", str(recipe), *overrides, "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error: loss.") and named in lines[0], lines
    assert not (tmp_path / "run").exists()
