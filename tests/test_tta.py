"""Test-time augmentation: the averaged views of a lopsided tiny CNN, computed by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from honed.data.images import image_transform
from honed.data.labels import LabelMap
from honed.inference.logits import logits_for
from honed.models.vision import VisionClassifier
from honed.recipe import load_recipe
from tests.test_augment import MEAN, STD, _image


class _Net(nn.Module):
    """A lopsided tiny CNN: its output changes when the image is mirrored."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


@pytest.fixture
def tiny_model() -> VisionClassifier:
    return VisionClassifier(_Net(), "torchvision", "tiny", "fc", (MEAN, STD), 3).eval()


def _frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"x": [np.array(_image(8, 8, seed=i)) for i in range(n)]})


def _recipe(**augment: Any) -> Any:
    return load_recipe({"data": {"kind": "image", "image_size": 8}, "train": {"cpu": True}, "augment": augment})


def test_tta_averages_the_probabilities_of_the_views(tiny_model: VisionClassifier) -> None:
    labels, frame = LabelMap(("a", "b", "c")), _frame()
    plain = logits_for(tiny_model, labels, _recipe(), frame)
    assert torch.equal(
        plain, logits_for(tiny_model, labels, _recipe(tta=0, image=[{"name": "vflip", "p": 1.0}]), frame)
    )
    pixels = torch.stack([image_transform(8, MEAN, STD)(x) for x in frame["x"]])
    with torch.no_grad():
        assert torch.allclose(plain, tiny_model(pixels), atol=1e-6)
        flipped = torch.softmax(tiny_model(pixels.flip(-2)), dim=-1)
    tta = logits_for(tiny_model, labels, _recipe(tta=3, image=[{"name": "vflip", "p": 1.0}]), frame)
    manual = (torch.softmax(plain, dim=-1) + 3 * flipped) / 4
    assert torch.allclose(torch.softmax(tta, dim=-1), manual, atol=1e-6)
    assert not torch.allclose(tta.softmax(-1), plain.softmax(-1), atol=1e-4)


def test_default_image_tta_flips_and_is_deterministic(tiny_model: VisionClassifier) -> None:
    labels, frame = LabelMap(("a", "b", "c")), _frame()
    pixels = torch.stack([image_transform(8, MEAN, STD)(x) for x in frame["x"]])
    with torch.no_grad():
        plain, mirrored = (torch.softmax(tiny_model(p), dim=-1) for p in (pixels, pixels.flip(-1)))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = logits_for(tiny_model, labels, _recipe(tta=4), frame).softmax(-1)
    assert torch.equal(torch.get_rng_state(), state), "the caller's RNG is restored"
    assert torch.equal(first, logits_for(tiny_model, labels, _recipe(tta=4), frame).softmax(-1))
    flips = (first - plain) / (mirrored - plain) * 5  # per row: how many of the 4 views were mirrored
    counts = flips.nan_to_num(0).median(dim=1).values
    assert torch.allclose(counts, counts.round(), atol=1e-3) and set(counts.round().tolist()) <= {0, 1, 2, 3, 4}
    assert len(set(counts.round().tolist())) > 1, "rows get different random views"
