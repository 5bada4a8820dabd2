"""Schedules are pure functions of the step: check them against their formulas (and torch's OneCycleLR)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from honed.cli import main
from honed.errors import HonedError
from honed.recipe import ScheduleSpec
from honed.train.optim import no_decay
from honed.train.schedules import SCHEDULES, build_schedule, warmup_steps
from tests.conftest import tiny_recipe


def _cos(p: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * p))


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
    assert f(25) == pytest.approx(_cos(0.25))


def test_warmup_ratio_or_steps() -> None:
    assert warmup_steps(200, 0.1, None) == 20
    assert warmup_steps(200, 0.1, 7) == 7


@pytest.mark.parametrize("warmup", [0, 10])
def test_step_size_multiplies_by_gamma_after_warmup(warmup: int) -> None:
    f = SCHEDULES.build("step", total=100 + warmup, warmup=warmup, step_size=30, gamma=0.5)
    if warmup:
        assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    for done, expected in [(0, 1.0), (29, 1.0), (30, 0.5), (59, 0.5), (60, 0.25), (99, 0.125)]:
        assert f(warmup + done) == pytest.approx(expected)


@pytest.mark.parametrize("warmup", [0, 5])
def test_milestones_are_absolute_steps(warmup: int) -> None:
    f = SCHEDULES.build("step", total=100, warmup=warmup, milestones=[20, 50], gamma=0.1)
    assert [f(s) for s in (19, 20, 49, 50, 99)] == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01])
    if warmup:
        assert f(2) == pytest.approx(3 / 6)


@pytest.mark.parametrize("warmup", [0, 8])
def test_cosine_with_restarts_and_floor(warmup: int) -> None:
    f = SCHEDULES.build("cosine", total=90 + warmup, warmup=warmup, cycles=3, min_ratio=0.1)
    if warmup:
        assert f(3) == pytest.approx(4 / 9)
    for done, expected in [
        (0, 1.0),
        (15, 0.1 + 0.9 * 0.5),
        (29, 0.1 + 0.9 * _cos(29 / 30)),
        (30, 1.0),
        (45, 0.55),
        (60, 1.0),
        (75, 0.55),
        (90, 0.1),
        (200, 0.1),
    ]:
        assert f(warmup + done) == pytest.approx(expected), done


def test_one_cosine_cycle_is_plain_cosine() -> None:
    plain, cycled = (
        SCHEDULES.build("cosine", total=40, warmup=4),
        SCHEDULES.build("cosine", total=40, warmup=4, cycles=1),
    )
    assert [plain(s) for s in range(41)] == [cycled(s) for s in range(41)]


@pytest.mark.parametrize(("warmup", "power", "end"), [(0, 1.0, 0.0), (0, 2.0, 0.1), (10, 0.5, 0.2)])
def test_polynomial(warmup: int, power: float, end: float) -> None:
    f = SCHEDULES.build("polynomial", total=100 + warmup, warmup=warmup, power=power, end_ratio=end)
    for done in (0, 25, 50, 99, 100):
        p = done / 100
        assert f(warmup + done) == pytest.approx((1 - p) ** power * (1 - end) + end)
    if warmup:
        assert f(4) == pytest.approx(5 / 11)


@pytest.mark.parametrize(
    ("total", "warmup", "pct_start", "div", "final_div"),
    [(100, 30, None, 25.0, 1e4), (100, 0, None, 25.0, 1e4), (37, 0, 0.3, 10.0, 100.0), (7, 2, None, 4.0, 2.0)],
)
def test_one_cycle_is_torchs_one_cycle(
    total: int, warmup: int, pct_start: float | None, div: float, final_div: float
) -> None:
    extra = {} if pct_start is None else {"pct_start": pct_start}
    f = SCHEDULES.build("one_cycle", total=total, warmup=warmup, div=div, final_div=final_div, **extra)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    pct = pct_start if pct_start is not None else (warmup / total if warmup else 0.25)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=3e-4,
        total_steps=total,
        pct_start=pct,
        div_factor=div,
        final_div_factor=final_div,
        anneal_strategy="cos",
        cycle_momentum=False,
    )
    for step in range(total):
        assert f(step) * 3e-4 == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-15), step
        opt.step()
        sched.step()
    assert f(0) == pytest.approx(1 / div) and f(total - 1) == pytest.approx(1 / (div * final_div))


@pytest.mark.parametrize(
    ("name", "kwargs", "named"),
    [
        ("step", {"step_size": 10, "gamma": -1}, "gamma"),
        ("step", {"step_size": 10, "gamma": 1.5}, "gamma"),
        ("step", {"step_size": 0}, "step_size"),
        ("step", {"step_size": 2.5}, "step_size"),
        ("step", {}, "step_size"),
        ("step", {"step_size": 5, "milestones": [10]}, "step_size"),
        ("step", {"milestones": [30, 10]}, "milestones"),
        ("step", {"milestones": "10"}, "milestones"),
        ("cosine", {"cycles": 0}, "cycles"),
        ("cosine", {"cycles": 1.5}, "cycles"),
        ("cosine", {"min_ratio": 2}, "min_ratio"),
        ("one_cycle", {"div": 0}, "div"),
        ("one_cycle", {"final_div": -3}, "final_div"),
        ("one_cycle", {"pct_start": 0.3}, "pct_start"),
        ("polynomial", {"power": 0}, "power"),
        ("polynomial", {"power": "two"}, "power"),
        ("polynomial", {"end_ratio": 1.5}, "end_ratio"),
    ],
)
def test_bad_settings_name_the_key(name: str, kwargs: dict, named: str) -> None:
    spec = ScheduleSpec(name=name, warmup_steps=5, **kwargs)
    with pytest.raises(HonedError, match=rf"^schedule\.{named}: .*\(schedule '{name}'\)$"):
        build_schedule(spec, 100)


def test_unknown_setting_suggests_the_right_one() -> None:
    with pytest.raises(
        HonedError, match=r"schedule\.gama: not a setting of schedule 'step' \(did you mean 'gamma'\?\)"
    ):
        build_schedule(ScheduleSpec(name="step", gama=0.5, step_size=3), 100)
    with pytest.raises(HonedError, match=r"schedule\.cycles: not a setting of schedule 'linear'"):
        build_schedule(ScheduleSpec(name="linear", cycles=2), 100)


def test_fine_tune_preset_schedule_builds() -> None:
    f = build_schedule(ScheduleSpec(name="one_cycle", warmup_ratio=0.1), 50)
    assert f(4) == pytest.approx(1.0) and f(0) == pytest.approx(1 / 25)


@pytest.fixture
def recipe_file(tiny_bert: str, text_csv: Path, tmp_path: Path) -> str:
    recipe = tiny_recipe(
        tiny_bert, text_csv, tmp_path / "run", train__epochs=1, schedule={"name": "step", "step_size": 2}
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("schedule.gamma=-1", "schedule.gamma: must be in (0, 1], got -1 (schedule 'step')"),
        ("schedule.warmup_steps=1000", "schedule.warmup_steps: 1000 warmup steps exceed the"),
    ],
)
def test_cli_bad_schedule_is_one_line_exit_2(
    recipe_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, expected: str
) -> None:
    assert main(["train", recipe_file, override, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists(), "a bad schedule leaves no run folder behind"


def test_no_decay_for_bias_and_norm() -> None:
    assert no_decay("encoder.layer.0.output.LayerNorm.weight", torch.zeros(4), ["bias", "norm"])
    assert no_decay("classifier.bias", torch.zeros(4), ["bias", "norm"])
    assert not no_decay("classifier.weight", torch.zeros(4, 4), ["bias", "norm"])
