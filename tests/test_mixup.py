"""Mixup and cutmix: soft targets and changed images on training batches, torch's global RNG, image-only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

import honed
from honed.cli import main
from honed.errors import HonedError
from honed.recipe import TechniqueSpec
from honed.techniques import build_techniques
from honed.techniques.cutmix import CutMix
from honed.techniques.mixup import MixUp
from tests.conftest import tiny_recipe
from tests.test_images import tiny_weights, write_images, write_recipe  # noqa: F401  (tiny_weights is a fixture)

SEEN: list[dict[str, Any]] = []


class BatchSpy:
    """Records the training batch after the techniques before it in the recipe changed it."""

    def __init__(self) -> None:
        SEEN.clear()

    def on_batch_start(self, state: Any) -> None:
        SEEN.append({k: v.detach().clone() for k, v in state.batch.items()})


def _state(n: int = 6, classes: int = 3) -> SimpleNamespace:
    gen = torch.Generator().manual_seed(0)
    batch = {"pixel_values": torch.rand(n, 3, 16, 16, generator=gen), "labels": torch.arange(n) % classes}
    return SimpleNamespace(batch=batch, labels=tuple(f"c{i}" for i in range(classes)))


@pytest.mark.parametrize("technique", [MixUp, CutMix])
def test_batch_gets_soft_targets_and_mixed_images(technique: type) -> None:
    torch.manual_seed(0)
    state = _state()
    images = state.batch["pixel_values"].clone()
    technique(alpha=1.0).on_batch_start(state)
    labels = state.batch["labels"]
    assert labels.shape == (6, 3) and labels.dtype == torch.float32
    assert torch.allclose(labels.sum(dim=1), torch.ones(6))
    assert ((labels > 0) & (labels < 1)).any(), "some rows mix two classes"
    assert state.batch["pixel_values"].shape == images.shape and not torch.equal(state.batch["pixel_values"], images)


@pytest.mark.parametrize("technique", [MixUp, CutMix])
def test_randomness_is_torchs_global_rng(technique: type) -> None:
    """Restoring torch's RNG state (as a resumed checkpoint does) replays exactly the same mix."""
    torch.manual_seed(1)
    saved = torch.get_rng_state()
    first, second = _state(), _state()
    technique(alpha=0.4, p=0.7).on_batch_start(first)
    torch.set_rng_state(saved)
    technique(alpha=0.4, p=0.7).on_batch_start(second)
    for key in ("pixel_values", "labels"):
        assert torch.equal(first.batch[key], second.batch[key])


def test_probability_p_chooses_which_batches_mix() -> None:
    never = _state()
    MixUp(p=0.0).on_batch_start(never)
    assert never.batch["labels"].ndim == 1 and torch.equal(never.batch["pixel_values"], _state().batch["pixel_values"])
    torch.manual_seed(0)
    half = MixUp(p=0.5)
    mixed = 0
    for _ in range(40):
        state = _state()
        half.on_batch_start(state)
        mixed += state.batch["labels"].ndim == 2
    assert 10 < mixed < 30


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "mixup", "alpha": 0}, "techniques.0 'mixup': alpha must be > 0"),
        ({"name": "cutmix", "p": 1.5}, "techniques.0 'cutmix': p must be in [0, 1]"),
        ({"name": "mixup", "beta": 1}, "unexpected keyword argument 'beta'"),
    ],
)
def test_bad_settings(spec: dict, message: str) -> None:
    with pytest.raises(HonedError) as caught:
        build_techniques([TechniqueSpec(**spec)])
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_tiny_image_fit_trains_on_mixed_batches(name: str, tiny_weights: Path, tmp_path: Path) -> None:  # noqa: F811
    write_images(tmp_path / "images")
    recipe = yaml.safe_load(write_recipe(tmp_path, tiny_weights, tmp_path / "images").read_text())
    recipe["techniques"] = [{"name": name, "alpha": 1.0}, {"name": "tests.test_mixup:BatchSpy"}]
    recipe["loss"] = {"name": "focal", "label_smoothing": 0.1}
    run = honed.fit(recipe, quiet=True)
    assert run.metrics["steps"] == len(SEEN) > 0 and "test_accuracy" in run.metrics
    for batch in SEEN:
        assert batch["labels"].shape == (len(batch["pixel_values"]), 2)
        assert torch.allclose(batch["labels"].sum(dim=1), torch.ones(len(batch["labels"])))


def test_text_recipe_is_refused_before_training(
    tiny_bert: str, text_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(
        tiny_bert, text_csv, tmp_path / "run", techniques=[{"name": "early_stopping"}, {"name": "mixup"}]
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    assert main(["train", str(path), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("honed: error: techniques.1 'mixup': mixup/cutmix mix images"), lines
    assert "data.kind=text" in lines[0] and not (tmp_path / "run").exists()


class CrashAtStep:
    """Raises once at a chosen optimizer step (a crash mid-run; the marker file keeps it to once)."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, Path(marker)

    def on_after_optimizer_step(self, state: Any) -> None:
        if state.step == self.step and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError("crash for the test")


def test_resume_mid_epoch_mixes_exactly_as_an_uninterrupted_run(tiny_weights: Path, tmp_path: Path) -> None:  # noqa: F811
    write_images(tmp_path / "images", per_class=8)  # 10 training rows: batches of 2, none of 1 (batch norm needs 2)
    base = yaml.safe_load(write_recipe(tmp_path, tiny_weights, tmp_path / "images").read_text())
    base["train"].update(epochs=1, batch_size=2, checkpoint_every_steps=2)

    def recipe(name: str, marker: Path) -> dict:
        return {
            **base,
            "output_dir": str(tmp_path / name),
            "techniques": [
                {"name": "cutmix", "p": 0.7},
                {"name": "tests.test_mixup:CrashAtStep", "step": 3, "marker": str(marker)},
            ],
        }

    done = tmp_path / "done"
    done.touch()
    straight = honed.fit(recipe("straight", done), quiet=True)
    with pytest.raises(RuntimeError, match="crash for the test"):
        honed.fit(recipe("crashed", tmp_path / "marker"), quiet=True)
    resumed = honed.fit(recipe("crashed", tmp_path / "marker"), resume=True, quiet=True)
    assert resumed.metrics["steps"] == straight.metrics["steps"] == 5
    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
