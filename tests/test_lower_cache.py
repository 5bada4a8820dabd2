"""The frozen-feature cache for a frozen lower part: the embeddings and block.0 of a tiny BERT run once per
training row, training skips them, and the run ends where the same run with the live frozen part ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from transformers import BertModel

import honed
from honed.train.lower_cache import Skipped
from tests.conftest import tiny_recipe
from tests.test_feature_cache import assert_refused_in_one_line
from tests.test_python_model import TinyCNN, image_recipe

NO_DROPOUT = {"hidden": 0.0, "attention": 0.0, "classifier": 0.0}  # the live frozen part then has no randomness
LOWER = [{"name": "freeze", "groups": ["embeddings", "block.0"]}]


def _recipe(tiny_bert: str, text_csv: Path, out: Path, cache: bool, **extra: Any) -> dict:
    recipe = tiny_recipe(tiny_bert, text_csv, out, model={"name": tiny_bert, "dropout": NO_DROPOUT},
                         optim={"lr": 1e-2}, techniques=LOWER)
    recipe["train"].update(epochs=3, cache_frozen_features=cache, checkpoint_every_steps=4)  # saved mid-training
    recipe["data"].update(group_by_length=True)  # length-grouped, dynamically padded batches
    for key, value in extra.items():
        recipe[key] = value
    return recipe


class CountLowerBlock:
    """Counts forward calls of a real frozen module (BERT's block.0) made inside training forwards and
    elsewhere (evaluation)."""

    acts_on_head_only = True  # watches only: fine with the cache

    def __init__(self, path: str = "hf.bert.encoder.layer.0") -> None:
        self.path = path
        self.calls = self.in_training = self.before = 0

    def on_fit_start(self, state: Any) -> None:
        block = state.accelerator.unwrap_model(state.model).get_submodule(self.path)
        assert not isinstance(block, Skipped), "hooked before the stand-ins are placed"
        block.register_forward_hook(lambda *_: setattr(self, "calls", self.calls + 1))

    def on_batch_start(self, state: Any) -> None:
        self.before = self.calls

    def on_after_forward(self, state: Any) -> None:
        self.in_training += self.calls - self.before


def test_cached_lower_part_trains_as_the_live_frozen_part(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    counts = {"live": CountLowerBlock(), "cached": CountLowerBlock()}
    live = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "live", cache=False), callbacks=[counts["live"]],
                     quiet=True)
    cached = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "cached", cache=True), callbacks=[counts["cached"]],
                       quiet=True)
    for key in ("val_loss", "val_accuracy", "test_loss", "test_accuracy", "steps"):
        assert cached.metrics[key] == pytest.approx(live.metrics[key], abs=1e-5), key
    a, b = live.model.state_dict(), cached.model.state_dict()
    assert a.keys() == b.keys(), "the whole model is what a cached run saves"
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    assert not any(isinstance(m, Skipped) for m in cached.model.modules()), "the real modules are back"
    saved = torch.load(tmp_path / "cached" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert saved.keys() == b.keys(), "checkpoints written while the stand-ins train hold the whole model"
    start, dense = BertModel.from_pretrained(tiny_bert).state_dict(), "encoder.layer.{}.output.dense.weight"
    assert torch.equal(b[f"hf.bert.{dense.format(0)}"], start[dense.format(0)]), "the frozen block stays put"
    assert not torch.equal(b[f"hf.bert.{dense.format(1)}"], start[dense.format(1)]), "the block above trains"
    assert counts["live"].in_training > 0
    assert counts["cached"].in_training == 0, "training forwards skip the cached frozen block"
    assert counts["cached"].calls > 0, "evaluation runs the full model"


def test_cache_off_or_whole_backbone_frozen_is_unchanged(tiny_bert: str, text_csv: Path, tmp_path: Path) -> None:
    """A linear probe still takes the head cache (no stand-ins, the head trains on features)."""
    run = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "probe", cache=True,
                            techniques=[{"name": "freeze", "all_but_head": True}]), quiet=True)
    assert run.metrics["steps"] > 0 and not any(isinstance(m, Skipped) for m in run.model.modules())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"augment": {"text": [{"name": "word_dropout", "p": 0.1}]}}, "augmented inputs change every epoch"),
        ({"techniques": [*LOWER, {"name": "gradual_unfreezing", "every": 1, "stages": 2}]},
         "technique 'gradual_unfreezing' needs the full model in the loop (it changes which layers train"),
        ({"techniques": []}, "the backbone must stay frozen for the whole run, or at least its lowest layer groups"),
        ({"techniques": [{"name": "freeze", "groups": ["block.1"]}]}, "at least its lowest layer groups"),
    ],
)
def test_uncacheable_lower_parts_fail_in_one_line(tiny_bert: str, text_csv: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str], change: dict,
                                                  expected: str) -> None:
    recipe = _recipe(tiny_bert, text_csv, tmp_path / "run", cache=True, **change)
    assert_refused_in_one_line(recipe, tmp_path, capsys, expected)


def test_a_frozen_cnn_stem_is_cached_as_fixed_shape_rows(tmp_path: Path) -> None:
    """Image rows have no padding mask: each row's cached output is one fixed-shape feature map."""
    torch.manual_seed(0)
    cnn_weights = tmp_path / "cnn.pth"
    torch.save(TinyCNN().state_dict(), cnn_weights)
    runs, counts = {}, {}
    for cache in (False, True):
        recipe = image_recipe(tmp_path / str(cache), weights=str(cnn_weights))
        recipe["train"].update(epochs=2, cache_frozen_features=cache)
        counts[cache] = CountLowerBlock("net.stem")
        runs[cache] = honed.fit({**recipe, "techniques": [{"name": "freeze", "groups": ["embeddings"]}]},
                                callbacks=[counts[cache]], quiet=True)
    assert counts[False].in_training > 0 and counts[True].in_training == 0
    assert runs[True].metrics["val_loss"] == pytest.approx(runs[False].metrics["val_loss"], abs=1e-5)
    a, b = runs[False].model.state_dict(), runs[True].model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)


class StemBN(nn.Module):
    """A ResNet-like stem whose batch norm is a child of its own (torchvision's ResNet: conv1, bn1), so a
    frozen stem's batch norm gets a stand-in of its own; above it a block whose batch norm trains."""

    def __init__(self, channels: int = 4, classes: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(channels), nn.ReLU())
        self.fc = nn.Linear(channels, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer1(torch.relu(self.bn1(self.conv1(pixels)))).mean((2, 3)))

    def layer_groups(self) -> dict[str, Any]:
        return {"stem": ["conv1", "bn1"], "body": ["layer1"]}


def test_swa_keeps_a_frozen_batch_norm_behind_a_stand_in(tmp_path: Path) -> None:
    """SWA's batch-norm pass (at each validation) re-estimates the trainable batch norms only: the frozen stem's
    bn1 keeps its statistics, as in the live run, although a stand-in holds its place in the cached run."""
    runs = {}
    for cache in (False, True):
        recipe = image_recipe(tmp_path / str(cache))
        recipe["model"]["name"] = "tests.test_lower_cache:StemBN"
        recipe["train"].update(epochs=2, cache_frozen_features=cache)
        recipe["techniques"] = [{"name": "freeze", "groups": ["stem"]}, {"name": "swa", "start": 0.0, "every": 1}]
        runs[cache] = honed.fit(recipe, quiet=True)
    a, b = runs[False].model.state_dict(), runs[True].model.state_dict()
    start = nn.BatchNorm2d(4).state_dict()
    for name, tensor in start.items():
        assert torch.equal(a[f"net.bn1.{name}"], tensor), f"the live run keeps the frozen bn1.{name}"
    assert not torch.equal(a["net.layer1.1.running_mean"], start["running_mean"]), "the trainable norm re-estimated"
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    assert runs[True].metrics["val_loss"] == pytest.approx(runs[False].metrics["val_loss"], abs=1e-5)


class Uncacheable(nn.Module):
    """A CNN whose frozen part the cache cannot stand in for, by `kind`: a frozen module returning two tensors
    ("pair"), frozen groups listed bottom-up in another order than they run ("order"), a frozen module that
    never runs ("unused")."""

    def __init__(self, kind: str, channels: int = 4, classes: int = 7) -> None:
        super().__init__()
        self.kind = kind
        self.early = nn.Conv2d(3, channels, 3, padding=1)
        self.late = nn.Conv2d(channels, channels, 3, padding=1)
        self.unused = nn.Conv2d(channels, channels, 1)
        self.body = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc = nn.Linear(channels, classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.late(self.early(pixels))
        x = x[0] + x[1] if isinstance(x, tuple) else x
        return self.fc(self.body(x).mean((2, 3)))

    def layer_groups(self) -> dict[str, Any]:
        if self.kind == "order":
            return {"low": ["late"], "high": ["early"], "body": ["body", "unused"]}
        if self.kind == "unused":
            return {"low": ["early", "late"], "high": ["unused"], "body": ["body"]}
        return {"low": ["early"], "high": ["late"], "body": ["body", "unused"]}


class PairOut(nn.Module):
    """A conv returning (output, a second tensor), as a block that also returns attention maps does."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.conv(x)
        return out, out.tanh()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("pair", "returns tuple with several tensors"),
        ("order", "the frozen module 'net.late' does not run before 'net.early'"),
        ("unused", "the frozen module 'net.unused' never ran in a forward pass"),
    ],
)
def test_a_frozen_part_the_cache_cannot_stand_in_for_is_refused_before_the_run_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, expected: str) -> None:
    recipe = image_recipe(tmp_path, args={"kind": kind})
    recipe["model"]["name"] = f"tests.test_lower_cache:{'PairNet' if kind == 'pair' else 'Uncacheable'}"
    recipe["train"].update(cache_frozen_features=True)
    recipe["techniques"] = [{"name": "freeze", "groups": ["low", "high"]}]
    assert_refused_in_one_line(recipe, tmp_path, capsys, expected)


class PairNet(Uncacheable):
    """`Uncacheable` whose frozen `late` conv returns two tensors (the forward adds them)."""

    def __init__(self, kind: str = "pair") -> None:
        super().__init__(kind)
        self.late = PairOut(self.late)


class RaiseAtStep:
    """Holds the model and its real frozen module at fit start (before the stand-ins), and fails a step."""

    acts_on_head_only = True

    def __init__(self, path: str) -> None:
        self.path, self.model, self.real = path, None, None

    def on_fit_start(self, state: Any) -> None:
        self.model = state.accelerator.unwrap_model(state.model)
        self.real = self.model.get_submodule(self.path)

    def on_after_optimizer_step(self, state: Any) -> None:
        assert isinstance(self.model.get_submodule(self.path), Skipped), "the stand-in trains"
        raise RuntimeError("a failing step")


def test_training_that_raises_leaves_the_model_with_its_real_modules(tmp_path: Path) -> None:
    recipe = image_recipe(tmp_path)
    recipe["train"].update(cache_frozen_features=True)
    recipe["techniques"] = [{"name": "freeze", "groups": ["embeddings"]}]
    failing = RaiseAtStep("net.stem")
    with pytest.raises(RuntimeError, match="a failing step"):
        honed.fit(recipe, callbacks=[failing], quiet=True)
    assert failing.model.get_submodule("net.stem") is failing.real
    assert not any(isinstance(m, Skipped) for m in failing.model.modules())
