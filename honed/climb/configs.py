"""A configuration of the climb: the baseline recipe plus an ordered list of accepted changes.

Its identity is a hash of the recipe it resolves to, so the same set of changes reached by two
routes (a screened candidate, then the same candidate kept by forward selection) is one
configuration whose finished runs are reused, never redone.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from honed.errors import HonedError
from honed.proposals import Change
from honed.recipe import Recipe, load_recipe, set_dotted
from honed.techniques import build_techniques

# Keys that say where and how a run happens, not what it trains: left out of the identity.
NOT_IDENTITY = ("output_dir", "climb", "search", "name", "description")


@dataclass
class Config:
    """`tree`: the baseline recipe tree (plain data); `changes`: what was added to it, in order; `root`: the
    climb folder, written as {climb} in the identity so a moved or resumed climb keeps its configurations."""

    tree: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    root: str = ""

    def with_change(self, change: Change) -> Config:
        return Config(self.tree, [*self.changes, change], self.root)

    @property
    def runner(self) -> str:
        """How this configuration is scored: the last change that names another runner wins."""
        runners = [c.runner for c in self.changes if c.runner != "fit"]
        return runners[-1] if runners else "fit"

    def resolved(self) -> dict[str, Any]:
        """The recipe tree with every change applied."""
        return apply(self.tree, self.changes)

    @cached_property
    def id(self) -> str:
        """Computed once (a configuration is not changed after it is made). Settings left at their defaults
        are left out, so a new recipe field (with its default) keeps a resumed climb's configurations."""
        tree = {k: v for k, v in identity_tree(self.resolved()).items() if k not in NOT_IDENTITY}
        text = json.dumps({"tree": tree, "runner": self.runner}, sort_keys=True, default=str)
        if self.root:
            text = text.replace(self.root, "{climb}")
        return "c-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        return " + ".join(c.name for c in self.changes) or "baseline"

    def groups(self) -> set[str]:
        return {c.group for c in self.changes}


def identity_tree(tree: dict[str, Any]) -> dict[str, Any]:
    """The recipe tree without the settings left at their defaults."""
    return load_recipe(tree).model_dump(mode="json", exclude_defaults=True)


def apply(tree: dict[str, Any], changes: list[Change]) -> dict[str, Any]:
    """`tree` with each change's dotted overrides set and technique entries added (an entry of the same
    name is replaced, so `ema` twice keeps the later settings)."""
    out = copy.deepcopy(tree)
    for change in changes:
        for key, value in change.overrides.items():
            set_dotted(out, key, copy.deepcopy(value))
        if change.techniques:
            names = {t["name"] for t in change.techniques}
            kept = [t for t in out.get("techniques") or [] if t.get("name") not in names]
            out["techniques"] = kept + [copy.deepcopy(t) for t in change.techniques]
    return out


def check_change(config: Config, change: Change, where: str) -> Recipe:
    """The recipe `change` makes from `config`, validated (an unknown key or technique, a bad setting)
    before anything trains; the error names the candidate."""
    try:
        recipe = load_recipe(config.with_change(change).resolved())
        build_techniques(recipe.techniques)
    except HonedError as exc:
        raise HonedError(f"{where}: candidate '{change.name}': {exc}") from None
    return recipe
