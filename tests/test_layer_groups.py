"""Layer groups: embeddings -> block.0..N-1 -> neck -> head, every parameter in exactly one group."""

from __future__ import annotations

import pytest
import torchvision

from honed.data.labels import LabelMap
from honed.models.huggingface import load_huggingface
from honed.models.vision import VisionClassifier, replace_last_linear


def _names(groups) -> list[str]:
    return [g.name for g in groups]


@pytest.mark.parametrize(("arch", "blocks"), [("resnet18", 8), ("mobilenet_v2", 19)])
def test_torchvision_groups(arch: str, blocks: int) -> None:
    net = torchvision.models.get_model(arch, weights=None)
    head = replace_last_linear(net, 3)
    model = VisionClassifier(net, "torchvision", arch, head, ((0.5,) * 3, (0.5,) * 3), 3)
    groups = model.layer_groups()
    assert sorted(p for g in groups for p in g.params) == sorted(n for n, _ in model.named_parameters())
    assert _names(groups).count("head") == 1 and set(groups[-1].params) == model.head_params
    assert [n for n in _names(groups) if n.startswith("block.")] == [f"block.{i}" for i in range(blocks)]


def test_bert_groups(tiny_bert: str) -> None:
    model = load_huggingface(tiny_bert, LabelMap(("a", "b")), "text")
    assert _names(model.layer_groups()) == ["embeddings", "block.0", "block.1", "neck", "head"]
    assert set(model.layer_groups()[-1].params) == {"hf.classifier.weight", "hf.classifier.bias"}
