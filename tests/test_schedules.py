"""Schedules are pure functions of the step: check them against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from honed.train.optim import no_decay
from honed.train.schedules import SCHEDULES, warmup_steps


def test_warmup_is_linear_then_linear_decay() -> None:
    f = SCHEDULES.build("linear", total=110, warmup=10)
    assert f(0) == pytest.approx(1 / 11)
    assert f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0)


def test_cosine_halfway_is_half() -> None:
    f = SCHEDULES.build("cosine", total=100, warmup=0)
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.5)
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_warmup_ratio_or_steps() -> None:
    assert warmup_steps(200, 0.1, None) == 20
    assert warmup_steps(200, 0.1, 7) == 7


def test_no_decay_for_bias_and_norm() -> None:
    assert no_decay("encoder.layer.0.output.LayerNorm.weight", torch.zeros(4), ["bias", "norm"])
    assert no_decay("classifier.bias", torch.zeros(4), ["bias", "norm"])
    assert not no_decay("classifier.weight", torch.zeros(4, 4), ["bias", "norm"])
