"""Model kinds as a registry: build and load go through the kind a spec or a saved folder names, a new
kind is one registered class, and an unknown saved source is one clear line."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from honed.data.labels import LabelMap
from honed.errors import HonedError
from honed.models.base import Classifier
from honed.models.build import build_model, load_model, save_model
from honed.models.kinds import (
    CHANNEL_PRUNING,
    FFN_PRUNING,
    MODEL_KINDS,
    RECOVERY_FINETUNE,
    ModelKind,
    kind_named,
    spec_kind,
    spec_source,
)
from honed.recipe import Recipe, load_recipe

LABELS = LabelMap(("a", "b", "c"))


class TinyNet(Classifier):
    """A 2-layer image classifier of the fake kind."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.kind = FakeKind()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, num_labels)
        self.head_params = {"head.weight", "head.bias"}
        self.preprocess = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        self.meta = {"kind": "image", "num_labels": num_labels}

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.body(pixel_values.mean(dim=(2, 3)))))


class FakeKind(ModelKind):
    """A kind defined in a test: builds, saves and loads TinyNet, and declares one capability of its own."""

    name = "fake"
    capabilities = frozenset({"tiny_things"})

    def build(self, recipe: Recipe, labels: LabelMap) -> Classifier:
        return TinyNet(len(labels))

    def load(self, folder: Path, meta: dict[str, Any], labels: LabelMap) -> Classifier:
        model = TinyNet(meta["num_labels"])
        model.load_state_dict(load_file(str(folder / "tiny.safetensors")), strict=True)
        return model

    def save(self, model: Classifier, folder: Path) -> None:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "tiny.safetensors"))
        model.write_meta(folder)


if "fake" not in MODEL_KINDS:  # the registry is process-wide; register the test's kind once
    MODEL_KINDS.register("fake")(FakeKind)


def fake_recipe() -> Recipe:
    """A recipe asking for the fake kind (recipes validate model.source against the shipped kinds' names)."""
    recipe = load_recipe({"data": {"kind": "image", "image_size": 8}, "model": {"name": "tiny"}})
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"source": "fake"})})


def test_a_kind_registered_in_a_test_is_what_build_save_and_load_use(tmp_path: Path) -> None:
    model = build_model(fake_recipe(), LABELS)
    assert isinstance(model, TinyNet) and model.kind.name == "fake" and model.kind.supports("tiny_things")
    assert not model.kind.supports(FFN_PRUNING)
    assert [g.name for g in model.layer_groups()] == ["embeddings", "head"]  # the kind's default grouping
    save_model(model, LABELS, tmp_path / "m", "{}")
    assert json.loads((tmp_path / "m" / "honed.json").read_text())["source"] == "fake"
    loaded, labels = load_model(tmp_path / "m")
    assert isinstance(loaded, TinyNet) and loaded.kind.name == "fake" and labels == LABELS
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("source", ["nope", "os:system", None])
def test_an_unknown_saved_source_is_one_line(tmp_path: Path, source: str | None) -> None:
    save_model(build_model(fake_recipe(), LABELS), LABELS, tmp_path / "m", "{}")
    meta = json.loads((tmp_path / "m" / "honed.json").read_text())
    (tmp_path / "m" / "honed.json").write_text(json.dumps({**meta, "source": source}))
    with pytest.raises(HonedError) as caught:
        load_model(tmp_path / "m")
    message = str(caught.value)
    assert "\n" not in message and f"model '{tmp_path / 'm'}'" in message and repr(source) in message
    assert "huggingface" in message and "torchvision" in message, "names the kinds it can load"


def test_kinds_resolve_by_name_and_auto_resolution_is_one_function() -> None:
    unknown = "model.source: unknown model kind 'torchvison' \\(did you mean 'torchvision'\\?\\)"
    with pytest.raises(HonedError, match=unknown):
        kind_named("torchvison")
    spec = SimpleNamespace(source="auto", name="mobilenet_v2", weights=None, fusion=None)
    assert spec_source(spec) == "huggingface"
    assert spec_source(SimpleNamespace(**{**vars(spec), "weights": "w.pth"})) == "torchvision"
    assert spec_source(SimpleNamespace(**{**vars(spec), "name": "resnet18d", "weights": "w.pth"})) == "timm"
    assert spec_source(SimpleNamespace(**{**vars(spec), "fusion": object()})) == "fusion"
    assert spec_kind(SimpleNamespace(**{**vars(spec), "source": "timm"})).name == "timm"


def test_pruning_support_is_declared_by_each_kind() -> None:
    supports = {
        name: {c for c in (FFN_PRUNING, CHANNEL_PRUNING, RECOVERY_FINETUNE) if kind_named(name).supports(c)}
        for name in ("huggingface", "torchvision", "timm", "fusion")
    }
    assert supports == {
        "huggingface": {FFN_PRUNING, RECOVERY_FINETUNE},
        "torchvision": {CHANNEL_PRUNING},
        "timm": {CHANNEL_PRUNING},
        "fusion": {CHANNEL_PRUNING},
    }
