"""The real MiniLM, fine-tuned for a few dozen steps on a few hundred real reviews, beats chance."""

from __future__ import annotations

from pathlib import Path

import pytest

import honed
from honed.assets import DATA_ASSETS, MODEL_PACKAGES

pytestmark = pytest.mark.integration

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module", autouse=True)
def _assets() -> None:
    if MODEL_PACKAGES[MINILM][0]() is None or DATA_ASSETS["rotten-tomatoes"][0]() is None:
        pytest.skip("needs the MiniLM and Rotten Tomatoes packages: run `make setup`")


def test_minilm_beats_chance_on_held_out_movies(tmp_path: Path) -> None:
    run = honed.fit(
        "recipes/quickstart.yaml",
        output_dir=str(tmp_path / "run"),
        quiet=True,
        data__max_rows={"train": 640, "val": 160, "test": 320},
        data__max_length=40,
        train__epochs=1,
        train__batch_size=16,
        optim__lr=2e-4,
        schedule__warmup_ratio=0.05,
        train__checkpoint_every_steps=None,
    )
    test = run.metrics
    assert run.metrics["steps"] == 40
    majority = 0.58  # share of 'fresh' among fresh+rotten reviews in the corpus
    assert test["test_accuracy"] > majority + 0.07, test  # measured: 0.80
    assert test["test_macro_f1"] > 0.6, test
    # The saved folder is a plain transformers model: its pipeline loads it and predicts our labels.
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(run.model_dir), device="cpu")
    assert classify("a wonderful, moving film")[0]["label"] in {"fresh", "rotten"}
