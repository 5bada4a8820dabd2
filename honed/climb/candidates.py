"""Where each stage's candidates come from: the proposals registry (honed/proposals.py), filled by the
files that own the techniques, losses, schedules and models, plus what only the climb can make (the
cleaned training copy of the data stage, the LR finder's suggestion for the optimisation stage) and the
user's own `climb.candidates`.
"""

from __future__ import annotations

from pathlib import Path

from honed.climb.state import Climb
from honed.errors import HonedError
from honed.proposals import Change, Situation, proposals
from honed.recipe import load_recipe


def load_proposers() -> None:
    """Import the modules that register proposers (each registers on import)."""
    import honed.data.augment_image  # noqa: F401
    import honed.data.augment_text  # noqa: F401
    import honed.data.text  # noqa: F401
    import honed.losses  # noqa: F401
    import honed.models.candidates  # noqa: F401
    import honed.models.dropout  # noqa: F401
    import honed.train.optim  # noqa: F401
    import honed.train.schedules  # noqa: F401
    from honed.techniques import load_all

    load_all()


def stage_changes(c: Climb, stage: str, situation: Situation) -> list[Change]:
    """The user's candidates, the climb's own for this stage, and the registered ones, in that order."""
    own = clean_changes(c, situation.task) if stage == "data" else []
    user = [Change(u.name, dict(u.overrides), [dict(t) for t in u.techniques], u.group)
            for u in c.spec.candidates if u.stage == stage]
    errors: list[str] = []
    found = proposals(stage, situation, errors)
    c.notes.extend(f"{stage}: a proposer failed and was left out ({e})" for e in errors)
    return [*user, *own, *found]


def found_lr(c: Climb) -> float | None:
    """The LR finder's suggestion for the current best recipe (kept in CLIMB_DIR/lr_find/ for a re-run)."""
    if not c.spec.lr_find or c.best.runner != "fit":
        return None
    key = f"lr_found:{c.best.id}"  # kept in the study: every machine of a shared climb proposes the same LRs
    if c.store.attr(key) is not None:
        return float(c.store.attr(key))
    folder = c.folder / "lr_find"
    from honed.train.lr_find import lr_find

    c.show("optimisation: LR range test")
    tree = {**c.best.resolved(), "output_dir": str(folder)}
    try:
        _, _, suggestion = lr_find(tree, steps=100, overwrite=True, quiet=True)
    except HonedError as exc:
        c.notes.append(f"LR finder did not run: {exc}")
        return None
    c.store.set_attr(key, float(suggestion))
    return float(suggestion)


def clean_changes(c: Climb, task: str = "classification") -> list[Change]:
    """`honed clean` on the training split, as two alternatives: the sure things (empty rows, exact copies,
    leaks into val/test), and those plus likely label errors; none when the audit finds nothing."""
    threshold = 0.5 if task == "classification" else 0.0  # regression has no label errors to threshold
    if c.best.runner != "fit":
        return []
    if c.pairing == "folds":  # folds of another pool would not pair with the best's, and would score the
        c.notes.append("data cleaning not tried: fold pairing (the cleaned rows would change every fold)")
        return []  # dropped rows out of its own val folds
    from honed.audit.cleaning import clean

    out, kept = [], set()
    for name, suffix, labels in (("clean: empty rows, exact copies, leaks", "keep", "keep"),  # None: drop on
                                 ("clean + likely label errors", "drop", None)):  # classification, keep on regression
        folder = c.folder / "data" / f"clean-{suffix}"
        path = _cleaned(folder)
        if path is None:
            c.show(f"data: auditing the training split ({name})")
            try:
                result = clean(load_recipe(c.best.resolved()), output=folder, overwrite=True, quiet=True,
                               labels=labels, label_threshold=threshold, splits=("train",))
            except HonedError as exc:
                c.notes.append(f"{name}: the audit did not run ({exc})")
                continue
            path = result.files["train"]
        dropped, same = _dropped(folder), path.read_bytes() in kept
        if same:  # e.g. regression: no label errors are looked for, so the second cleaning is the first
            c.notes.append(f"{name}: the same rows as the cleaning before it, not run twice")
        elif dropped:
            kept.add(path.read_bytes())
            out.append(Change(f"{name} ({dropped} train rows)", overrides={"data.train": str(path.resolve())},
                              group="clean", why="the audit's findings acted on as honed clean would"))
    return out


def _cleaned(folder: Path) -> Path | None:
    files = [p for p in folder.glob("train*") if p.is_file()] if (folder / "manifest.csv").is_file() else []
    return files[0] if files else None


def _dropped(folder: Path) -> int:
    import pandas as pd

    path = folder / "manifest.csv"
    return int(len(pd.read_csv(path))) if path.is_file() else 0
