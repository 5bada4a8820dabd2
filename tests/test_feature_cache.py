"""Frozen-feature caching: a frozen backbone runs once, the head trains on its cached outputs, and
the result equals training the head with the live frozen backbone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

import honed
from honed.cli import main
from tests.conftest import tiny_recipe

NO_DROPOUT = {"hidden": 0.0, "attention": 0.0, "classifier": 0.0}  # live training then has no randomness either


def _recipe(tiny_bert: str, text_csv: Path, out: Path, cache: bool, epochs: int = 3) -> dict:
    recipe = tiny_recipe(
        tiny_bert,
        text_csv,
        out,
        model={"name": tiny_bert, "dropout": NO_DROPOUT},
        optim={"lr": 1e-2},
        techniques=[{"name": "freeze", "all_but_head": True}],
    )
    recipe["train"].update(epochs=epochs, cache_frozen_features=cache)
    return recipe


def test_cached_head_training_equals_live_frozen_training(
    tiny_bert: str, text_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HONED_CACHE_DIR", str(tmp_path / "cache"))  # its own cache: other tests write features too
    live = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "live", cache=False), quiet=True)
    cached = honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "cached", cache=True), quiet=True)
    for key in ("val_loss", "val_accuracy", "test_loss", "steps"):
        assert cached.metrics[key] == pytest.approx(live.metrics[key], abs=1e-5), key
    a, b = live.model.state_dict(), cached.model.state_dict()
    assert a.keys() == b.keys(), "the full model is what a cached run saves"
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4, msg=name)
    honed.fit(_recipe(tiny_bert, text_csv, tmp_path / "again", cache=True, epochs=1), quiet=True)
    features = list((Path(os.environ["HONED_CACHE_DIR"]) / "features").glob("*.pt"))
    assert len(features) == 3, "train, val and test features, each computed once and reused by the later runs"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"techniques": []}, "train.cache_frozen_features: the backbone must stay frozen for the whole run"),
        (
            {"techniques": [{"name": "freeze", "all_but_head": True}, {"name": "head_warmup", "epochs": 1}]},
            "technique 'head_warmup' needs the full model in the loop",
        ),
        ({"augment": {"text": [{"name": "word_dropout", "p": 0.1}]}}, "augmented inputs change every epoch"),
    ],
)
def test_uncacheable_runs_fail_in_one_line(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict, expected: str
) -> None:
    recipe = _recipe(tiny_bert, text_csv, tmp_path / "run", cache=True)
    recipe.update(change)
    assert_refused_in_one_line(recipe, tmp_path, capsys, expected)


def assert_refused_in_one_line(recipe: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               expected: str) -> None:
    """`honed train` of `recipe` exits 2 with one line holding `expected`, before its run folder (tmp_path/run)."""
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["train", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "run").exists()


def test_fresh_layers_spread_over_the_body_are_refused_in_one_line() -> None:
    """A checkpoint without a pooler gets a fresh pooler and classifier; their only common parent also holds
    the body, so there is no head input to cache: a clear error, not a crash inside a forward hook."""
    from honed.errors import HonedError
    from honed.train.feature_cache import head_module

    class Toy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.ModuleDict({"layer": torch.nn.Linear(4, 4), "pooler": torch.nn.Linear(4, 4)})
            self.classifier = torch.nn.Linear(4, 2)
            self.head_params = {"body.pooler.weight", "body.pooler.bias", "classifier.weight", "classifier.bias"}

    with pytest.raises(HonedError, match="not one head module"):
        head_module(Toy())
    toy = Toy()
    toy.head_params = {"classifier.weight", "classifier.bias"}
    assert head_module(toy)[0] == "classifier"
