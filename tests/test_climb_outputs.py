"""best_ensemble/ works alone: the members it names by path in the climb's runs/ are copied into it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from honed.climb.outputs import _own_members


def test_an_ensemble_copy_holds_its_members_and_names_them_relative(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        (runs / name / "model").mkdir(parents=True)
        (runs / name / "model" / "weights.bin").write_bytes(name.encode() * 10)
    folder = tmp_path / "best_ensemble"
    (folder / "members" / "inside").mkdir(parents=True)  # a member already in the folder stays as it is
    doc = {"combine": "soft", "labels": ["neg", "pos"], "members": [
        {"name": "m0", "path": str((runs / "a" / "model").resolve()), "weight": 0.5},
        {"name": "m1", "path": str((runs / "b" / "model").resolve()), "weight": 0.25},
        {"name": "m2", "path": "members/inside", "weight": 0.25}]}
    (folder / "ensemble.json").write_text(json.dumps(doc))
    _own_members(folder)
    shutil.rmtree(runs)
    saved = json.loads((folder / "ensemble.json").read_text())
    assert [m["path"] for m in saved["members"]] == ["members/m0", "members/m1", "members/inside"]
    assert [m["weight"] for m in saved["members"]] == [0.5, 0.25, 0.25]
    assert (folder / "members" / "m0" / "weights.bin").read_bytes() == b"a" * 10
    assert (folder / "members" / "m1" / "weights.bin").read_bytes() == b"b" * 10


def test_a_single_model_copy_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    _own_members(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]
