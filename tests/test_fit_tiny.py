"""The loop's mechanics on a tiny random BERT: it runs, writes its run folder, and is deterministic."""

from __future__ import annotations

import json
from pathlib import Path

import honed
from tests.conftest import tiny_recipe


def test_fit_writes_run_folder(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    run = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run"), quiet=True)
    for name in (
        "recipe.yaml",
        "metrics.jsonl",
        "log.txt",
        "results.json",
        "checkpoints/last.pt",
        "model/honed.json",
        "model/labels.json",
        "model/config.json",
        "model/model.safetensors",
    ):
        assert (run.run_dir / name).is_file(), name
    assert len(run.history) == 2
    assert json.loads((run.run_dir / "model" / "labels.json").read_text()) == ["neg", "pos"]
    assert {"val_accuracy", "test_accuracy", "val_macro_f1", "train_samples_per_s"} <= set(run.metrics)


def test_same_seed_same_metrics(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    a = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "a"), quiet=True)
    b = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "b"), quiet=True)
    assert a.history[-1]["train_loss"] == b.history[-1]["train_loss"]
    assert a.metrics["test_loss"] == b.metrics["test_loss"]


def test_python_overrides_use_double_underscore(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    run = honed.fit(tiny_recipe(tiny_bert, text_csv, tmp_path / "run"), quiet=True, train__epochs=1, optim__lr=5e-4)
    assert run.recipe.train.epochs == 1 and run.recipe.optim.lr == 5e-4
    assert len(run.history) == 1
