"""One training loop: the LR range test is a callback on the ordinary fit, and pretraining runs its
objective through the same loop (no second AdamW loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import honed
from honed.pretrain import common, pretrain
from honed.train.events import CancelFit
from honed.train.lr_range import LRRangeTest
from tests.conftest import tiny_recipe


class _SeenLR:
    """Records the LR each optimizer step ran at."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_after_optimizer_step(self, state: Any) -> None:
        self.lrs.append(max(group["lr"] for group in state.optimizer.param_groups))


def test_range_test_rides_on_fit_and_cancels_it(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    finder, seen = LRRangeTest(1e-4, 1e-2, 6), _SeenLR()
    with pytest.raises(CancelFit, match="all 6 steps ran|diverged"):
        honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run"), callbacks=[finder, seen], quiet=True)
    assert seen.lrs == pytest.approx(finder.lrs)
    assert finder.lrs == pytest.approx([finder.lr_at(i) for i in range(len(finder.lrs))])
    assert len(finder.smoothed) == len(finder.raw) == len(finder.lrs) >= 2
    assert not (tmp_path / "run" / "model").exists(), "a cancelled fit saves no model"


def test_pretraining_goes_through_the_training_loop(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = common.train

    def counted(state: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(state.total_steps)
        real(state, *args, **kwargs)

    monkeypatch.setattr(common, "train", counted)
    recipe = tiny_recipe(tiny_bert, text_csv, tmp_path / "pre", pretrain={"max_rows": 16, "batch_size": 8})
    run_dir = pretrain(recipe, quiet=True)
    assert calls == [2]
    assert sorted(p.name for p in run_dir.iterdir()) == ["backbone", "log.txt", "pretrain.json", "recipe.yaml"], (
        "the loop's scratch folder (metrics, checkpoints) is gone"
    )
