"""Presets: one recipe switch that stands for several settings (`preset: fine_tune`).

A preset fills in only what the recipe leaves unset and appends its techniques only when the
recipe does not already name them, so expanding twice changes nothing and the resolved recipe
in the run folder shows every setting it chose.
"""

from __future__ import annotations

from typing import Any

from honed.errors import HonedError, did_you_mean

PRESETS: dict[str, dict[str, Any]] = {
    # fastai's fine_tune: train the new head alone first, then everything with discriminative
    # LRs (each group 0.75x the one above it) under a one-cycle schedule.
    "fine_tune": {
        "settings": {"schedule.name": "one_cycle", "optim.layer_decay": 0.75},
        "techniques": [{"name": "head_warmup", "epochs": 1}],
    },
}


def expand_preset(tree: dict[str, Any]) -> None:
    """Fill `tree` (a raw recipe) in place from its `preset`, if any."""
    name = tree.get("preset")
    if name is None:
        return
    if name not in PRESETS:
        raise HonedError(f"preset: unknown preset '{name}'{did_you_mean(str(name), PRESETS)}")
    preset = PRESETS[name]
    for key, value in preset["settings"].items():
        section, _, field = key.partition(".")
        node = tree.setdefault(section, {})
        if isinstance(node, dict):
            node.setdefault(field, value)
    techniques = tree.setdefault("techniques", [])
    named = {t.get("name") for t in techniques if isinstance(t, dict)}
    techniques.extend(dict(t) for t in preset["techniques"] if t["name"] not in named)
