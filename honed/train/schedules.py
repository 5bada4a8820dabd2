"""Learning-rate schedules as pure functions of the optimizer step (nanoGPT's get_lr).

Each factory takes `total` optimizer steps and `warmup` steps (from `schedule.warmup_ratio` or
`schedule.warmup_steps`) plus its own flat settings, and returns `multiplier(step) -> float` in
[0, 1]; the loop sets every param group's LR to its base LR times the multiplier, so resuming
needs only the step. Every schedule but one_cycle starts with a linear warmup from ~0 to 1 and
decays over the steps after it; one_cycle's rising phase is the warmup.

    constant     1 after warmup
    linear       1 -> 0
    cosine       half-cosine 1 -> min_ratio, over `cycles` equal restarts (SGDR, T_mult=1)
    polynomial   (1 - p)^power, scaled to end at end_ratio (HF's polynomial decay)
    step         x gamma every step_size steps after warmup, or at each step in `milestones`
    one_cycle    Smith's 1cycle as torch's OneCycleLR (cos): 1/div -> 1 -> 1/(div * final_div)
"""

from __future__ import annotations

import bisect
import inspect
import math
from collections.abc import Callable
from typing import Any

from honed.errors import HonedError, did_you_mean
from honed.proposals import Change, Situation, proposes
from honed.registry import Registry

Multiplier = Callable[[int], float]
SCHEDULES: Registry[Multiplier] = Registry("schedule")
COMMON_KEYS = ("name", "warmup_ratio", "warmup_steps")


class BadSetting(ValueError):
    """A schedule setting out of range; `key` lets the error name `schedule.<key>`."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


def warmup_steps(total: int, ratio: float, steps: int | None) -> int:
    return steps if steps is not None else round(total * ratio)


def build_schedule(spec: Any, total: int) -> Multiplier:
    """The recipe's schedule over `total` optimizer steps; warmup longer than training, an unknown
    setting or one out of range is a one-line error naming the `schedule.` key."""
    warmup = warmup_steps(total, spec.warmup_ratio, spec.warmup_steps)
    if warmup > total:
        raise HonedError(
            f"schedule.warmup_steps: {warmup} warmup steps exceed the {total} training steps; lower it or train longer"
        )
    kwargs = {k: v for k, v in spec.model_dump().items() if k not in COMMON_KEYS}
    factory = SCHEDULES.get(spec.name, "schedule.name")
    _check_keys(factory, spec.name, kwargs)
    try:
        return factory(total=total, warmup=warmup, **kwargs)
    except BadSetting as exc:
        raise HonedError(f"schedule.{exc.key}: {exc.problem} (schedule '{spec.name}')") from exc
    except (TypeError, ValueError) as exc:
        raise HonedError(f"schedule '{spec.name}': {exc}") from exc


def _check_keys(factory: Callable[..., Any], name: str, kwargs: dict[str, Any]) -> None:
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # no signature to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [p for p in params if p not in ("total", "warmup")]
    for key in kwargs:
        if key not in params:
            hint = did_you_mean(key, valid) if valid else "; it takes no settings besides warmup_ratio/warmup_steps"
            raise HonedError(f"schedule.{key}: not a setting of schedule '{name}'{hint}")


def _number(
    key: str, value: Any, low: float, high: float = math.inf, *, open_low: bool = False, integer: bool = False
) -> float:
    """`value` as a number in [low, high] ((low, high] if open_low), or a BadSetting naming `key`."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise BadSetting(key, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
    too_low = value <= low if open_low else value < low
    if too_low or value > high or math.isnan(value):
        if high == math.inf:
            bounds = f"{'>' if open_low else '>='} {low:g}"
        else:
            bounds = f"in {'(' if open_low else '['}{low:g}, {high:g}]"
        raise BadSetting(key, f"must be {bounds}, got {value!r}")
    return value


def _warmed(after: Callable[[int, int], float], total: int, warmup: int) -> Multiplier:
    """Linear warmup from 1/(warmup+1) to 1 over `warmup` steps, then `after(done, span)` with
    `done` steps of the `span` post-warmup steps behind (clamped to span past the end)."""
    span = max(1, total - warmup)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return after(min(step - warmup, span), span)

    return multiplier


def _with_warmup(decay: Callable[[float], float], total: int, warmup: int) -> Multiplier:
    """Warmup, then `decay(progress in [0, 1])`."""
    return _warmed(lambda done, span: decay(done / span), total, warmup)


def _half_cosine(p: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * p))


@SCHEDULES.register("constant")
def constant(total: int, warmup: int) -> Multiplier:
    return _with_warmup(lambda p: 1.0, total, warmup)


@SCHEDULES.register("linear")
def linear(total: int, warmup: int) -> Multiplier:
    return _with_warmup(lambda p: 1.0 - p, total, warmup)


@SCHEDULES.register("cosine")
def cosine(total: int, warmup: int, cycles: int = 1, min_ratio: float = 0.0) -> Multiplier:
    """Half-cosine from 1 to `min_ratio`, restarted `cycles` times over equal lengths (SGDR with
    T_mult=1; cycles=1 is plain cosine decay)."""
    cycles = int(_number("cycles", cycles, 1, integer=True))
    floor = _number("min_ratio", min_ratio, 0.0, 1.0)

    def after(done: int, span: int) -> float:
        cycle = min(done * cycles // span, cycles - 1)  # integer maths: boundaries land exactly
        position = (done * cycles - cycle * span) / span
        return floor + (1.0 - floor) * _half_cosine(position)

    return _warmed(after, total, warmup)


@SCHEDULES.register("polynomial")
def polynomial(total: int, warmup: int, power: float = 1.0, end_ratio: float = 0.0) -> Multiplier:
    """(1 - p)^power * (1 - end_ratio) + end_ratio: power 1 is linear decay to end_ratio."""
    power = _number("power", power, 0.0, open_low=True)
    end = _number("end_ratio", end_ratio, 0.0, 1.0)
    return _with_warmup(lambda p: (1.0 - p) ** power * (1.0 - end) + end, total, warmup)


@SCHEDULES.register("step")
def step(
    total: int, warmup: int, gamma: float = 0.1, step_size: int | None = None, milestones: list[int] | None = None
) -> Multiplier:
    """Multiply by `gamma` every `step_size` steps counted after warmup (torch's StepLR), or at each
    of the `milestones`, which are step numbers counted from the start of training (MultiStepLR)."""
    gamma = _number("gamma", gamma, 0.0, 1.0, open_low=True)
    if (step_size is None) == (milestones is None):
        raise BadSetting(
            "step_size", "give either it or schedule.milestones (exactly one), e.g. schedule.step_size=1000"
        )
    if step_size is not None:
        size = int(_number("step_size", step_size, 1, integer=True))
        return _warmed(lambda done, span: gamma ** (done // size), total, warmup)
    if not isinstance(milestones, list) or not milestones:
        raise BadSetting("milestones", f"must be a non-empty list of step numbers, got {milestones!r}")
    marks = [int(_number("milestones", m, 1, integer=True)) for m in milestones]
    if marks != sorted(set(marks)):
        raise BadSetting("milestones", f"must be increasing, got {milestones!r}")
    return _warmed(lambda done, span: gamma ** bisect.bisect_right(marks, warmup + done), total, warmup)


@SCHEDULES.register("one_cycle")
def one_cycle(
    total: int, warmup: int, div: float = 25.0, final_div: float = 1e4, pct_start: float | None = None
) -> Multiplier:
    """Smith's 1cycle, step for step torch's OneCycleLR(anneal_strategy='cos', three_phase=False)
    divided by max_lr: cosine from 1/div up to 1 over the rising phase, then cosine down to
    1/(div * final_div) at the last step. The rising phase is the warmup, or `pct_start` of the
    steps (default 0.25) when the warmup is 0. Momentum is not cycled (the optimizer is AdamW)."""
    div = _number("div", div, 1.0)
    final_div = _number("final_div", final_div, 1.0)
    if pct_start is not None and warmup > 0:
        raise BadSetting(
            "pct_start",
            f"and the warmup ({warmup} steps) both set the rising phase; "
            "set schedule.warmup_ratio=0 to use pct_start, or drop pct_start",
        )
    if warmup > 0:
        peak = float(warmup - 1)  # torch: pct_start * total - 1 with pct_start = warmup / total
    else:
        peak = _number("pct_start", 0.25 if pct_start is None else pct_start, 0.0, 1.0, open_low=True) * total - 1
    start, end = 1.0 / div, 1.0 / (div * final_div)

    def multiplier(step: int) -> float:
        if peak > 0 and step <= peak:
            return _anneal(start, 1.0, step / peak)
        rest = total - 1 - peak
        return _anneal(1.0, end, min(1.0, (step - peak) / rest) if rest > 0 else 1.0)

    return multiplier


def _anneal(first: float, last: float, p: float) -> float:
    """Cosine annealing from `first` (p=0) to `last` (p=1), as torch's OneCycleLR `_annealing_cos`."""
    return last + (first - last) / 2.0 * (math.cos(math.pi * p) + 1.0)


def planned_steps(s: Situation) -> int:
    """Optimizer steps of one run: the climb's count, or an estimate from the recipe when it gave none."""
    if s.steps:
        return s.steps
    train = s.recipe.train
    per_epoch = -(-max(1, s.train_rows) // (train.batch_size * train.grad_accum_steps))
    return max(1, min(train.max_steps or 10**12, train.epochs * per_epoch))


def _switch_schedule(spec: Any, name: str) -> dict[str, Any]:
    """Overrides that switch to schedule `name` keeping the warmup: the name alone (composes with other
    kept changes), or the whole section when the current one has settings the new one may not take."""
    if not any(k not in COMMON_KEYS for k in spec.model_dump()):
        return {"schedule.name": name}
    return {"schedule": {"name": name, "warmup_ratio": spec.warmup_ratio, "warmup_steps": spec.warmup_steps}}


def _epoch_changes(s: Situation) -> list[Change]:
    """One epoch more and twice the epochs (or twice train.max_steps when that caps the run)."""
    train = s.recipe.train
    if train.max_steps is not None:  # max_steps caps the run, so more epochs would change nothing
        return [Change(f"train.max_steps {2 * train.max_steps}", {"train.max_steps": 2 * train.max_steps},
                       group="epochs", why="twice the steps: the run may stop before it has converged", cost=2.0)]
    out = []
    for epochs in dict.fromkeys((train.epochs + 1, 2 * train.epochs)):
        out.append(Change(f"train.epochs {epochs}", {"train.epochs": epochs}, group="epochs",
                          why="a longer run: short fine-tunes often stop before the model has converged",
                          cost=round(epochs / train.epochs, 2)))
    return out


@proposes("optimisation")
def _climb_candidates(s: Situation) -> list[Change]:
    """Training length, the LR schedule's shape and a warmup when there is none."""
    spec = s.recipe.schedule
    out = _epoch_changes(s)
    why = {"cosine": "cosine decay keeps the LR high longer, then anneals it smoothly to zero",
           "one_cycle": "1cycle: a rise then a long anneal, often faster to a good optimum on short runs"}
    out += [Change(f"schedule {name}", _switch_schedule(spec, name), group="schedule", why=why[name])
            for name in ("cosine", "one_cycle") if spec.name != name]
    no_warmup = spec.warmup_steps == 0 or (spec.warmup_steps is None and spec.warmup_ratio == 0)
    if no_warmup and getattr(spec, "pct_start", None) is None:  # one_cycle's pct_start and a warmup exclude each other
        out.append(Change("schedule.warmup_ratio 0.1", {"schedule.warmup_ratio": 0.1, "schedule.warmup_steps": None},
                          group="warmup", why="a linear warmup over the first 10% of steps protects the pretrained "
                          "weights from the fresh head's large early gradients"))
    return out
