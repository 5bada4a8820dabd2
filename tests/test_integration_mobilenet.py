"""The real ImageNet MobileNetV2, fine-tuned briefly on real Fashion-MNIST images, beats chance on held-out data."""

from __future__ import annotations

from pathlib import Path

import pytest

import honed
from honed.assets import resolve_data_path, resolve_weights
from honed.errors import HonedError
from tests.conftest import REPO


@pytest.fixture(scope="module")
def assets() -> None:
    """Skip, saying what to install, when the Debian dataset or the weights package is missing."""
    try:
        resolve_data_path("asset:fashion-mnist/train", "data.train")
        resolve_weights("asset:mobilenet_v2")
    except HonedError as exc:
        pytest.skip(f"real MobileNetV2 / Fashion-MNIST assets unavailable: {exc}")


@pytest.mark.integration
def test_mobilenet_v2_beats_chance_on_fashion_mnist(assets: None, tmp_path: Path) -> None:
    run = honed.fit(
        REPO / "recipes" / "fashion-mnist.yaml",
        quiet=True,
        output_dir=str(tmp_path / "run"),
        data__max_rows__train=400,
        data__max_rows__val=100,
        data__max_rows__test=200,
        data__image_size=32,
        train__epochs=2,
        train__batch_size=32,
    )
    assert len(run.labels) == 10 and run.metrics["steps"] == 26  # 2 epochs x ceil(400 / 32)
    assert run.metrics["test_accuracy"] > 0.4, run.metrics  # chance is 0.1
