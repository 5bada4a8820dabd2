"""The frozen-feature cache for a frozen lower part: the embeddings and block.0 of a tiny BERT run once per
training row, training skips them, and the run ends where the same run with the live frozen part ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
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
