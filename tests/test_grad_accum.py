"""Gradient accumulation: batch 32 in one step and 4 accumulated batches of 8 make the same update.

The loop hands each micro-batch's mean loss to `accelerator.backward`, which divides it by
grad_accum_steps, so four accumulated means of 8 rows sum to the mean of the 32 rows. Dropout is
off (its masks would differ between one batch of 32 and four of 8) and so is clipping.
"""

from __future__ import annotations

from pathlib import Path

import torch

import honed
from tests.conftest import text_rows, tiny_recipe

NO_DROPOUT = {"hidden": 0.0, "attention": 0.0, "classifier": 0.0}


def _weights(
    tiny_bert: str, train: Path, run_dir: Path, batch: int, accum: int, **extra: object
) -> dict[str, torch.Tensor]:
    recipe = tiny_recipe(
        tiny_bert,
        train,
        run_dir,
        model={"name": tiny_bert, "dropout": NO_DROPOUT},
        schedule={"name": "constant", "warmup_steps": 0},
        **extra,
    )
    recipe["train"].update(
        {
            "epochs": 1,
            "batch_size": batch,
            "grad_accum_steps": accum,
            "max_grad_norm": None,
            "precision": "no",
            "cpu": True,
        }
    )
    return honed.fit(recipe, quiet=True).model.state_dict()


def _max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_accumulated_steps_equal_one_big_batch(tiny_bert: str, tmp_path: Path) -> None:
    """Two full accumulation windows (128 training rows, 2 steps of 32)."""
    train = tmp_path / "train.csv"
    text_rows(160).to_csv(train, index=False)
    split = {"val": 0.1, "test": 0.1}
    data = {"kind": "text", "train": str(train), "max_length": 16, "split": split}
    big = _weights(tiny_bert, train, tmp_path / "big", 32, 1, data=data, train__max_steps=2)
    small = _weights(tiny_bert, train, tmp_path / "small", 8, 4, data=data, train__max_steps=2)
    start = _weights(tiny_bert, train, tmp_path / "start", 32, 1, data=data, optim={"lr": 1e-12})
    assert _max_difference(big, start) > 1e-4, "the steps moved the weights"
    assert _max_difference(big, small) < 1e-6


def test_partial_last_window_equals_its_big_batch(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    """48 training rows: step 1 is 32 rows; step 2 is the last 16 rows (one batch of 16 vs 2 of 8)."""
    big = _weights(tiny_bert, text_csv, tmp_path / "big", 32, 1)
    small = _weights(tiny_bert, text_csv, tmp_path / "small", 8, 4)
    assert _max_difference(big, small) < 1e-6
