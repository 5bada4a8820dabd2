"""The ensemble stage: the top-k distinct configurations found so far, combined per pair, against the best
single model on the same pairs; then, with `single_model`, the winning ensemble distilled back into the
best single configuration, trained 3x longer (so a user can keep one model's cost).

Pair i's ensemble combines the members' pair-i models (the same seed), so the comparison with the best
single model stays paired. Members that share an init (one backbone, fine-tuned) may also be averaged
into one model (a greedy weight soup).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from honed.climb.configs import Config
from honed.climb.stages import keep_screened, screen
from honed.climb.state import Climb
from honed.climb.transfer import train_transfer
from honed.proposals import Change
from honed.recipe import load_recipe

METHODS = ("voting", "soup", "selection", "stacking")  # selection and stacking learn from val: their val score is
# cross-fitted (honed/climb/crossfit.py); a greedy soup would be judged on the rows it was chosen on: uniform only


def ensemble_stage(c: Climb) -> None:
    why_not = _why_not(c)
    if why_not:
        c.notes.append(f"ensemble stage skipped: {why_not}")
        return
    members = top_configs(c)
    if len(members) < 2:
        c.notes.append("ensemble stage skipped: fewer than 2 distinct configurations finished every pair")
        return
    c.rebuild(members, c.screening)  # members (and ensembles that name them) need their model folders on disk
    for config in members:
        dirs = [c.model_dir(config, i) for i in c.screening]
        c.substitutes[f"{{member:{config.id}}}"] = dirs
    single = c.best_single = c.best
    changes = [_ensemble_change(method, members) for method in METHODS
               if method != "soup" or _share_init(members)]
    keep_screened(c, "ensemble", screen(c, "ensemble", changes))
    if c.best is not single and c.spec.single_model:
        _distil(c)


def _why_not(c: Climb) -> str | None:
    if c.pairing != "seeds":
        return "fold pairing (members of one fold share no validation rows with the ensemble's val split)"
    if c.metric not in ("accuracy", "macro_f1"):
        return f"ensembles are scored on accuracy and macro_f1, not {c.metric}"
    return None


def top_configs(c: Climb, k: int | None = None) -> list[Config]:
    """Up to top_k (or k) configurations with every pair finished, best mean val first (the current best included)."""
    scored, seen = [], set()
    for config in {c.best.id: c.best, **c.known}.values():
        values = c.scores(config)
        twin = tuple(values + c.scores(config, "test"))  # the same scores everywhere: the same predictions,
        if config.runner in ("fit", "classical") and all(v is not None for v in values) and twin not in seen:
            seen.add(twin)  # e.g. a change that changed nothing: not a second member
            scored.append((c.sign * float(np.mean(values)), config))
    scored.sort(key=lambda item: -item[0])
    return [config for _, config in scored[: k or c.spec.top_k]]


LABELS = {"voting": "ensemble (soft vote)", "soup": "uniform weight soup",
          "selection": "greedy selection (cross-fitted on val)", "stacking": "stacking, logistic regression "
          "(cross-fitted on val)"}


def _ensemble_change(method: str, members: list[Config]) -> Change:
    listed = [{"name": f"m{i}", "prefit": f"{{member:{m.id}}}"} for i, m in enumerate(members)]
    section = {"method": method, "members": listed, **({"soup": "uniform"} if method == "soup" else {})}
    runner = "crossfit" if method in ("selection", "stacking") else "ensemble"
    return Change(f"{LABELS[method]} of the top {len(members)}", overrides={"ensemble": section}, group="ensemble",
                  runner=runner, why="members that err differently", cost=0.1)


def _share_init(members: list[Config]) -> bool:
    """A soup needs one backbone and head: every member a fit of the same model settings."""
    models = {str(m.resolved().get("model")) for m in members}
    return len(models) == 1 and all(m.runner == "fit" for m in members)


def _distil(c: Climb) -> None:
    """The kept ensemble as teacher of the best configuration of the baseline's size, pair by pair."""
    ensemble = c.best
    student = _baseline_size(c)
    if student is None:
        c.notes.append("distillation skipped: no configuration of the baseline's size finished every pair")
        return
    if (student.resolved().get("data") or {}).get("truncation") == "sliding":
        c.notes.append("distillation skipped: the student reads sliding windows, and distillation looks its "
                       "teacher's rows up by index")
        return
    placeholder = f"{{ensemble:{ensemble.id}}}"  # the teacher is part of the student's identity
    c.rebuild([ensemble], c.screening)
    c.substitutes[placeholder] = [c.model_dir(ensemble, i) for i in c.screening]
    written, teacher, rows = c.plan.get("transfer"), c.substitutes[placeholder][0], None
    if written and teacher:
        rows = train_transfer(c.folder, written, teacher, ensemble.id, c.show)
    elif written:
        c.notes.append("climb.transfer not used: the kept ensemble's first pair has no model folder to label it")
    change = distil_change(load_recipe(student.resolved()).train, placeholder, rows)
    c.best = student
    try:
        keep_screened(c, "ensemble", screen(c, "ensemble", [change]))
        c.distilled = c.best if c.best is not student else None
    finally:
        c.best = ensemble


LONGER = 3  # bench/RESULTS.md, "Distillation sweep": a distilled student gained +0.9 points at the recipe's epochs
# and +1.6 at 3x (the student alone gained nothing from the extra epochs); temperature and alpha mattered less


def distil_change(train: Any, teacher: str, rows: tuple[str, int, int] | None = None) -> Change:
    """The distillation candidate: the teacher's soft labels (T 2, alpha 0.5) and LONGER times the student's
    training (its epochs, or its max_steps when those cap the run). With `rows` (climb.transfer: the training
    file holding the unlabelled rows too, their count and the labelled rows' count) the student learns only the
    soft labels (alpha 1: the unlabelled rows' stored labels are the teacher's own guesses)."""
    key, length = ("train.max_steps", train.max_steps) if train.max_steps is not None else \
        ("train.epochs", train.epochs)
    overrides: dict[str, Any] = {key: LONGER * length}
    name, alpha, cost = f"distilled from the ensemble, {LONGER}x the training", 0.5, float(LONGER)
    if rows is not None:
        path, added, labelled = rows
        overrides["data.train"] = path
        name, alpha = f"{name}, + {added} unlabelled rows (climb.transfer)", 1.0
        cost *= 1.0 if train.max_steps is not None else (added + labelled) / max(1, labelled)
    return Change(name, overrides=overrides,
                  techniques=[{"name": "distill", "teacher": teacher, "temperature": 2.0, "alpha": alpha}],
                  group="distill", why="one model's cost, the ensemble's knowledge; a student learns from soft "
                  "labels longer than from hard ones", cost=cost)


def _baseline_size(c: Climb) -> Config | None:
    """The best fit configuration with no change to model.* (the baseline's backbone and depth)."""
    same = [m for m in top_configs(c, len(c.known) + 1) if m.runner == "fit"
            and not any(k == "model" or k.startswith("model.") for ch in m.changes for k in ch.overrides)]
    return same[0] if same else None
