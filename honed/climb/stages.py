"""One stage of the climb: screen each candidate against the current best, then keep the ones that pass
by forward selection, each re-verified on fresh pairs on top of what was kept before it (effects do not
add up by themselves).

Screening runs the first pair of every candidate, stops those clearly losing, then runs the other
pairs of the rest; a candidate passes when the acceptance rule holds against the stage's starting
point. Forward selection takes the passing ones best first, each run as best + it on fresh pairs and
kept only if the rule holds against the best so far; the first may be kept on its screening runs when
its p survives a Bonferroni correction for the candidates screened. Alternatives (one `group`, e.g. two
learning rates) exclude each other.
"""

from __future__ import annotations

from honed.climb.acceptance import Paired, accepts, clearly_losing
from honed.climb.configs import Config, check_change
from honed.climb.state import Climb
from honed.errors import HonedError
from honed.proposals import Change


def climb_stage(c: Climb, stage: str, changes: list[Change]) -> None:
    changes = usable(c, stage, changes)
    if not changes:
        return
    passed = screen(c, stage, changes)
    combine(c, stage, passed, len(changes))


def usable(c: Climb, stage: str, changes: list[Change]) -> list[Change]:
    """The stage's candidates that are not skipped, not an alternative of something kept, and valid; the
    stage's max_candidates first ones in `spread` order; the rest goes to `pending`."""
    if c.best.runner != "fit":  # e.g. TF-IDF won: recipe changes would not change it
        c.notes.append(f"stage {stage} skipped: the best so far is not a fine-tune ({c.best.label})")
        return []
    kept, seen = c.best.groups(), {c.best.id}
    out = []
    for change in changes:
        if change.name in c.spec.skip or change.group in kept or c.best.with_change(change).id in seen:
            continue  # skipped, an alternative of a kept change, or the same recipe as another candidate
        seen.add(c.best.with_change(change).id)
        try:
            check_change(c.best, change, f"climb stage {stage}")
        except HonedError as exc:
            c.rows.append(_invalid(stage, change, c.best, str(exc)))
            continue
        out.append(change)
    out = spread(out)
    limit = c.spec.stages[stage].max_candidates
    if limit is not None and len(out) > limit:
        c.pending.extend(f"{stage}: {ch.name}" for ch in out[limit:])
        out = out[:limit]
    return out


def spread(changes: list[Change]) -> list[Change]:
    """One candidate of each group before a second of any (in the order given: the user's first),
    so a limit of five tries five different ideas rather than three learning rates and two freezings."""
    rank: dict[str, int] = {}
    keyed = []
    for i, change in enumerate(changes):
        rank[change.group] = rank.get(change.group, -1) + 1
        keyed.append((rank[change.group], i, change))
    return [change for _, _, change in sorted(keyed, key=lambda item: (item[0], item[1]))]


def screen(c: Climb, stage: str, changes: list[Change]) -> list[tuple[Change, Paired]]:
    base = c.best
    c.run([base], range(c.pairs))
    configs = [(ch, base.with_change(ch)) for ch in changes]
    c.screening_now = [(stage, config, base) for _, config in configs]  # for the leaderboard if the climb stops
    c.show(f"{stage}: screening {len(configs)} candidates, first pair")
    c.run([cfg for _, cfg in configs], range(1))
    alive = []
    for change, config in configs:
        first = c.diff(config, base, pairs=range(1))
        failed = c.failure(config, range(1))
        if failed or first is None:
            c.record(stage, config, base, "screen", False, f"run failed: {failed or 'no result'}")
        elif clearly_losing(first.mean, c.spec.drop_below):
            c.record(stage, config, base, "screen", False,
                     f"stopped after 1 pair: {first.mean:+.4f} below -{c.spec.drop_below:g}")
        else:
            alive.append((change, config))
    c.show(f"{stage}: screening {len(alive)} candidates, other pairs")
    c.run([cfg for _, cfg in alive], range(1, c.pairs))
    passed = []
    for change, config in alive:
        diff = c.diff(config, base)
        ok, why = accepts(diff, c.spec.alpha, c.pairs)
        failed = c.failure(config)
        if failed:
            ok, why = False, f"run failed: {failed}"
        c.record(stage, config, base, "screen", False, ("passed screening: " if ok else "") + why)
        if ok and diff is not None:
            passed.append((change, diff))
    c.screening_now = []
    return passed


def combine(c: Climb, stage: str, passed: list[tuple[Change, Paired]], screened: int) -> None:
    """Forward selection, best first, each verified on fresh pairs (seeds or folds never used to screen it)
    against the best so far: the screening winner's luck does not carry it in. The stage's first kept change
    skips the fresh pairs when its screening p is below alpha / the candidates screened (Bonferroni: the
    chance that any of them passes so by luck stays below alpha; with the same gain on every pair, where the
    t-test's p is 0, the sign test's 0.5^n stands in), as a new backbone that wins by 7 points
    should not cost three more of its runs; `climb.fresh_pairs: always` re-runs every kept change."""
    base = c.best
    for change, diff in sorted(passed, key=lambda item: -item[1].mean):
        if change.group in c.best.groups():
            continue  # an alternative of a change kept just before (e.g. another learning rate)
        previous, config = c.best, c.best.with_change(change)
        p = diff.p if diff.std > 0 else 0.5 ** diff.n  # the same gain on every pair: a sign test's p, not 0
        if c.spec.fresh_pairs == "auto" and c.best is base and p < c.spec.alpha / screened:
            c.record(stage, config, previous, "combine", True, f"kept on the screening pairs: p {p:.4f} < "
                     f"{c.spec.alpha:g}/{screened} candidates screened, so no fresh pairs are needed")
            c.best = config
            c.rung(stage, config, previous)
            continue
        verify(c, stage, previous, config)


def verify(c: Climb, stage: str, previous: Config, config: Config) -> None:
    """Keep `config` over `previous` only if the rule holds on fresh pairs (a clear loser stops after one)."""
    c.show(f"{stage}: verifying {config.label} on fresh pairs")
    c.run([previous, config], range(c.pairs, c.pairs + 1))
    first = c.diff(config, previous, pairs=range(c.pairs, c.pairs + 1))
    if first is not None and clearly_losing(first.mean, c.spec.drop_below) and not c.failure(config, c.verifying):
        c.record(stage, config, previous, "combine", False,
                 f"on fresh pairs: stopped after 1 pair, {first.mean:+.4f}", c.verifying)
        return
    c.run([previous, config], c.verifying)
    ok, why = accepts(c.diff(config, previous, pairs=c.verifying), c.spec.alpha, c.pairs)
    failed = c.failure(config, c.verifying)
    if failed:
        ok, why = False, f"run failed: {failed}"
    c.record(stage, config, previous, "combine", ok, ("on fresh pairs: " if not failed else "") + why, c.verifying)
    if ok:
        c.best = config
        c.rung(stage, config, previous, c.verifying)


def keep_screened(c: Climb, stage: str, passed: list[tuple[Change, Paired]]) -> None:
    """The best passing candidate kept on its screening pairs (ensembles of members already trained: there are
    no fresh pairs of the members to verify on, and soft votes and uniform soups fit nothing to val)."""
    if not passed:
        return
    change, diff = max(passed, key=lambda item: item[1].mean)
    previous, config = c.best, c.best.with_change(change)
    c.record(stage, config, previous, "combine", True, f"kept on the screening pairs: mean {diff.mean:+.4f}, "
             f"p {diff.p:.3f} < {c.spec.alpha:g}")
    c.best = config
    c.rung(stage, config, previous)


def _invalid(stage: str, change: Change, base: Config, reason: str) -> dict:
    return {"stage": stage, "change": change.name, "config": None, "base": base.id, "phase": "screen",
            "runner": change.runner, "val": [], "test": [], "delta_val": None, "delta_test": None,
            "accepted": False, "reason": f"not valid here: {reason}", "seconds": 0.0,
            "recipe_changes": [change.as_dict()]}
