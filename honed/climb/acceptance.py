"""The acceptance rule: a paired, one-sided test of a candidate against the current best.

Candidate and current best are run on the same seeds (same init and data order) or the same folds,
so each seed or fold gives one paired difference d_i = candidate_i - best_i of the val metric (signed
so that larger is better). The candidate is accepted when mean(d) > 0 and the one-sided paired
t-test (H0: mean(d) <= 0) gives p < alpha. With identical differences (zero spread) the test is
decided by the sign alone. The interval reported is the two-sided (1 - 2*alpha) t interval of the
mean difference, so with alpha 0.1 an 80% interval whose lower end is above zero means "accepted".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class Paired:
    """The paired difference of two configurations over n seeds or folds."""

    mean: float
    std: float
    low: float
    high: float
    p: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def paired(candidate: list[float], best: list[float], alpha: float, sign: float = 1.0) -> Paired | None:
    """The paired difference (candidate - best, times `sign`: -1 for a metric to minimise); None without pairs."""
    d = sign * (np.asarray(candidate, dtype=float) - np.asarray(best, dtype=float))
    n = len(d)
    if n == 0:
        return None
    mean = float(d.mean())
    if n == 1:
        return Paired(mean, 0.0, -math.inf, math.inf, 1.0, 1)
    std = float(d.std(ddof=1))
    if std == 0.0:  # every pair moved by the same amount: the sign decides, the interval is a point
        return Paired(mean, 0.0, mean, mean, 0.0 if mean > 0 else 1.0, n)
    sem = std / math.sqrt(n)
    t = mean / sem
    p = float(stats.t.sf(t, df=n - 1))
    half = float(stats.t.ppf(1.0 - alpha, df=n - 1)) * sem
    return Paired(mean, std, mean - half, mean + half, p, n)


def accepts(diff: Paired | None, alpha: float, pairs: int) -> tuple[bool, str]:
    """Whether the rule accepts, and why in words (stored in the leaderboard)."""
    if diff is None or diff.n < pairs:
        return False, f"only {0 if diff is None else diff.n} of {pairs} pairs finished"
    if diff.mean <= 0:
        return False, f"mean improvement {diff.mean:+.4f} is not an improvement"
    if diff.p >= alpha:
        return False, f"mean improvement {diff.mean:+.4f} but p {diff.p:.3f} >= {alpha:g} (could be seed noise)"
    return True, f"mean improvement {diff.mean:+.4f}, p {diff.p:.3f} < {alpha:g}"


def clearly_losing(first: float, drop_below: float | None) -> bool:
    """A candidate whose first paired difference is below -drop_below is stopped after that pair."""
    return drop_below is not None and first < -drop_below


def rule_text(metric: str, alpha: float, pairs: int, pairing: str, drop_below: float | None,
              fresh_pairs: str) -> str:
    unit = "seeds" if pairing == "seeds" else "folds"
    text = (f"a candidate passes screening when the mean paired difference of val {metric} over {pairs} {unit} "
            f"is an improvement and a one-sided paired t-test gives p < {alpha:g}; it is kept only if {pairs} fresh "
            f"{unit}, never used to screen it, confirm it the same way against the best so far (ensembles of "
            f"members already trained are kept on the screening {unit})")
    if fresh_pairs == "auto":
        text += (f"; a stage's first kept change whose screening p is below {alpha:g} / the number of candidates "
                 f"screened (Bonferroni; a sign test's 0.5^n when every pair moved alike) is kept on its screening "
                 f"{unit}")
    if drop_below is not None:
        text += f"; a candidate whose first pair is worse by more than {drop_below:g} is stopped there"
    return text


def spread(values: list[float]) -> tuple[float | None, float | None]:
    """(mean, sample std) of per-pair scores; std 0 for one score, (None, None) for none."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
